"""Independent checks of a federation's results, recomputed from the chain and the blobs in IPFS."""

from __future__ import annotations

import time

import numpy as np

from fl_chain.aggregation import ContributionRule
from fl_chain.chain.coordinator import Coordinator, RoundStatus
from fl_chain.exchange import audit, gather
from fl_chain.exchange.peering import connect_to_participants
from fl_chain.storage.base import Storage


def wait_for_update_commit(
    coordinator: Coordinator, task_id: int, account: str, *, from_round: int = 1, timeout: float = 300
) -> int:
    """Wait (at most ``timeout`` seconds) until ``account`` committed its update in a round at or after
    ``from_round``; returns the current round then (the caller checks that it got there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, task = coordinator.get_task(task_id)
        if task.current_round >= from_round and any(
            c.contributor == account for c in coordinator.find_update_commits(task_id, task.current_round)
        ):
            break
        time.sleep(0.1)
    return coordinator.get_task(task_id)[1].current_round


def fetch_global(storage: Storage, coordinator: Coordinator, task_id: int, round_: int, dimension: int) -> np.ndarray:
    """The global model of a finalized round: its final partitions, fetched and verified."""
    vector = gather.fetch_global(storage, coordinator, task_id, round_, timeout=60)
    assert vector.size == dimension, f"round {round_}: global model has {vector.size} parameters, not {dimension}"
    return vector


def recompute_fedavg(storage: Storage, coordinator: Coordinator, task_id: int, round_: int) -> np.ndarray:
    """Weighted FedAvg of the updates committed in ``round_`` (minus exclusions), from IPFS."""
    return audit.audit_round(storage, coordinator, task_id, round_).expected


def check_every_finalized_round(
    storage: Storage,
    coordinator: Coordinator,
    task_id: int,
    dimension: int,
    *,
    timeout: float = 60,
    rule: ContributionRule | None = None,
    initial: np.ndarray | None = None,
) -> dict[int, np.ndarray]:
    """For each finalized round: global model == what the contribution rule makes of its updates, byte for byte.

    ``timeout`` bounds each fetch (an update excluded as unavailable costs one timeout per round);
    ``rule`` is the task's (``spec.contribution_rule()``; default plain FedAvg of the valid updates),
    and with a norm bound the task's ``initial`` model is needed for the first round.
    """
    _, task = coordinator.get_task(task_id)
    connect_to_participants(storage, coordinator, task_id, [p.account for p in coordinator.get_participants(task_id)])
    globals_: dict[int, np.ndarray] = {}
    for round_ in range(task.current_round + 1):
        if coordinator.get_round(task_id, round_).status != RoundStatus.FINALIZED:
            continue
        result = audit.audit_round(storage, coordinator, task_id, round_, timeout=timeout, rule=rule, initial=initial)
        assert result.actual.size == dimension
        assert result.ok, f"round {round_}: global model differs from the rule's aggregate of its updates"
        globals_[round_] = result.actual
    return globals_
