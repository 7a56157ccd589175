"""Independent checks of a federation's results, recomputed from the chain and the blobs in IPFS."""

from __future__ import annotations

import numpy as np

from fl_chain.aggregation import reference_fedavg
from fl_chain.chain.coordinator import Coordinator, RoundStatus
from fl_chain.exchange import fetch_manifest, fetch_vector
from fl_chain.model.blob import BlobHeader, BlobKind, decode_partition
from fl_chain.model.partitioning import join_partitions, partition_bounds
from fl_chain.peering import connect_to_participants
from fl_chain.storage.base import Storage
from fl_chain.storage.cid import cid_from_digest


def fetch_global(storage: Storage, coordinator: Coordinator, task_id: int, round_: int, dimension: int) -> np.ndarray:
    """The global model of a finalized round: its final partitions, fetched and verified."""
    config, _ = coordinator.get_task(task_id)
    parts = []
    for bounds, digest in zip(partition_bounds(dimension, config.partitions), coordinator.get_final_digests(task_id, round_)):
        assert digest is not None, f"partition {bounds.index} of round {round_} is not final"
        expected = BlobHeader(BlobKind.AGGREGATE, task_id, round_, bounds.index, config.partitions, bounds.offset, bounds.length)
        parts.append(decode_partition(storage.get(cid_from_digest(digest), timeout=60), expected)[1])
    return join_partitions(parts)


def recompute_fedavg(storage: Storage, coordinator: Coordinator, task_id: int, round_: int) -> np.ndarray:
    """Weighted FedAvg of every update committed in ``round_``, from the update blobs in IPFS."""
    config, _ = coordinator.get_task(task_id)
    updates = []
    for commit in coordinator.find_update_commits(task_id, round_):
        manifest = fetch_manifest(
            storage, commit.digest, kind="update", task_id=task_id, round_=round_,
            partitions=config.partitions, contributor=commit.contributor, timeout=60,
        )
        updates.append((commit.contributor, commit.samples, fetch_vector(storage, manifest, blob_kind=BlobKind.UPDATE, timeout=60)))
    return reference_fedavg(updates)


def check_every_finalized_round(storage: Storage, coordinator: Coordinator, task_id: int, dimension: int) -> dict[int, np.ndarray]:
    """For each finalized round: global model == reference FedAvg of its updates, byte for byte."""
    _, task = coordinator.get_task(task_id)
    connect_to_participants(storage, coordinator, task_id, [p.account for p in coordinator.get_participants(task_id)])
    globals_: dict[int, np.ndarray] = {}
    for round_ in range(task.current_round + 1):
        if coordinator.get_round(task_id, round_).status != RoundStatus.FINALIZED:
            continue
        actual = fetch_global(storage, coordinator, task_id, round_, dimension)
        expected = recompute_fedavg(storage, coordinator, task_id, round_)
        assert actual.tobytes() == expected.tobytes(), f"round {round_}: global model differs from FedAvg of its updates"
        globals_[round_] = actual
    return globals_
