"""FLCoordinator contract: retries, dissenting aggregators, fallback aggregation and expired rounds."""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from fl_chain.chain import Chain, ChainClient, Coordinator, FailureReason, RoundStatus
from fl_chain.errors import ContractRevertError
from tests.conftest import CONTRACT_RULES_BACKEND
from tests.helpers.contracts import (
    Task,
    block_timestamp,
    commit_assigned,
    commit_until_final,
    commit_updates,
    draw_assignment,
    events,
    expected_seed,
    finalize_round,
    forged_digest,
    frozen_task,
    honest_digest,
    pass_deadline,
    running_task,
    update_digest,
    update_samples,
)

pytestmark = pytest.mark.chain_backends(CONTRACT_RULES_BACKEND)

# -- too few contributors -------------------------------------------------------------------------


def _retried_task(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, members: list[LocalAccount]
) -> tuple[Task, dict]:
    """Four joined, minContributors = 3, two commit; returns the task and the receipt of the retry."""
    task = running_task(coordinator, operator, members, replication=3, quorum=2, min_contributors=3)
    commit_updates(task, 0, members[:2])
    pass_deadline(chain, client, task.round(0).update_deadline)
    return task, coordinator.advance(operator, task.task_id)


def test_round_with_too_few_contributors_fails_and_retries(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """advance after the update deadline fails a round below minContributors and starts the next."""
    # Prepare, Execute
    task, receipt = _retried_task(coordinator, chain, client, operator, accounts[1:5])

    # Assert
    now = block_timestamp(client, receipt)
    assert events(coordinator, "RoundFailed", receipt) == [
        {"taskId": task.task_id, "round": 0, "reason": FailureReason.TOO_FEW_CONTRIBUTORS}
    ]
    assert events(coordinator, "RoundStarted", receipt) == [
        {
            "taskId": task.task_id,
            "round": 1,
            "seed": expected_seed(client, coordinator, receipt, task.task_id, 1),
            "updateDeadline": now + task.config.update_duration,
        }
    ]
    assert events(coordinator, "UpdatePhaseClosed", receipt) == []
    failed = task.round(0)
    assert (failed.status, failed.failure, failed.aggregation_deadline) == (
        RoundStatus.FAILED,
        FailureReason.TOO_FEW_CONTRIBUTORS,
        0,
    )
    state = coordinator.get_task(task.task_id)[1]
    assert (state.current_round, state.finalized_rounds) == (1, 0)


def test_retried_round_accepts_update_from_previous_round_contributor(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A contributor of the failed round commits again in the retry, starting the index count anew."""
    # Prepare
    task, _ = _retried_task(coordinator, chain, client, operator, accounts[1:5])

    # Execute
    (receipt,) = commit_updates(task, 1, accounts[2:3])

    # Assert
    assert events(coordinator, "UpdateCommitted", receipt) == [
        {
            "taskId": task.task_id,
            "round": 1,
            "contributor": accounts[2].address,
            "index": 0,
            "digest": update_digest(1, 1),
            "samples": update_samples(1),
        }
    ]
    assert coordinator.get_participants(task.task_id)[1].update_round == 2
    assert (task.round(1).contributors, task.round(0).contributors) == (1, 2)


# -- dissent --------------------------------------------------------------------------------------


def test_dissenting_aggregator_is_outvoted_by_honest_quorum(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """r = 3, q = 2: one aggregator commits other digests first; the honest ones still finalize."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:5], partitions=4, replication=3, quorum=2)
    liar, *honest = task.members
    lied = task.assigned(0, liar)
    commit_assigned(task, 0, [liar], digest_of=lambda p: forged_digest(0, p))

    # Execute
    receipts = commit_until_final(task, 0, honest)

    # Assert
    finalized = [e for r in receipts for e in events(coordinator, "PartitionFinalized", r)]
    assert sorted((e["partition"], e["digest"]) for e in finalized) == [(p, honest_digest(0, p)) for p in range(4)]
    assert coordinator.get_final_digests(task.task_id, 0) == [honest_digest(0, p) for p in range(4)]
    assert task.round(0).status == RoundStatus.FINALIZED
    assert [
        (
            coordinator.get_votes(task.task_id, 0, p, honest_digest(0, p)),
            coordinator.get_votes(task.task_id, 0, p, forged_digest(0, p)),
        )
        for p in lied
    ] == [((2, 2), (1, 1))] * len(lied)


def test_single_dissenter_blocks_quorum_with_replication_two(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """r = 2, q = 2: one honest and one different digest leave the partition open."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:4], partitions=1, replication=2, quorum=2)
    honest, liar = task.aggregators(0, 0)
    coordinator.commit_aggregate(honest, task.task_id, 0, 0, honest_digest(0, 0))

    # Execute
    receipt = coordinator.commit_aggregate(liar, task.task_id, 0, 0, forged_digest(0, 0))

    # Assert
    assert events(coordinator, "PartitionFinalized", receipt) == []
    assert coordinator.get_final_digests(task.task_id, 0) == [None]
    assert [coordinator.get_votes(task.task_id, 0, 0, d) for d in (honest_digest(0, 0), forged_digest(0, 0))] == [
        (1, 1),
        (1, 1),
    ]
    assert task.round(0).status == RoundStatus.AGGREGATION


def _final_partition_task(coordinator: Coordinator, operator: LocalAccount, members: list[LocalAccount]) -> Task:
    """n = 3, P = 2, r = 3, q = 2: the first two members finalized partition 0; partition 1 is open."""
    task = frozen_task(coordinator, operator, members, partitions=2, replication=3, quorum=2)
    for member in members[:2]:
        coordinator.commit_aggregate(member, task.task_id, 0, 0, honest_digest(0, 0))
    assert coordinator.get_final_digests(task.task_id, 0) == [honest_digest(0, 0), None]
    return task


def test_commit_with_other_digest_for_final_partition_emits_aggregate_disputed(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A late different digest is recorded and disputed; the final digest stays."""
    # Prepare
    task = _final_partition_task(coordinator, operator, accounts[1:4])
    late = task.members[2]

    # Execute
    receipt = coordinator.commit_aggregate(late, task.task_id, 0, 0, forged_digest(0, 0))

    # Assert
    assert events(coordinator, "AggregateDisputed", receipt) == [
        {
            "taskId": task.task_id,
            "round": 0,
            "partition": 0,
            "aggregator": late.address,
            "digest": forged_digest(0, 0),
            "finalDigest": honest_digest(0, 0),
        }
    ]
    assert [(e["aggregator"], e["digest"]) for e in events(coordinator, "AggregateCommitted", receipt)] == [
        (late.address, forged_digest(0, 0))
    ]
    assert events(coordinator, "PartitionFinalized", receipt) == []
    assert coordinator.get_final_digests(task.task_id, 0) == [honest_digest(0, 0), None]
    assert coordinator.get_votes(task.task_id, 0, 0, forged_digest(0, 0)) == (1, 1)
    assert coordinator.get_votes(task.task_id, 0, 0, honest_digest(0, 0)) == (2, 2)


def test_commit_with_final_digest_for_final_partition_is_not_disputed(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A late matching digest is accepted without dispute and does not finalize the partition twice."""
    # Prepare
    task = _final_partition_task(coordinator, operator, accounts[1:4])

    # Execute
    receipt = coordinator.commit_aggregate(task.members[2], task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert len(events(coordinator, "AggregateCommitted", receipt)) == 1
    assert events(coordinator, "AggregateDisputed", receipt) == []
    assert events(coordinator, "PartitionFinalized", receipt) == []
    assert task.round(0).finalized_partitions == 1
    assert coordinator.get_votes(task.task_id, 0, 0, honest_digest(0, 0)) == (3, 3)


# -- fallback -------------------------------------------------------------------------------------


def test_fallback_commit_after_aggregation_deadline_finalizes_partition(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """After a split vote, an unassigned contributor's commit past the deadline gives the honest digest
    a strict majority of the round's contributors (2 of 3), which finalizes it without an assigned quorum."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:4], partitions=1, replication=2, quorum=2)
    honest, liar = task.aggregators(0, 0)
    (outsider,) = task.unassigned(0, 0)
    coordinator.commit_aggregate(honest, task.task_id, 0, 0, honest_digest(0, 0))
    coordinator.commit_aggregate(liar, task.task_id, 0, 0, forged_digest(0, 0))
    pass_deadline(chain, client, task.round(0).aggregation_deadline)

    # Execute
    receipt = coordinator.commit_aggregate(outsider, task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert events(coordinator, "AggregateCommitted", receipt) == [
        {
            "taskId": task.task_id,
            "round": 0,
            "partition": 0,
            "aggregator": outsider.address,
            "digest": honest_digest(0, 0),
            "isFallback": True,
        }
    ]
    assert events(coordinator, "PartitionFinalized", receipt) == [
        {"taskId": task.task_id, "round": 0, "partition": 0, "digest": honest_digest(0, 0)}
    ]
    assert events(coordinator, "RoundFinalized", receipt) == [{"taskId": task.task_id, "round": 0}]
    assert coordinator.get_final_digests(task.task_id, 0) == [honest_digest(0, 0)]
    assert coordinator.get_votes(task.task_id, 0, 0, honest_digest(0, 0)) == (1, 2)


def test_fallback_digest_needs_a_strict_majority_of_the_rounds_contributors(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """n = 4, split assigned vote: two votes (half of the contributors) do not finalize, three do."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:5], partitions=1, replication=2, quorum=2)
    honest, liar = task.aggregators(0, 0)
    first, second = task.unassigned(0, 0)
    coordinator.commit_aggregate(honest, task.task_id, 0, 0, honest_digest(0, 0))
    coordinator.commit_aggregate(liar, task.task_id, 0, 0, forged_digest(0, 0))
    pass_deadline(chain, client, task.round(0).aggregation_deadline)

    # Execute
    half = coordinator.commit_aggregate(first, task.task_id, 0, 0, honest_digest(0, 0))
    majority = coordinator.commit_aggregate(second, task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert events(coordinator, "PartitionFinalized", half) == []
    assert events(coordinator, "PartitionFinalized", majority) == [
        {"taskId": task.task_id, "round": 0, "partition": 0, "digest": honest_digest(0, 0)}
    ]
    assert coordinator.get_votes(task.task_id, 0, 0, honest_digest(0, 0)) == (1, 3)
    assert coordinator.get_votes(task.task_id, 0, 0, forged_digest(0, 0)) == (1, 1)
    assert task.round(0).status == RoundStatus.FINALIZED


def test_assigned_quorum_finalizes_in_the_fallback_phase_without_a_majority(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """n = 5, r = q = 2: the two assigned aggregators committing after the deadline still finalize
    (a quorum of assigned votes counts until the fallback deadline), although 2 of 5 is no majority."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:6], partitions=1, replication=2, quorum=2)
    first, second = task.aggregators(0, 0)
    pass_deadline(chain, client, task.round(0).aggregation_deadline)
    coordinator.commit_aggregate(first, task.task_id, 0, 0, honest_digest(0, 0))

    # Execute
    receipt = coordinator.commit_aggregate(second, task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert [e["isFallback"] for e in events(coordinator, "AggregateCommitted", receipt)] == [False]
    assert events(coordinator, "RoundFinalized", receipt) == [{"taskId": task.task_id, "round": 0}]
    assert coordinator.get_votes(task.task_id, 0, 0, honest_digest(0, 0)) == (2, 2)


def test_fallback_votes_of_a_minority_do_not_finalize(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """n = 5, r = q = 2: one assigned and one fallback vote are neither a quorum of assigned
    aggregators nor a majority of the contributors."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:6], partitions=1, replication=2, quorum=2)
    assigned = task.aggregators(0, 0)[0]
    outsider = task.unassigned(0, 0)[0]
    pass_deadline(chain, client, task.round(0).aggregation_deadline)
    coordinator.commit_aggregate(assigned, task.task_id, 0, 0, forged_digest(0, 0))

    # Execute
    receipt = coordinator.commit_aggregate(outsider, task.task_id, 0, 0, forged_digest(0, 0))

    # Assert
    assert events(coordinator, "PartitionFinalized", receipt) == []
    assert coordinator.get_votes(task.task_id, 0, 0, forged_digest(0, 0)) == (1, 2)
    assert coordinator.get_final_digests(task.task_id, 0) == [None]


def test_fallback_commit_by_joined_non_contributor_reverts_with_not_a_contributor(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Members who did not contribute have no vote, not even in the fallback phase: a joined,
    admitted participant without an update of the round is refused and no vote count changes."""
    # Prepare: three joined, two contributed; one of the two assigned aggregators committed.
    task = running_task(coordinator, operator, accounts[1:4], partitions=1)
    commit_updates(task, 0, accounts[1:3])
    pass_deadline(chain, client, task.round(0).update_deadline)
    coordinator.advance(operator, task.task_id)
    draw_assignment(task, 0)
    coordinator.commit_aggregate(accounts[1], task.task_id, 0, 0, honest_digest(0, 0))
    pass_deadline(chain, client, task.round(0).aggregation_deadline)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(accounts[3], task.task_id, 0, 0, honest_digest(0, 0))

    # Assert: its vote would have been the second of two contributors, a majority.
    assert exc.value.name == "FLCoordinatorNotAContributor"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0, "account": accounts[3].address}
    assert coordinator.get_votes(task.task_id, 0, 0, honest_digest(0, 0)) == (1, 1)
    assert coordinator.get_final_digests(task.task_id, 0) == [None]


def test_assigned_commit_after_aggregation_deadline_is_not_fallback(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An assigned aggregator stays assigned in the fallback phase."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:4], partitions=1)
    aggregator = task.aggregators(0, 0)[0]
    pass_deadline(chain, client, task.round(0).aggregation_deadline)

    # Execute
    receipt = coordinator.commit_aggregate(aggregator, task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert [e["isFallback"] for e in events(coordinator, "AggregateCommitted", receipt)] == [False]


def test_fallback_commit_twice_reverts_with_aggregate_already_committed(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A fallback aggregator votes once per partition."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:4], partitions=1)
    (outsider,) = task.unassigned(0, 0)
    pass_deadline(chain, client, task.round(0).aggregation_deadline)
    coordinator.commit_aggregate(outsider, task.task_id, 0, 0, honest_digest(0, 0))

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(outsider, task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert exc.value.name == "FLCoordinatorAggregateAlreadyCommitted"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0, "partition": 0, "account": outsider.address}
    assert coordinator.get_votes(task.task_id, 0, 0, honest_digest(0, 0)) == (0, 1)


def test_commit_aggregate_by_revoked_aggregator_reverts_with_not_admitted(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A revoked contributor loses its aggregation slot in tasks without open admission."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:3])
    aggregator = task.aggregators(0, 0)[0]
    coordinator.revoke(operator, aggregator.address)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(aggregator, task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert exc.value.name == "FLCoordinatorNotAdmitted"
    assert exc.value.arguments == {"taskId": task.task_id, "account": aggregator.address}


# -- expiry ---------------------------------------------------------------------------------------


def test_advance_before_fallback_deadline_reverts_with_nothing_to_advance(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Past the aggregation deadline the round is still alive: fallback commits may complete it."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:3])
    pass_deadline(chain, client, task.round(0).aggregation_deadline)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.advance(operator, task.task_id)

    # Assert
    assert exc.value.name == "FLCoordinatorNothingToAdvance"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0}


def test_commit_aggregate_after_fallback_deadline_reverts_with_round_expired(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """After the fallback deadline even assigned aggregators are refused."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:3])
    pass_deadline(chain, client, task.round(0).fallback_deadline)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(accounts[1], task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert exc.value.name == "FLCoordinatorRoundExpired"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0}


def test_advance_after_fallback_deadline_fails_round_and_starts_next(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An unfinished round fails with AggregationTimedOut and the next round starts."""
    # Prepare: one partition final, the others not.
    task = frozen_task(coordinator, operator, accounts[1:3])
    for member in task.members:
        coordinator.commit_aggregate(member, task.task_id, 0, 0, honest_digest(0, 0))
    pass_deadline(chain, client, task.round(0).fallback_deadline)

    # Execute
    receipt = coordinator.advance(accounts[7], task.task_id)

    # Assert
    now = block_timestamp(client, receipt)
    assert events(coordinator, "RoundFailed", receipt) == [
        {"taskId": task.task_id, "round": 0, "reason": FailureReason.AGGREGATION_TIMED_OUT}
    ]
    assert [(e["round"], e["updateDeadline"]) for e in events(coordinator, "RoundStarted", receipt)] == [
        (1, now + task.config.update_duration)
    ]
    failed = task.round(0)
    assert (failed.status, failed.failure, failed.finalized_partitions) == (
        RoundStatus.FAILED,
        FailureReason.AGGREGATION_TIMED_OUT,
        1,
    )
    state = coordinator.get_task(task.task_id)[1]
    assert (state.current_round, state.finalized_rounds) == (1, 0)
    assert coordinator.released_rounds(task.task_id) == [0]  # it published a final partition: DP counts it


# -- disputes -------------------------------------------------------------------------------------


def test_majority_dispute_undoes_the_only_final_round_and_fails_the_current_one(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """n = 3: one dispute is recorded (RoundDisputeFiled, getRound.disputes); the second is a strict
    majority: round 0 fails as Disputed, round 1 (built on it) fails too, round 2 starts, and the task
    has no final round again; round 0 can no longer be disputed."""
    # Prepare
    members = accounts[1:4]
    task = running_task(coordinator, operator, members, partitions=1, rounds=3)
    finalize_round(task, 0)
    first = coordinator.dispute_round(members[0], task.task_id, 0)

    # Execute
    second = coordinator.dispute_round(members[1], task.task_id, 0)

    # Assert
    assert events(coordinator, "RoundDisputeFiled", first) == [
        {"taskId": task.task_id, "round": 0, "account": members[0].address, "disputes": 1}
    ]
    assert events(coordinator, "RoundFailed", first) == []
    assert events(coordinator, "RoundFailed", second) == [
        {"taskId": task.task_id, "round": 0, "reason": FailureReason.DISPUTED},
        {"taskId": task.task_id, "round": 1, "reason": FailureReason.DISPUTED},
    ]
    assert [e["round"] for e in events(coordinator, "RoundStarted", second)] == [2]
    undone = task.round(0)
    assert (undone.status, undone.failure, undone.disputes) == (RoundStatus.FAILED, FailureReason.DISPUTED, 2)
    assert (task.round(1).status, task.round(2).status) == (RoundStatus.FAILED, RoundStatus.UPDATE)
    state = coordinator.get_task(task.task_id)[1]
    assert (state.finalized_rounds, state.latest_finalized_round, state.current_round) == (0, None, 2)
    with pytest.raises(ContractRevertError) as exc:
        coordinator.dispute_round(members[2], task.task_id, 0)
    assert exc.value.name == "FLCoordinatorNotDisputable"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0}


def test_dispute_by_an_excluded_contributor_reverts_with_not_a_contributor(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An update excluded as unavailable takes its contributor's say in the round's model with it."""
    # Prepare: n = 3, two reports exclude members[0]; the other two finalize by a fallback majority.
    members = accounts[1:4]
    task = frozen_task(coordinator, operator, members, partitions=1, replication=2, quorum=2)
    pass_deadline(chain, client, task.round(0).aggregation_deadline)
    for reporter in members[1:]:
        coordinator.report_unavailable(reporter, task.task_id, 0, members[0].address)
    for member in members[1:]:
        coordinator.commit_aggregate(member, task.task_id, 0, 0, honest_digest(0, 0))
    assert (task.round(0).status, coordinator.get_excluded(task.task_id, 0)) == (
        RoundStatus.FINALIZED,
        [members[0].address],
    )

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.dispute_round(members[0], task.task_id, 0)

    # Assert
    assert exc.value.name == "FLCoordinatorNotAContributor"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0, "account": members[0].address}
    assert task.round(0).disputes == 0
