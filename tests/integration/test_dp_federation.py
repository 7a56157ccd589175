"""Differential privacy end to end: the real contract and runtime on the embedded chain, and `flchain simulate`.

Every aggregator adds the same noise (from the round's on-chain seed), so r = 2 aggregators agree on
every partition and the audit recomputes the same bytes; an aggregator that leaves the noise out is
outvoted; a budget caps the task's rounds and the run says it stopped there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fl_chain.aggregation import ContributionRule, FedAvg
from fl_chain.aggregation.base import Contribution
from fl_chain.chain.coordinator import Coordinator, RoundStatus, TaskStatus
from fl_chain.exchange.audit import audit_round
from fl_chain.exchange.transfer import fetch_manifest
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.node.runtime import Node
from fl_chain.privacy.accountant import affordable_rounds, epsilon
from fl_chain.protocol.task import TaskSpec
from tests.conftest import digest as stand_in_digest
from tests.helpers.cli_runner import InProcessCli

NODES = 4
ROUNDS = 2
DP = {"dp_noise_multiplier": 0.8, "dp_clip_norm": 2.0, "dp_delta": 1e-5}


def dp_spec(**privacy: float) -> TaskSpec:
    return TaskSpec.from_dict(
        {
            "protocol": {
                "rounds": ROUNDS,
                "partitions": 3,
                "replication": 2,
                "quorum": 2,
                "min_contributors": 3,
                "update_duration": 3600,
                "aggregation_duration": 3600,
            },
            "model": {"name": "logreg", "seed": 3},
            "dataset": {"name": "digits", "split": "iid"},
            "training": {"epochs": 1, "batch_size": 32, "lr": 0.1},
            "strategy": {"name": "fedavg"},
            "privacy": {**DP, **privacy},
        }
    )


class NoiselessRule(ContributionRule):
    """An aggregator's rule that clips and averages like the task's but adds no noise."""

    def _noisy_mean(
        self, base: np.ndarray, counted: list[Contribution], noise_key: bytes | None, offset: int
    ) -> np.ndarray:
        return super()._noisy_mean(base, counted, None, offset)


def audit_all(nodes: list[Node], coordinator: Coordinator, task_id: int, rule: ContributionRule) -> list[bool]:
    initial = nodes[0].trainer.initial_vector()
    return [
        audit_round(nodes[0].storage, coordinator, task_id, r, rule=rule, initial=initial, timeout=5).ok
        for r in range(ROUNDS)
    ]


def test_dp_rounds_every_aggregator_digest_agrees_and_the_audit_recomputes_the_noise(tmp_path: Path) -> None:
    # Prepare
    spec = dp_spec()
    chain, coordinator, task_id, nodes = build_federation(spec, nodes=NODES, state_root=tmp_path)

    # Execute
    InProcessFederation(chain, coordinator, task_id, nodes).run()

    # Assert: finalized, r = 2 identical commits per partition, nobody dissented, the audit agrees.
    assert coordinator.get_task(task_id)[1].status == TaskStatus.COMPLETED
    for round_ in range(ROUNDS):
        assert coordinator.get_round(task_id, round_).status == RoundStatus.FINALIZED
        final = coordinator.get_final_digests(task_id, round_)
        commits = coordinator.find_aggregate_commits(task_id, round_)
        for partition, digest in enumerate(final):
            agreeing = [c for c in commits if c.partition == partition and c.digest == digest]
            assert len(agreeing) >= 2
        assert coordinator.find_dissenting_aggregators(task_id, round_) == []
    assert audit_all(nodes, coordinator, task_id, spec.contribution_rule()) == [True] * ROUNDS
    # Noise really went in: plain FedAvg of the same updates is another model.
    assert audit_all(nodes, coordinator, task_id, ContributionRule(strategy=FedAvg())) == [False] * ROUNDS
    assert nodes[0].spec.epsilon_after(ROUNDS) == epsilon(0.8, 1e-5, ROUNDS)
    # No site publishes its test metrics under DP (they depend on private data; no accountant covers them).
    for commit in coordinator.find_update_commits(task_id, 1):
        manifest = fetch_manifest(
            nodes[0].storage,
            commit.digest,
            kind="update",
            task_id=task_id,
            round_=1,
            partitions=spec.protocol["partitions"],
            contributor=commit.contributor,
        )
        assert manifest.evaluation is None


def test_attack_aggregator_that_omits_the_noise_is_outvoted_and_recorded_as_dissenting(tmp_path: Path) -> None:
    # Prepare: node 2 aggregates without noise.
    spec = dp_spec()
    chain, coordinator, task_id, nodes = build_federation(spec, nodes=NODES, state_root=tmp_path)
    honest_rule = spec.contribution_rule()
    lazy = nodes[2]
    lazy.rule = NoiselessRule(strategy=FedAvg(), max_samples=honest_rule.max_samples, dp=honest_rule.dp)

    # Execute
    InProcessFederation(chain, coordinator, task_id, nodes).run()

    # Assert: every round finalized with the honest (noisy) digest; the lazy node's commits dissent.
    assert coordinator.get_task(task_id)[1].status == TaskStatus.COMPLETED
    dissenters = {d.aggregator for r in range(ROUNDS) for d in coordinator.find_dissenting_aggregators(task_id, r)}
    assert dissenters == {lazy.address}
    assert audit_all(nodes, coordinator, task_id, honest_rule) == [True] * ROUNDS


def test_simulate_with_a_budget_stops_at_the_last_affordable_round(tmp_path: Path, run_cli: InProcessCli) -> None:
    # Prepare: z = 1, delta = 1e-5, budget 10 affords 3 of the 6 rounds asked for.
    affordable = affordable_rounds(1.0, 1e-5, 10.0, limit=6)
    assert affordable == 3
    out = tmp_path / "run"

    # Execute
    result = run_cli(
        "simulate", "--nodes", "4", "--rounds", "6", "--chain", "embedded", "--model", "logreg",
        "--dp-noise-multiplier", "1", "--dp-clip-norm", "1", "--dp-epsilon-budget", "10",
        "--out", str(out), cwd=tmp_path,
    )  # fmt: skip

    # Assert
    assert result.returncode == 0, result.stderr
    assert "rounds capped at 3 (of 6) by the privacy budget eps=10 at delta=1e-05" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["rounds"]] == ["finalized"] * 3
    assert [r["epsilon"] for r in summary["rounds"]] == [epsilon(1.0, 1e-5, k) for k in (1, 2, 3)]
    privacy = summary["privacy"]
    assert privacy["epsilon"] == epsilon(1.0, 1e-5, 3) <= 10
    assert privacy["stopped"] == f"privacy budget reached (eps={epsilon(1.0, 1e-5, 3):.4g})"
    assert "stopped: privacy budget reached" in result.stdout
    assert summary["task"]["privacy"]["dp_epsilon_budget"] == 10.0


def test_attack_a_round_that_failed_after_releasing_a_partition_spends_budget_and_the_nodes_stop(
    tmp_path: Path,
) -> None:
    """A round whose aggregation timed out after one partition finalized published a noisy partition:
    the accountant counts it, so with a budget of one round the nodes contribute no more (a coalition
    cannot buy extra releases by making rounds fail after some partitions finalized)."""
    # Prepare: a budget that affords one round; round 0 played by the members' own accounts with
    # stand-in digests: partition 0 finalizes, then the round times out.
    budget = epsilon(DP["dp_noise_multiplier"], DP["dp_delta"], 1) * 1.01
    spec = dp_spec(dp_epsilon_budget=budget)
    assert spec.affordable_rounds() == 1
    chain, coordinator, task_id, nodes = build_federation(spec, nodes=NODES, state_root=tmp_path)
    accounts = [node.account for node in nodes]
    for i, account in enumerate(accounts):
        coordinator.commit_update(account, task_id, 0, stand_in_digest(f"update/{i}"), 10)
    coordinator.draw_assignment(accounts[0], task_id, 0)
    for account in accounts:
        if coordinator.is_assigned(task_id, 0, 0, account.address):
            coordinator.commit_aggregate(account, task_id, 0, 0, stand_in_digest("partition/0"))
    chain.increase_time(coordinator.get_round(task_id, 0).fallback_deadline - coordinator.client.block_timestamp() + 2)
    coordinator.advance(accounts[0], task_id)
    failed = coordinator.get_round(task_id, 0)
    assert (failed.status, failed.finalized_partitions) == (RoundStatus.FAILED, 1)
    assert coordinator.released_rounds(task_id) == [0]

    # Execute
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()

    # Assert: every node stopped before round 1's update; the task is left to the operator.
    assert status == TaskStatus.RUNNING
    assert coordinator.get_task(task_id)[1].current_round == 1
    assert coordinator.find_update_commits(task_id, 1) == []
