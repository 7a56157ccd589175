"""Compiled contract artifacts, shipped inside the package in ``fl_chain/chain/contracts/``.

``scripts/compile_contracts.py`` writes them from ``contracts/*.sol``; ``FLCHAIN_ARTIFACTS`` points at
another directory of artifacts instead.
"""

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
#: The artifacts' one home: package data, so that an installed wheel carries them.
PACKAGED_ARTIFACTS_DIR = Path(__file__).resolve().parent / "contracts"


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
    """Load the artifact of contract ``name`` from ``$FLCHAIN_ARTIFACTS`` or else the package."""
    override = os.environ.get(ARTIFACTS_ENV)
    path = Path(override or PACKAGED_ARTIFACTS_DIR) / f"{name}.json"
    if not path.is_file():
        if override:
            raise CompilerError(f"no artifact {path}; point {ARTIFACTS_ENV} at a directory with {name}.json")
        raise CompilerError(f"no artifact {path}; run python scripts/compile_contracts.py or reinstall fl-chain")
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
