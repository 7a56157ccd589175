#!/usr/bin/env bash
# Install everything fl-chain needs into .venv and the npm folders, from the registries only.
# Idempotent: re-running it only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first, pinned, with pip (so the machine's pip configuration picks its CPU build; anything
# unpinned would pull CUDA), and uv, which installs the rest from PyPI: it downloads and unpacks in
# parallel (17 s instead of 75 s for pip on this machine). The torch extra (torch>=2.2) that follows
# is then already satisfied, so no other torch build is fetched. The serve extra (model export and
# serving: onnx, onnxscript, onnxruntime, safetensors; fastapi and uvicorn come with flwr anyway)
# adds about 3 s with uv.
.venv/bin/pip install --quiet --disable-pip-version-check "torch==2.13.0" "uv>=0.5"
.venv/bin/uv pip install --quiet --python .venv/bin/python -e ".[test,torch,serve]"
# Pinned Solidity compiler (solcjs) and local chains (ganache 7.9.2, anvil) from the lock files.
npm ci --prefix contracts --no-audit --no-fund --loglevel=error
npm ci --prefix ganache --no-audit --no-fund --loglevel=error

# Fashion-MNIST (dataset fashion_mnist) from Debian's package; optional: only that dataset needs it.
FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist
FASHION_MNIST_HINT="Fashion-MNIST not installed (only the fashion_mnist dataset needs it): run as root \
apt-get install dataset-fashion-mnist, or set FLCHAIN_FASHION_MNIST_DIR"
ensure_fashion_mnist() {
  if [ -f "$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz" ] \
    || [ -f "${FLCHAIN_FASHION_MNIST_DIR:-/nonexistent}/train-images-idx3-ubyte.gz" ]; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    if apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; then
      return 0
    fi
  fi
  echo "$FASHION_MNIST_HINT"
}
ensure_fashion_mnist

# Headless Chromium and its driver from Debian, for the dashboard's browser test
# (tests/integration/test_dashboard_browser.py skips without them); optional otherwise.
CHROMIUM_HINT="chromium not installed (only the dashboard's browser test needs it): run as root \
apt-get install chromium chromium-driver"
ensure_chromium() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    if apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; then
      return 0
    fi
  fi
  echo "$CHROMIUM_HINT"
}
ensure_chromium
echo "installed: .venv (python), contracts/node_modules (solc), ganache/node_modules (ganache, anvil)"
