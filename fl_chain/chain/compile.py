"""Compile the Solidity contracts with the pinned compiler and write their artifacts.

The artifacts in ``contracts/build/`` are committed; ``compile_contracts.py --check`` and the test
suite prove they equal a fresh compile.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from fl_chain.errors import CompilerError, FLChainError

SOLC_VERSION = "0.8.28"
CONTRACTS = ("FLCoordinator",)
REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"
BUILD_DIR = CONTRACTS_DIR / "build"
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
    sources = {
        f"{name}.sol": {"content": (CONTRACTS_DIR / f"{name}.sol").read_text()} for name in CONTRACTS
    }
    return {"language": "Solidity", "sources": sources, "settings": SETTINGS}


def _compile_solcjs(payload: str) -> tuple[str, dict[str, Any]]:
    module = CONTRACTS_DIR / "node_modules" / "solc"
    if not module.is_dir():
        raise CompilerError(
            f"solcjs {SOLC_VERSION} is not installed; run `npm ci --prefix {CONTRACTS_DIR}`"
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


def _native_solc() -> str | None:
    """Path of a native solc of exactly the pinned version, if one is installed."""
    solc = shutil.which("solc")
    if solc is None:
        return None
    proc = subprocess.run([solc, "--version"], capture_output=True, text=True, check=False)
    return solc if f"Version: {SOLC_VERSION}+" in proc.stdout else None


def _compile_native(solc: str, payload: str) -> tuple[str, dict[str, Any]]:
    proc = subprocess.run(
        [solc, "--standard-json"], input=payload, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise CompilerError(f"solc failed: {proc.stderr.strip()}")
    version = subprocess.run([solc, "--version"], capture_output=True, text=True, check=False)
    long_version = version.stdout.strip().splitlines()[-1].split("Version: ")[-1]
    return long_version, json.loads(proc.stdout)


def compile_contracts() -> dict[str, dict[str, Any]]:
    """Compile every contract; returns artifacts keyed by contract name."""
    std_input = standard_input()
    payload = json.dumps(std_input)
    native = _native_solc()
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed artifacts are stale")
    args = parser.parse_args(argv)
    try:
        artifacts = compile_contracts()
    except FLChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stale = []
    for name, artifact in artifacts.items():
        path = BUILD_DIR / f"{name}.json"
        text = artifact_text(artifact)
        if args.check:
            committed = path.read_text() if path.exists() else ""
            if _comparable(committed) != _comparable(text):
                stale.append(str(path))
        else:
            BUILD_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO_ROOT)} (solc {artifact['compiler']['version']})")
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
