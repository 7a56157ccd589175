"""Recompute a finalized round from the chain and IPFS: the audit trail anyone can follow.

A round's global model is its final partitions. Each final partition must equal the weighted
FedAvg of the updates committed in that round, minus the invalid ones (content that does not
parse or verify, or is not finite: every honest aggregator leaves those out alike), minus the
updates the chain excluded as unavailable *before that partition finalized*: exclusions happen one at a time in the fallback
phase, so a partition is checked against the frozen set minus each prefix of the exclusion list,
longest first (usually there is no exclusion and one candidate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_chain.aggregation import reference_fedavg
from fl_chain.chain.coordinator import Coordinator, UpdateCommit
from fl_chain.errors import BlobInvalidError, BlobNotFoundError, FLChainError
from fl_chain.exchange import fetch_manifest, fetch_partition
from fl_chain.model.blob import BlobHeader, BlobKind, blob_size, decode_header, decode_partition
from fl_chain.model.manifest import Manifest
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


def fetch_global(storage: Storage, coordinator: Coordinator, task_id: int, round_: int, *, timeout: float,
                 dimension: int | None = None) -> np.ndarray:
    """The global model of a finalized round: its final partitions, fetched and verified in order.

    With ``dimension`` (the model's parameter count) every fetch is bounded by the exact blob size.
    """
    config, _ = coordinator.get_task(task_id)
    parts = []
    offset = 0
    bounds = partition_bounds(dimension, config.partitions) if dimension is not None else None
    for index, digest in enumerate(coordinator.get_final_digests(task_id, round_)):
        if digest is None:
            raise FLChainError(f"round {round_} partition {index} is not final")
        limit = blob_size(bounds[index].length) if bounds is not None else None
        blob = storage.get(cid_from_digest(digest), timeout=timeout, max_size=limit)
        length = decode_header(blob).length  # checked against the chain's view next, with the rest
        expected = BlobHeader(BlobKind.AGGREGATE, task_id, round_, index, config.partitions, offset, length)
        parts.append(decode_partition(blob, expected)[1])
        offset += length
    return join_partitions(parts)


def audit_round(storage: Storage, coordinator: Coordinator, task_id: int, round_: int, *, timeout: float = 60) -> RoundAudit:
    """Fetch a finalized round's global model and recompute it as FedAvg of its committed updates.

    Validity is decided per partition, as every honest aggregator does: a contributor whose
    manifest is invalid is left out of every partition, one whose blob for a partition is invalid
    or not finite is left out of that partition only.

    Raises ``BlobNotFoundError`` if a blob the check needs is not served within ``timeout``.
    """
    config, _ = coordinator.get_task(task_id)
    actual = fetch_global(storage, coordinator, task_id, round_, timeout=timeout)
    commits = coordinator.find_update_commits(task_id, round_)
    excluded = coordinator.get_excluded(task_id, round_)
    manifests: dict[str, Manifest | None] = {}
    slices: dict[tuple[str, int], np.ndarray | None] = {}

    def manifest(commit: UpdateCommit) -> Manifest | None:
        if commit.contributor not in manifests:
            try:
                manifests[commit.contributor] = fetch_manifest(
                    storage, commit.digest, kind="update", task_id=task_id, round_=round_,
                    partitions=config.partitions, contributor=commit.contributor, timeout=timeout,
                    dimension=actual.size,
                )
            except BlobInvalidError:
                manifests[commit.contributor] = None
        return manifests[commit.contributor]

    def values(commit: UpdateCommit, partition: int) -> np.ndarray | None:
        """The contributor's valid slice of ``partition``; None if invalid; BlobNotFoundError if unavailable."""
        key = (commit.contributor, partition)
        if key not in slices:
            found = manifest(commit)
            slices[key] = None
            if found is not None:
                try:
                    got = fetch_partition(storage, found, partition, blob_kind=BlobKind.UPDATE, timeout=timeout)
                    slices[key] = got if np.isfinite(got).all() else None
                except BlobInvalidError:
                    pass
        return slices[key]

    gone: set[str] = set()  # excluded contributors whose content is not served (not fetched twice)
    expected = np.empty_like(actual)
    for bounds in partition_bounds(actual.size, config.partitions):
        window = slice(bounds.offset, bounds.offset + bounds.length)
        candidates = []
        for keep in range(len(excluded), -1, -1):  # all exclusions first, then shorter prefixes
            left_out = set(excluded[:keep])
            chosen = []
            for commit in commits:
                if commit.contributor in left_out:
                    continue
                try:
                    if commit.contributor in gone:
                        raise BlobNotFoundError(commit.contributor)
                    got = values(commit, bounds.index)
                except BlobNotFoundError:
                    if commit.contributor not in excluded:
                        raise
                    gone.add(commit.contributor)
                    break  # this set includes an update nobody serves: no final partition can use it
                if got is not None:
                    chosen.append((commit.contributor, commit.samples, got))
            else:
                if chosen:
                    candidates.append(reference_fedavg(chosen))
        # No valid contribution at all: aggregators keep the previous global values (not checked here).
        matching = [c for c in candidates if c.tobytes() == actual[window].tobytes()]
        expected[window] = (matching or candidates or [actual[window]])[0]
    return RoundAudit(actual=actual, expected=expected, excluded=excluded)
