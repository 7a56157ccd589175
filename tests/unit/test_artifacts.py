"""The committed contract artifacts equal a fresh compile with the pinned solc."""

from __future__ import annotations

import json

from fl_chain.chain.artifacts import load_artifact
from fl_chain.chain.compile import BUILD_DIR, SOLC_VERSION, compile_contracts


def test_committed_artifact_matches_fresh_compile() -> None:
    """ABI, bytecode, settings and compiler version in contracts/build equal a fresh compile."""
    # Prepare
    committed = json.loads((BUILD_DIR / "FLCoordinator.json").read_text())

    # Execute
    fresh = compile_contracts()["FLCoordinator"]

    # Assert
    assert fresh["compiler"]["version"].startswith(SOLC_VERSION + "+commit.")
    for key in ("abi", "bytecode", "deployedBytecode", "sourceSha256"):
        assert fresh[key] == committed[key], f"{key} differs: run python scripts/compile_contracts.py"
    assert fresh["compiler"]["version"] == committed["compiler"]["version"]
    assert fresh["compiler"]["settings"] == committed["compiler"]["settings"]


def test_artifact_declares_prefixed_custom_errors_and_past_tense_events() -> None:
    """Every custom error carries the contract prefix; events are named in the past tense."""
    # Prepare
    abi = load_artifact().abi

    # Execute
    errors = [item["name"] for item in abi if item["type"] == "error"]
    events = [item["name"] for item in abi if item["type"] == "event"]

    # Assert
    assert errors and all(name.startswith("FLCoordinator") for name in errors)
    assert events and all(name.endswith(("ed", "Drawn")) for name in events), events  # "Drawn": irregular
