"""A node's state directory: corrupt files are a one-line error naming the file, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from fl_chain.errors import ConfigError
from fl_chain.node.state import NodeState, RoundProgress

IDENTITY = {"chain_id": 1337, "contract": "0x" + "ab" * 20, "account": "0x" + "cd" * 20}


@pytest.mark.parametrize(
    "content", [b"{not json", b"[1]", b"\xff\xfe", b"null"], ids=["syntax", "list", "binary", "null"]
)
def test_corrupt_node_file_is_a_config_error_naming_it(tmp_path: Path, content: bytes) -> None:
    NodeState(tmp_path, **IDENTITY)
    (tmp_path / "node.json").write_bytes(content)
    with pytest.raises(ConfigError, match="node.json is corrupt"):
        NodeState(tmp_path, **IDENTITY)


@pytest.mark.parametrize("content", [b"{not json", b"[1]"], ids=["syntax", "list"])
def test_corrupt_progress_file_is_a_config_error_naming_it(tmp_path: Path, content: bytes) -> None:
    state = NodeState(tmp_path, **IDENTITY)
    state.save_round(7, 0, RoundProgress(update_committed=True))
    (path,) = tmp_path.rglob("progress*.json")
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="is corrupt"):
        state.round(7, 0)


def test_progress_round_trips_with_exclusion_fields(tmp_path: Path) -> None:
    """What a node records for a round, exclusions and reports included, survives a restart."""
    state = NodeState(tmp_path, **IDENTITY)
    progress = RoundProgress(update_committed=True, excluded=["0xA"], reported=["0xA", "0xB"])
    state.save_round(7, 3, progress)
    assert NodeState(tmp_path, **IDENTITY).round(7, 3) == progress


def test_secure_aggregation_keys_and_round_secrets_persist_privately(tmp_path: Path) -> None:
    # Prepare / Execute
    state = NodeState(tmp_path, **IDENTITY)
    key = state.long_term_key()
    state.save_secagg_round(7, 0, {"setup": "00", "mask_private": "11"})
    state.save_secagg_round(7, 1, {"setup": "22", "mask_private": "33"})
    again = NodeState(tmp_path, **IDENTITY)

    # Assert: the same key after a restart; both files readable by the owner only; old rounds forgotten on request
    assert len(key) == 32 and again.long_term_key() == key
    assert (tmp_path / "secagg-key").stat().st_mode & 0o777 == 0o600
    assert again.load_secagg_round(7, 1) == {"setup": "22", "mask_private": "33"}
    assert (tmp_path / "task-7" / "secagg-1.json").stat().st_mode & 0o777 == 0o600
    again.forget_secagg_rounds(7, before=1)
    assert again.load_secagg_round(7, 0) is None and again.load_secagg_round(7, 1) is not None
