"""The audit recomputes any task's rounds with the rule its nodes ran: strategy, norm bound, sample cap, exclusions.

Each test runs a small in-process federation (embedded chain, memory storage, the real runtime) to
completion, then audits every finalized round with :func:`fl_chain.exchange.audit.audit_round` and
the task's own :meth:`~fl_chain.protocol.task.TaskSpec.contribution_rule`; and checks that an audit
with another rule (plain FedAvg, no bound, a tighter cap) finds a different model, so the audit
really applies the task's rule and would catch an aggregate made with the wrong one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fl_chain.aggregation import ContributionRule, FedAvg
from fl_chain.chain.coordinator import Coordinator, RoundStatus, TaskStatus
from fl_chain.errors import ContractRevertError
from fl_chain.exchange.audit import RoundAudit, audit_round
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.node.runtime import Node
from fl_chain.protocol.task import TaskSpec
from tests.helpers.adversaries import ForgingContributor, InflatingTrainer, TamperingTrainer, rebuild, scaled

NODES = 4
ROUNDS = 2
#: Index of the adversarial node (not the first, whose trainer made the initial model).
ADVERSARY = 2


def spec(strategy: dict[str, object], **protocol: object) -> TaskSpec:
    return TaskSpec.from_dict(
        {
            "protocol": {
                "rounds": ROUNDS,
                "partitions": 4,
                "replication": 3,
                "quorum": 2,
                "min_contributors": 2,
                "update_duration": 3600,
                "aggregation_duration": 3600,
                **protocol,
            },
            "model": {"name": "logreg", "seed": 3},
            "dataset": {"name": "digits", "split": "dirichlet", "alpha": 0.5},
            "training": {"epochs": 1, "batch_size": 32, "lr": 0.1},
            "strategy": strategy,
        }
    )


def audit_every_round(
    nodes: list[Node], coordinator: Coordinator, task_id: int, rule: ContributionRule
) -> dict[int, RoundAudit]:
    """``audit_round`` of every round of the completed task, with ``rule`` and the task's initial model."""
    assert coordinator.get_task(task_id)[1].status == TaskStatus.COMPLETED
    initial = nodes[0].trainer.initial_vector()
    audits = {}
    for round_ in range(ROUNDS):
        assert coordinator.get_round(task_id, round_).status == RoundStatus.FINALIZED
        audits[round_] = audit_round(
            nodes[0].storage, coordinator, task_id, round_, rule=rule, initial=initial, timeout=5
        )
    return audits


def test_audit_of_a_median_task_recomputes_the_median_not_fedavg(tmp_path: Path) -> None:
    # Prepare
    task = spec({"name": "median"})
    chain, coordinator, task_id, nodes = build_federation(task, nodes=NODES, state_root=tmp_path)

    # Execute
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()
    audits = audit_every_round(nodes, coordinator, task_id, task.contribution_rule())
    as_fedavg = audit_every_round(
        nodes, coordinator, task_id, ContributionRule(strategy=FedAvg(), norm_bound=task.norm_bound)
    )

    # Assert
    assert status == TaskStatus.COMPLETED
    assert all(audit.ok for audit in audits.values())
    assert not any(audit.ok for audit in as_fedavg.values()), "median and weighted mean coincide: no test"


def test_audit_of_a_norm_bounded_task_leaves_out_the_poisoned_update_as_the_nodes_did(tmp_path: Path) -> None:
    # Prepare: one contributor publishes its trained model times 100, far beyond the bound.
    task = spec({"name": "trimmed_mean", "trim_fraction": 0.25, "norm_bound": 1.0})
    chain, coordinator, task_id, nodes = build_federation(task, nodes=NODES, state_root=tmp_path)
    nodes[ADVERSARY].trainer = TamperingTrainer(nodes[ADVERSARY].trainer, scaled(100))

    # Execute
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()
    audits = audit_every_round(nodes, coordinator, task_id, task.contribution_rule())
    unbounded = audit_every_round(
        nodes, coordinator, task_id, ContributionRule(strategy=task.contribution_rule().strategy)
    )

    # Assert
    assert status == TaskStatus.COMPLETED
    assert all(audit.ok for audit in audits.values())
    assert not any(audit.ok for audit in unbounded.values()), "the poisoned update was within reach of the bound"
    # Left out by the rule, not excluded by the chain.
    assert all(coordinator.get_excluded(task_id, round_) == [] for round_ in range(ROUNDS))


def test_audit_of_a_sample_capped_task_applies_the_cap(tmp_path: Path) -> None:
    # Prepare: a contributor claiming 2**40 samples is refused on chain; the others finish the task.
    cap = 100_000
    task = spec({"name": "fedavg"}, max_samples=cap)
    chain, coordinator, task_id, nodes = build_federation(task, nodes=NODES, state_root=tmp_path)
    nodes[ADVERSARY].trainer = InflatingTrainer(nodes[ADVERSARY].trainer, 2**40)
    honest = [node for i, node in enumerate(nodes) if i != ADVERSARY]
    with pytest.raises(ContractRevertError, match="FLCoordinatorTooManySamples"):
        InProcessFederation(chain, coordinator, task_id, nodes).run()

    # Execute
    status = InProcessFederation(chain, coordinator, task_id, honest).run()
    audits = audit_every_round(honest, coordinator, task_id, task.contribution_rule())
    largest = max(c.samples for c in coordinator.find_update_commits(task_id, 0))
    tighter = audit_every_round(
        honest,
        coordinator,
        task_id,
        ContributionRule(strategy=FedAvg(), norm_bound=task.norm_bound, max_samples=largest - 1),
    )

    # Assert
    assert status == TaskStatus.COMPLETED
    assert all(audit.ok for audit in audits.values())
    assert not tighter[0].ok  # the same rounds under a cap that leaves the largest contributor out


def test_audit_of_a_median_task_with_an_update_excluded_on_chain_as_unavailable(tmp_path: Path) -> None:
    # Prepare: one contributor commits a digest whose content nobody has; the others exclude it on chain.
    task = spec({"name": "median"})
    chain, coordinator, task_id, nodes = build_federation(task, nodes=NODES, state_root=tmp_path)
    nodes[ADVERSARY] = rebuild(nodes[ADVERSARY], ForgingContributor, forgery="unavailable")

    # Execute
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()
    audits = audit_every_round(nodes, coordinator, task_id, task.contribution_rule())
    as_fedavg = audit_every_round(
        nodes, coordinator, task_id, ContributionRule(strategy=FedAvg(), norm_bound=task.norm_bound)
    )

    # Assert
    assert status == TaskStatus.COMPLETED
    assert all(coordinator.get_excluded(task_id, round_) == [nodes[ADVERSARY].address] for round_ in range(ROUNDS))
    assert all(audit.ok and audit.excluded == [nodes[ADVERSARY].address] for audit in audits.values())
    assert not any(audit.ok for audit in as_fedavg.values())
    assert np.isfinite(audits[ROUNDS - 1].actual).all()
