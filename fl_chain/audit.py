"""Recompute a finalized round from the chain and IPFS: the audit trail anyone can follow.

A round's global model is its final partitions. Each final partition must equal the weighted
FedAvg of the updates committed in that round, minus the updates the chain excluded as
unavailable *before that partition finalized*: exclusions happen one at a time in the fallback
phase, so a partition is checked against the frozen set minus each prefix of the exclusion list,
longest first (usually there is no exclusion and one candidate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_chain.aggregation import reference_fedavg
from fl_chain.chain.coordinator import Coordinator, UpdateCommit
from fl_chain.errors import BlobNotFoundError, FLChainError
from fl_chain.exchange import fetch_manifest, fetch_vector
from fl_chain.model.blob import BlobHeader, BlobKind, decode_header, decode_partition
from fl_chain.model.partitioning import join_partitions, partition_bounds
from fl_chain.storage.base import Storage
from fl_chain.storage.cid import cid_from_digest


@dataclass
class RoundAudit:
    """A finalized round's global model and what FedAvg of its updates says it should be."""

    actual: np.ndarray
    expected: np.ndarray
    excluded: list[str]

    @property
    def ok(self) -> bool:
        return self.actual.tobytes() == self.expected.tobytes()


def fetch_global(storage: Storage, coordinator: Coordinator, task_id: int, round_: int, *, timeout: float) -> np.ndarray:
    """The global model of a finalized round: its final partitions, fetched and verified in order."""
    config, _ = coordinator.get_task(task_id)
    parts = []
    offset = 0
    for index, digest in enumerate(coordinator.get_final_digests(task_id, round_)):
        if digest is None:
            raise FLChainError(f"round {round_} partition {index} is not final")
        blob = storage.get(cid_from_digest(digest), timeout=timeout)
        length = decode_header(blob).length  # checked against the chain's view next, with the rest
        expected = BlobHeader(BlobKind.AGGREGATE, task_id, round_, index, config.partitions, offset, length)
        parts.append(decode_partition(blob, expected)[1])
        offset += length
    return join_partitions(parts)


def audit_round(storage: Storage, coordinator: Coordinator, task_id: int, round_: int, *, timeout: float = 60) -> RoundAudit:
    """Fetch a finalized round's global model and recompute it as FedAvg of its committed updates.

    Raises ``BlobNotFoundError`` if a blob the check needs is not served within ``timeout``.
    """
    config, _ = coordinator.get_task(task_id)
    actual = fetch_global(storage, coordinator, task_id, round_, timeout=timeout)
    commits = coordinator.find_update_commits(task_id, round_)
    excluded = coordinator.get_excluded(task_id, round_)
    updates: dict[str, tuple[str, int, np.ndarray] | None] = {}

    def update(commit: UpdateCommit) -> tuple[str, int, np.ndarray] | None:
        if commit.contributor not in updates:
            try:
                manifest = fetch_manifest(
                    storage, commit.digest, kind="update", task_id=task_id, round_=round_,
                    partitions=config.partitions, contributor=commit.contributor, timeout=timeout,
                )
                vector = fetch_vector(storage, manifest, blob_kind=BlobKind.UPDATE, timeout=timeout)
                updates[commit.contributor] = (commit.contributor, commit.samples, vector)
            except BlobNotFoundError:
                if commit.contributor not in excluded:
                    raise
                updates[commit.contributor] = None  # excluded and still unavailable
        return updates[commit.contributor]

    candidates: list[np.ndarray] = []
    for keep in range(len(excluded), -1, -1):  # all exclusions first, then shorter prefixes
        left_out = set(excluded[:keep])
        chosen = [update(c) for c in commits if c.contributor not in left_out]
        if any(u is None for u in chosen):
            continue  # this set includes an update nobody serves: no final partition can use it
        candidates.append(reference_fedavg([u for u in chosen if u is not None]))
    expected = candidates[0].copy()
    for bounds in partition_bounds(actual.size, config.partitions):
        window = slice(bounds.offset, bounds.offset + bounds.length)
        for candidate in candidates:
            if candidate[window].tobytes() == actual[window].tobytes():
                expected[window] = candidate[window]
                break
    return RoundAudit(actual=actual, expected=expected, excluded=excluded)
