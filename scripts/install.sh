#!/usr/bin/env bash
# Install everything fl-chain needs into .venv and the npm folders, from the registries only.
# Idempotent: re-running it only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first, pinned: its CPU build comes from local disk; anything unpinned would pull CUDA.
.venv/bin/pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/pip install --quiet --disable-pip-version-check -e ".[test]"
# Pinned Solidity compiler (solcjs) and local chains (ganache 7.9.2, anvil) from the lock files.
npm ci --prefix contracts --no-audit --no-fund --loglevel=error
npm ci --prefix ganache --no-audit --no-fund --loglevel=error
echo "installed: .venv (python), contracts/node_modules (solc), ganache/node_modules (ganache, anvil)"
