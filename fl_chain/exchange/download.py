"""Reach the participants' IPFS peers and fetch a round's global model: ``model get``, ``model export``, ``audit``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fl_chain.chain.coordinator import Coordinator
from fl_chain.errors import BlobNotFoundError, ConfigError
from fl_chain.exchange.gather import final_digests, gather_partitions
from fl_chain.exchange.peering import connect_to_participants
from fl_chain.protocol.cid import cid_from_digest
from fl_chain.protocol.unixfs import unixfs_digest
from fl_chain.protocol.vector import vector_manifest
from fl_chain.storage.base import Storage
from fl_chain.storage.kubo import KuboStorage


@contextmanager
def participant_storage(
    coordinator: Coordinator, task_id: int, *, ipfs_dir: str | Path | None = None
) -> Iterator[Storage]:
    """A kubo peer of this process connected to the registered peers of ``task_id``'s participants.

    Its repo is ``ipfs_dir`` (default: a temporary one, removed afterwards); the peer is closed on
    leaving. Used by ``model get``, ``model export`` and ``audit``: nothing but the chain tells them
    where the content is.
    """
    with tempfile.TemporaryDirectory(prefix="flchain-ipfs-") as tmp:
        repo = Path(ipfs_dir) if ipfs_dir else Path(tmp) / "ipfs"
        storage = KuboStorage(repo, log_dir=Path(tmp))
        try:
            connect_to_participants(
                storage, coordinator, task_id, [p.account for p in coordinator.get_participants(task_id)]
            )
            yield storage
        finally:
            storage.close()


def fetch_global_model(
    coordinator: Coordinator,
    task_id: int,
    round_: int | None,
    *,
    ipfs_dir: str | Path | None = None,
    timeout: float = 60.0,
) -> tuple[int, np.ndarray, str]:
    """Fetch and verify every final partition of ``round_`` (default: latest).

    Returns
    -------
    (round, vector, model_cid):
        The round, its global model, and the CID of its model manifest (rebuilt from the final digests).
    """
    _, state = coordinator.get_task(task_id)
    if round_ is None:
        if state.latest_finalized_round is None:
            raise ConfigError(f"task {task_id} has no finalized round yet")
        round_ = state.latest_finalized_round
    digests = final_digests(coordinator, task_id, round_)
    if digests is None:
        raise ConfigError(f"round {round_} of task {task_id} is not finalized")
    with participant_storage(coordinator, task_id, ipfs_dir=ipfs_dir) as storage:
        try:
            vector = gather_partitions(storage, digests, task_id=task_id, round_=round_, timeout=timeout)
        except BlobNotFoundError as exc:
            raise BlobNotFoundError(f"{exc}; are the participants' nodes running?") from None
    manifest = vector_manifest(
        [cid_from_digest(d) for d in digests], dimension=vector.size, task_id=task_id, round_=round_
    )
    return round_, vector, cid_from_digest(unixfs_digest(manifest.to_bytes()))


def download_global_model(
    coordinator: Coordinator,
    task_id: int,
    round_: int | None,
    out: str | Path,
    *,
    ipfs_dir: str | Path | None = None,
    timeout: float = 60.0,
) -> tuple[int, Path]:
    """Fetch and verify every final partition of ``round_`` (default: latest) and save the vector."""
    round_, vector, _ = fetch_global_model(coordinator, task_id, round_, ipfs_dir=ipfs_dir, timeout=timeout)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vector)
    return round_, path
