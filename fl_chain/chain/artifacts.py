"""Compiled contract artifacts from ``contracts/build/``."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fl_chain.errors import CompilerError

#: Environment variable that points at another artifacts directory.
ARTIFACTS_ENV = "FLCHAIN_ARTIFACTS"
DEFAULT_BUILD_DIR = Path(__file__).resolve().parents[2] / "contracts" / "build"


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: ABI, bytecode and the compiler that made them."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    sha256: str


@lru_cache(maxsize=8)
def load_artifact(name: str = "FLCoordinator") -> Artifact:
    """Load the committed artifact of contract ``name``."""
    build_dir = Path(os.environ.get(ARTIFACTS_ENV, DEFAULT_BUILD_DIR))
    path = build_dir / f"{name}.json"
    if not path.is_file():
        raise CompilerError(f"no artifact {path}; run python scripts/compile_contracts.py")
    raw = path.read_bytes()
    data = json.loads(raw)
    return Artifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler_version=data["compiler"]["version"],
        sha256=hashlib.sha256(raw).hexdigest(),
    )
