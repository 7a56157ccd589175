"""A contract demo: several participants run full rounds on a chain with stand-in digests.

Until the training node runtime lands, this is the quick start's main job: it exercises the real
contract on a real chain (embedded by default) exactly as nodes will: join, commit updates, freeze,
aggregate assigned partitions, finalize by quorum, and retry a round where too few contribute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from fl_chain.chain import Chain, Coordinator, RoundStatus, TaskConfig, connect, dev_accounts, open_chain


@dataclass(frozen=True)
class RoundReport:
    """What happened in one round of the demo."""

    round: int
    status: str
    contributors: int
    finalized_partitions: int
    gas_total: int
    gas_per_participant: float


def _h(*parts: object) -> bytes:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()


def run_demo(
    *,
    chain_backend: str = "embedded",
    participants: int = 4,
    partitions: int = 4,
    replication: int = 2,
    quorum: int = 2,
    rounds: int = 3,
    dropout_round: int | None = 1,
    log: Callable[[str], object] = print,
) -> list[RoundReport]:
    """Run ``rounds`` finalized rounds with ``participants`` nodes; returns one report per round.

    In ``dropout_round`` only ``min_contributors - 1`` nodes commit, so that round fails on its
    deadline and is retried: the demo shows a retry next to the finalized rounds.
    """
    chain: Chain = open_chain(chain_backend, accounts=participants + 1)
    try:
        client = connect(chain)
        operator, *nodes = dev_accounts(participants + 1)
        coordinator = Coordinator.deploy(client, operator)
        log(f"deployed FLCoordinator at {coordinator.address} on {chain.name} (chain id {client.chain_id})")
        config = TaskConfig(
            manifest_digest=_h("demo-task-manifest"),
            partitions=partitions,
            replication=replication,
            quorum=quorum,
            min_contributors=max(quorum, participants // 2 + 1),
            update_duration=60,
            aggregation_duration=60,
            rounds=rounds,
        )
        coordinator.admit(operator, [n.address for n in nodes])
        task_id = coordinator.create_task(operator, config)
        for i, node in enumerate(nodes):
            coordinator.join(node, task_id, [f"/ip4/127.0.0.1/tcp/{4001 + i}/p2p/demo-peer-{i}"])
        coordinator.start_task(operator, task_id)
        log(f"task {task_id}: {participants} participants, P={partitions} r={replication} q={quorum}")

        reports: list[RoundReport] = []
        while True:
            _, state = coordinator.get_task(task_id)
            if state.finalized_rounds >= rounds:
                break
            round_ = state.current_round
            drop = dropout_round is not None and round_ == dropout_round
            report = _run_round(chain, coordinator, task_id, round_, nodes, config, drop)
            reports.append(report)
            log(
                f"round {report.round}: {report.status:<9} contributors={report.contributors} "
                f"final partitions={report.finalized_partitions}/{partitions} "
                f"gas/participant={report.gas_per_participant:,.0f}"
            )
        return reports
    finally:
        chain.close()


def _run_round(
    chain: Chain,
    coordinator: Coordinator,
    task_id: int,
    round_: int,
    nodes: list[LocalAccount],
    config: TaskConfig,
    drop: bool,
) -> RoundReport:
    gas = 0
    committers = nodes[: config.min_contributors - 1] if drop else nodes
    for node in committers:
        gas += coordinator.commit_update(node, task_id, round_, _h("update", round_, node.address), 100)["gasUsed"]
    info = coordinator.get_round(task_id, round_)
    if info.status == RoundStatus.UPDATE:
        chain.increase_time(config.update_duration)
        gas += coordinator.advance(nodes[0], task_id)["gasUsed"]
        info = coordinator.get_round(task_id, round_)
    if info.status == RoundStatus.AGGREGATION:
        # Every honest aggregator computes the same aggregate, hence the same digest.
        commits = coordinator.find_update_commits(task_id, round_)
        if info.assignment_key is None:  # the freezing block's hash is read from a later block
            gas += coordinator.draw_assignment(nodes[0], task_id, round_)["gasUsed"]
        for node in nodes:
            assigned = coordinator.get_assigned_partitions(task_id, round_, node.address)
            if assigned and coordinator.get_round(task_id, round_).status == RoundStatus.AGGREGATION:
                digests = [_h("aggregate", round_, p, *[c.digest.hex() for c in commits]) for p in assigned]
                gas += coordinator.commit_aggregates(node, task_id, round_, assigned, digests)["gasUsed"]
    info = coordinator.get_round(task_id, round_)
    return RoundReport(
        round=round_,
        status=info.status.name.lower(),
        contributors=info.contributors,
        finalized_partitions=info.finalized_partitions,
        gas_total=gas,
        gas_per_participant=gas / len(nodes),
    )
