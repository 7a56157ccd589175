"""Compile the Solidity contracts with the pinned compiler and write their artifacts.

The source is ``contracts/*.sol`` in a clone of the repository; the artifacts are package data in
``fl_chain/chain/contracts/`` (see :mod:`fl_chain.chain.artifacts`), committed, and
``compile_contracts.py --check`` and the test suite prove they equal a fresh compile.

The compiler is solcjs from ``contracts/node_modules`` (``npm ci --prefix contracts``) unless a native
solc of exactly the pinned version is named with ``--solc PATH`` or ``$FLCHAIN_SOLC``; ``--solc solcx``
takes the one py-solc-x installed (``pip install py-solc-x``, then
``python -c "import solcx; solcx.install_solc('0.8.28')"``). Both give identical bytecode.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from fl_chain.chain.artifacts import PACKAGED_ARTIFACTS_DIR
from fl_chain.errors import CompilerError, FLChainError

SOLC_VERSION = "0.8.28"
CONTRACTS = ("FLCoordinator",)
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The Solidity sources and the npm folder of the pinned solcjs (only in a clone of the repository).
CONTRACTS_DIR = REPO_ROOT / "contracts"
#: Where the artifacts are written: the package's data directory.
ARTIFACTS_DIR = PACKAGED_ARTIFACTS_DIR
#: Environment variable naming a native solc binary (a path, or ``solcx``) to use instead of solcjs.
SOLC_ENV = "FLCHAIN_SOLC"
#: The ``--solc`` value that asks py-solc-x for its installed solc of the pinned version.
SOLCX = "solcx"
SETTINGS: dict[str, Any] = {
    # paris: no PUSH0, so the bytecode runs on every chain we target (py-evm, ganache 7, geth, besu).
    "evmVersion": "paris",
    "viaIR": True,
    "optimizer": {"enabled": True, "runs": 200},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}

_SOLCJS_DRIVER = """
const solc = require('solc');
let input = '';
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  process.stdout.write(JSON.stringify({version: solc.version(), output: JSON.parse(solc.compile(input))}));
});
"""


def standard_input() -> dict[str, Any]:
    """The solc standard-JSON input for every contract source."""
    paths = {f"{name}.sol": CONTRACTS_DIR / f"{name}.sol" for name in CONTRACTS}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise CompilerError(f"no Solidity source {missing[0]}; compile from a clone of the fl-chain repository")
    sources = {source_name: {"content": path.read_text()} for source_name, path in paths.items()}
    return {"language": "Solidity", "sources": sources, "settings": SETTINGS}


def _compile_solcjs(payload: str) -> tuple[str, dict[str, Any]]:
    module = CONTRACTS_DIR / "node_modules" / "solc"
    if not module.is_dir():
        raise CompilerError(
            f"solcjs {SOLC_VERSION} is not installed; run `npm ci --prefix {CONTRACTS_DIR}` "
            f"or pass --solc PATH of a native solc {SOLC_VERSION}"
        )
    node = shutil.which("node")
    if node is None:
        raise CompilerError("node is not on PATH; install Node.js to compile with solcjs")
    proc = subprocess.run(
        [node, "-e", _SOLCJS_DRIVER],
        input=payload,
        capture_output=True,
        text=True,
        cwd=CONTRACTS_DIR,
        check=False,
    )
    if proc.returncode != 0:
        raise CompilerError(f"solcjs failed: {proc.stderr.strip().splitlines()[-1:]}")
    result = json.loads(proc.stdout)
    return result["version"], result["output"]


def resolve_native_solc(solc: str) -> str:
    """Path of the native solc that ``solc`` names (a path, a name on PATH, or ``solcx``), checked to be
    exactly the pinned version."""
    if solc == SOLCX:
        path = _solcx_executable()
    else:
        found = shutil.which(solc)
        if found is None:
            raise CompilerError(f"no executable solc at {solc!r}; pass --solc PATH of a solc {SOLC_VERSION} binary")
        path = found
    version = _native_version(path)
    if not version.startswith(f"{SOLC_VERSION}+"):
        raise CompilerError(
            f"{path} is solc {version or 'of unknown version'}, not the pinned {SOLC_VERSION}; "
            f"pass a solc {SOLC_VERSION} binary, or omit --solc to use solcjs"
        )
    return path


def _solcx_executable() -> str:
    """The solc of the pinned version that py-solc-x installed."""
    install_hint = f"python -c \"import solcx; solcx.install_solc('{SOLC_VERSION}')\""
    try:
        import solcx  # optional: only `--solc solcx` needs it
    except ImportError as exc:
        raise CompilerError(f"--solc {SOLCX} needs py-solc-x: pip install py-solc-x, then {install_hint}") from exc
    try:
        return str(solcx.get_executable(SOLC_VERSION))
    except solcx.exceptions.SolcNotInstalled as exc:
        raise CompilerError(f"py-solc-x has no solc {SOLC_VERSION}; run {install_hint}") from exc


def _native_version(solc: str) -> str:
    """The long version a native solc reports (``0.8.28+commit.7893614a.Linux.g++``), or ``""``."""
    try:
        proc = subprocess.run([solc, "--version"], capture_output=True, text=True, check=False, timeout=60)
    except OSError as exc:
        raise CompilerError(
            f"cannot run {solc}: {exc.strerror}; pass --solc PATH of a solc {SOLC_VERSION} binary"
        ) from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith("Version: ")]
    return lines[-1].removeprefix("Version: ").strip() if lines else ""


def _compile_native(solc: str, payload: str) -> tuple[str, dict[str, Any]]:
    proc = subprocess.run([solc, "--standard-json"], input=payload, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CompilerError(f"solc failed: {proc.stderr.strip().splitlines()[-1:]}")
    return _native_version(solc), json.loads(proc.stdout)


def compile_contracts(solc: str | None = None) -> dict[str, dict[str, Any]]:
    """Compile every contract; returns artifacts keyed by contract name.

    Parameters
    ----------
    solc:
        A native solc of the pinned version (a path, a name on PATH, or ``solcx``); ``None`` takes
        ``$FLCHAIN_SOLC``, and if that is unset too, the pinned solcjs.
    """
    std_input = standard_input()
    payload = json.dumps(std_input)
    solc = solc or os.environ.get(SOLC_ENV) or None
    native = resolve_native_solc(solc) if solc else None
    compiler_name = "solc" if native else "solcjs"
    version, output = _compile_native(native, payload) if native else _compile_solcjs(payload)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompilerError(errors[0].get("formattedMessage", str(errors[0])).strip())
    artifacts: dict[str, dict[str, Any]] = {}
    for name in CONTRACTS:
        source_name = f"{name}.sol"
        compiled = output["contracts"][source_name][name]
        source = std_input["sources"][source_name]["content"]
        artifacts[name] = {
            "contractName": name,
            "sourceName": f"contracts/{source_name}",
            "sourceSha256": hashlib.sha256(source.encode()).hexdigest(),
            "compiler": {
                "name": compiler_name,
                # The numeric version identifies the compiler; the build suffix differs between
                # solcjs (Emscripten) and native builds that produce the same bytecode.
                "version": version.split(".Emscripten")[0].split(".Linux")[0],
                "settings": {k: v for k, v in SETTINGS.items() if k != "outputSelection"},
            },
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
        }
    return artifacts


def artifact_text(artifact: dict[str, Any]) -> str:
    """Canonical JSON text of an artifact, as committed."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if committed artifacts are stale")
    parser.add_argument(
        "--solc",
        metavar="PATH",
        help=f"a native solc {SOLC_VERSION} binary (or '{SOLCX}' for py-solc-x's) instead of solcjs; "
        f"default ${SOLC_ENV}",
    )
    args = parser.parse_args(argv)
    try:
        artifacts = compile_contracts(args.solc)
    except FLChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stale = []
    for name, artifact in artifacts.items():
        path = ARTIFACTS_DIR / f"{name}.json"
        text = artifact_text(artifact)
        if args.check:
            committed = path.read_text() if path.exists() else ""
            if _comparable(committed) != _comparable(text):
                stale.append(str(path))
        else:
            ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
            print(f"wrote {shown} ({artifact['compiler']['name']} {artifact['compiler']['version']})")
    if stale:
        print(f"error: stale artifacts {stale}; run python scripts/compile_contracts.py", file=sys.stderr)
        return 1
    return 0


def _comparable(text: str) -> Any:
    """The parts of an artifact that must match a fresh compile (not the compiler's build name)."""
    if not text:
        return None
    data = json.loads(text)
    data["compiler"].pop("name", None)
    return data
