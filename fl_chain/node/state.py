"""A node's state directory: what it has done, so a restart resumes and never redoes finished work.

Layout::

    STATE_DIR/node.json                 identity (chain id, contract, account) and finished tasks
    STATE_DIR/phase.json                the phase the node is in: task, round, phase (see PhaseFile)
    STATE_DIR/task-<id>/task.json       the hash of the block that created the task (guards a reset chain)
    STATE_DIR/task-<id>/progress.json   per round: update digest and samples, aggregates, commits
    STATE_DIR/task-<id>/update-<r>.npy  the trained update of round r (kept until it is committed)
    STATE_DIR/task-<id>/global.npy      the latest global model and global-round.txt its round
    STATE_DIR/secagg-key                secure aggregation: the node's long-term X25519 private key (0600)
    STATE_DIR/task-<id>/secagg-<r>.json secure aggregation: round r's setup blob and its secrets (0600),
                                        written before the setup is published, so a restart never makes a second
    STATE_DIR/ipfs/                     the node's IPFS repo (its blobs survive restarts)
    STATE_DIR/logs/<session>/task-<id>/round-<r>.log

Every write is atomic (write to a temporary file, then rename), so a kill at any moment leaves
either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fl_chain.errors import ConfigError
from fl_chain.node.hooks import NodeObserver, Phase

STATE_VERSION = 1
#: Name of the file in the state directory that says which phase the node is in.
PHASE_FILE = "phase.json"


def _atomic_write(path: Path, data: bytes, *, durable: bool = True, private: bool = False) -> None:
    """Replace ``path`` by ``data`` in one rename; ``durable``: on disk (fsync) before the rename;
    ``private``: readable by the owner only."""
    tmp = path.with_name(f".{path.name}.tmp")
    if private:
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with open(tmp, "wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    tmp.replace(path)


@dataclass
class RoundProgress:
    """What this node did in one round."""

    update_digest: str | None = None
    samples: int | None = None
    update_committed: bool = False
    aggregates: dict[str, str] = field(default_factory=dict)  # partition -> digest hex
    aggregates_committed: list[int] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # contributors excluded on chain when `aggregates` were computed
    reported: list[str] = field(default_factory=list)  # contributors this node reported unavailable
    disputed: bool = False  # this node disputed the round's global model
    # Secure aggregation only:
    setup_digest: str | None = None  # digest hex of this node's setup blob
    setup_committed: bool = False
    reveal_committed: bool = False


#: The vector name (``<name>.npy`` in the task directory) of a completed task's final global model.
FINAL_MODEL = "final-model"


def task_directory(root: str | os.PathLike[str], task_id: int) -> Path:
    """The directory of ``task_id``'s files in the state directory ``root``."""
    return Path(root) / f"task-{task_id}"


def final_model_file(root: str | os.PathLike[str], task_id: int) -> Path:
    """The file a node with state directory ``root`` saves ``task_id``'s final model in."""
    return task_directory(root, task_id) / f"{FINAL_MODEL}.npy"


class NodeState:
    """The state directory of one node (one account on one coordinator)."""

    def __init__(self, root: str | os.PathLike[str], *, chain_id: int, contract: str, account: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        identity = {"chain_id": chain_id, "contract": contract.lower(), "account": account.lower()}
        path = self.root / "node.json"
        if path.exists():
            stored = _read_json_object(path)
            for key, value in identity.items():
                if stored.get(key) != value:
                    raise ConfigError(
                        f"state directory {self.root} belongs to {key}={stored.get(key)}, not {value}; "
                        "use another --state-dir for this node"
                    )
            self._node = stored
        else:
            self._node = {"version": STATE_VERSION, **identity, "finished_tasks": []}
            self._save_node()

    # -- node level -----------------------------------------------------------------------------

    def _save_node(self) -> None:
        _atomic_write(self.root / "node.json", json.dumps(self._node, indent=2).encode())

    @property
    def finished_tasks(self) -> list[int]:
        """Tasks this node finished; they are never run again."""
        return list(self._node["finished_tasks"])

    def mark_finished(self, task_id: int) -> None:
        """Record that ``task_id`` ended (completed or cancelled)."""
        if task_id not in self._node["finished_tasks"]:
            self._node["finished_tasks"].append(task_id)
            self._save_node()

    @property
    def ipfs_repo(self) -> Path:
        """Directory of this node's IPFS repo."""
        return self.root / "ipfs"

    # -- task level -----------------------------------------------------------------------------

    def task_dir(self, task_id: int) -> Path:
        """Directory of ``task_id``'s files (created on demand)."""
        path = task_directory(self.root, task_id)
        path.mkdir(exist_ok=True)
        return path

    def bind_task(self, task_id: int, anchor: str) -> None:
        """Tie ``task-<id>/`` to one task on one chain: ``anchor`` is the hash of the block that
        created it. A chain that was reset (same contract address and task id on a fresh chain)
        has another anchor, and its task must not resume this directory's progress.

        Raises
        ------
        ConfigError
            If the directory already holds the task of another anchor.
        """
        path = self.task_dir(task_id) / "task.json"
        if path.exists():
            try:
                stored = json.loads(path.read_text()).get("anchor")
            except (json.JSONDecodeError, AttributeError):
                raise ConfigError(f"{path} is corrupt; move {path.parent} aside and start the task fresh") from None
            if stored != anchor:
                raise ConfigError(
                    f"{path.parent} holds task {task_id} of another chain (created in block {stored}, the chain's task "
                    f"{task_id} in block {anchor}; was the chain reset?): "
                    f"move {path.parent} aside or use another --state-dir"
                )
            return
        _atomic_write(path, json.dumps({"anchor": anchor}).encode())

    def _progress_path(self, task_id: int) -> Path:
        return self.task_dir(task_id) / "progress.json"

    def _load_progress(self, task_id: int) -> dict[str, Any]:
        path = self._progress_path(task_id)
        if not path.exists():
            return {}
        return _read_json_object(path)

    def round(self, task_id: int, round_: int) -> RoundProgress:
        """What this node recorded for ``round_``."""
        raw = self._load_progress(task_id).get(str(round_))
        return RoundProgress(**raw) if raw else RoundProgress()

    def save_round(self, task_id: int, round_: int, progress: RoundProgress) -> None:
        """Record ``progress`` for ``round_`` (atomically)."""
        data = self._load_progress(task_id)
        data[str(round_)] = progress.__dict__
        _atomic_write(self._progress_path(task_id), json.dumps(data, indent=1, sort_keys=True).encode())

    # -- secure aggregation -----------------------------------------------------------------------

    def long_term_key(self) -> bytes:
        """This node's long-term X25519 private key (32 bytes), made on first use and kept (mode 0600).

        Its public key is what the node registers when it joins a secure-aggregation task; share
        boxes to this node are sealed under it, so losing it loses this node's part in rounds.
        """
        path = self.root / "secagg-key"
        if path.exists():
            key = bytes.fromhex(path.read_text().strip())
            if len(key) != 32:
                raise ConfigError(f"{path} is corrupt; move it aside (the node then registers a new key)")
            return key
        key = os.urandom(32)
        _atomic_write(path, key.hex().encode(), private=True)
        return key

    def save_secagg_round(self, task_id: int, round_: int, record: dict[str, str]) -> None:
        """Keep round ``round_``'s setup blob and secrets (hex strings), durably and privately."""
        path = self.task_dir(task_id) / f"secagg-{round_}.json"
        _atomic_write(path, json.dumps(record, sort_keys=True).encode(), private=True)

    def load_secagg_round(self, task_id: int, round_: int) -> dict[str, str] | None:
        """What :meth:`save_secagg_round` kept for ``round_``, or None."""
        path = self.task_dir(task_id) / f"secagg-{round_}.json"
        return _read_json_object(path) if path.exists() else None

    def forget_secagg_rounds(self, task_id: int, before: int) -> None:
        """Delete the secrets of rounds before ``before`` (they are of no use once a round ended)."""
        for path in self.task_dir(task_id).glob("secagg-*.json"):
            suffix = path.stem.removeprefix("secagg-")
            if suffix.isdigit() and int(suffix) < before:
                path.unlink(missing_ok=True)

    def save_vector(self, task_id: int, name: str, vector: np.ndarray) -> None:
        """Store a float32 vector as ``<name>.npy`` in the task directory."""
        path = self.task_dir(task_id) / f"{name}.npy"
        tmp = path.with_name(f".{path.name}.tmp.npy")
        np.save(tmp, np.asarray(vector, dtype=np.float32))
        tmp.replace(path)

    def load_vector(self, task_id: int, name: str) -> np.ndarray | None:
        """The vector stored as ``<name>.npy``, or None."""
        path = self.task_dir(task_id) / f"{name}.npy"
        return np.load(path) if path.exists() else None

    def delete_vector(self, task_id: int, name: str) -> None:
        """Remove ``<name>.npy`` if present."""
        (self.task_dir(task_id) / f"{name}.npy").unlink(missing_ok=True)

    def global_round(self, task_id: int) -> int | None:
        """Round of the stored global model (-1 for the initial model), or None."""
        path = self.task_dir(task_id) / "global-round.txt"
        return int(path.read_text()) if path.exists() and (self.task_dir(task_id) / "global.npy").exists() else None

    def save_global(self, task_id: int, round_: int, vector: np.ndarray) -> None:
        """Store the global model of ``round_`` (-1: initial)."""
        self.save_vector(task_id, "global", vector)
        _atomic_write(self.task_dir(task_id) / "global-round.txt", str(round_).encode())


@dataclass(frozen=True)
class PhaseRecord:
    """The phase a node last entered (the content of ``phase.json``)."""

    task: int
    round: int
    phase: Phase
    #: Wall-clock time (``time.time()``) the phase began.
    since: float


class PhaseFile(NodeObserver):
    """An observer that writes the phase a node enters to ``STATE_DIR/phase.json`` (atomically),
    so that another process (a supervisor, a test harness) can tell what the node is doing."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root) / PHASE_FILE

    def phase_started(self, task_id: int, round_: int, phase: Phase) -> None:
        record = {"task": task_id, "round": round_, "phase": phase.value, "since": time.time()}
        _atomic_write(self.path, json.dumps(record).encode(), durable=False)

    @staticmethod
    def read(root: str | os.PathLike[str]) -> PhaseRecord | None:
        """The phase recorded in state directory ``root``; None if the node recorded none yet
        (or the file is unreadable: it is only ever replaced whole, so that means absent)."""
        try:
            data = json.loads((Path(root) / PHASE_FILE).read_text())
            return PhaseRecord(int(data["task"]), int(data["round"]), Phase(data["phase"]), float(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ConfigError naming the file if it is anything else."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is corrupt; move the state directory aside and start fresh")
    return data
