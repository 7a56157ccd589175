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

from fl_chain.aggregation import reference_fedavg, validate_values
from fl_chain.chain.coordinator import Coordinator, RoundStatus, UpdateCommit
from fl_chain.errors import BlobInvalidError, BlobNotFoundError, FLChainError
from fl_chain.exchange.transfer import fetch_manifest, fetch_partition
from fl_chain.protocol.blob import BlobHeader, BlobKind, blob_size, decode_header, decode_partition
from fl_chain.protocol.manifest import Manifest
from fl_chain.protocol.partitioning import join_partitions, partition_bounds
from fl_chain.storage.base import Storage
from fl_chain.protocol.cid import cid_from_digest


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


def audit_round(
    storage: Storage,
    coordinator: Coordinator,
    task_id: int,
    round_: int,
    *,
    timeout: float = 60,
    norm_bound: float | None = None,
    initial: np.ndarray | None = None,
) -> RoundAudit:
    """Fetch a finalized round's global model and recompute it as FedAvg of its committed updates.

    Validity is decided per partition, as every honest aggregator does: a contributor whose
    manifest is invalid is left out of every partition, one whose blob for a partition is invalid,
    not finite, or (with ``norm_bound``, the task's ``[strategy] norm_bound``) changes the round's
    base model by more than the bound is left out of that partition only. The base is the global
    model of the latest finalized round before ``round_``, or ``initial`` (the task's initial model)
    when there is none.

    Raises ``BlobNotFoundError`` if a blob the check needs is not served within ``timeout``.
    """
    config, _ = coordinator.get_task(task_id)
    actual = fetch_global(storage, coordinator, task_id, round_, timeout=timeout)
    base = _base_model(storage, coordinator, task_id, round_, initial, timeout) if norm_bound is not None else None
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
                    window = slice(got_bounds[partition].offset, got_bounds[partition].offset + got.size)
                    reason = validate_values(
                        got,
                        expected_length=got_bounds[partition].length,
                        norm_bound=norm_bound,
                        reference=None if base is None else base[window],
                    )
                    slices[key] = got if reason is None else None
                except BlobInvalidError:
                    pass
        return slices[key]

    got_bounds = partition_bounds(actual.size, config.partitions)
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


def _base_model(
    storage: Storage, coordinator: Coordinator, task_id: int, round_: int, initial: np.ndarray | None, timeout: float
) -> np.ndarray:
    """The model ``round_`` was trained from: the latest finalized round before it, else ``initial``.

    (A disputed round is failed, and only the latest finalized round can be disputed, so a finalized
    round was always trained from the latest round finalized before it.)
    """
    for earlier in range(round_ - 1, -1, -1):
        if coordinator.get_round(task_id, earlier).status == RoundStatus.FINALIZED:
            return fetch_global(storage, coordinator, task_id, earlier, timeout=timeout)
    if initial is None:
        raise FLChainError(f"auditing round {round_} with a norm bound needs the task's initial model")
    return initial
