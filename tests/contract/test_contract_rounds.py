"""FLCoordinator contract: update commits, the frozen contributor set, assignment and finalization."""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from fl_chain.chain import Chain, ChainClient, Coordinator, RoundStatus, TaskStatus
from fl_chain.errors import ContractRevertError
from fl_chain.protocol.assignment import aggregator_slot, aggregators_of, assigned_partitions, assignment_position
from tests.conftest import CONTRACT_RULES_BACKEND, digest, multiaddr, task_config
from tests.helpers.contracts import (
    ZERO_DIGEST,
    block_timestamp,
    commit_assigned,
    commit_updates,
    contract_position,
    draw_assignment,
    events,
    expected_key,
    finalize_round,
    frozen_task,
    honest_digest,
    pass_deadline,
    running_task,
    update_digest,
    update_samples,
)

# -- update phase ---------------------------------------------------------------------------------


def test_commit_update_emits_update_committed_with_index_and_samples(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Contributors get consecutive indices; samples are recorded and summed."""
    # Prepare
    members = accounts[1:4]
    task = running_task(coordinator, operator, members)

    # Execute: the third member commits first, then the first.
    receipts = commit_updates(task, 0, [members[2], members[0]])

    # Assert
    assert [events(coordinator, "UpdateCommitted", r) for r in receipts] == [
        [
            {
                "taskId": task.task_id,
                "round": 0,
                "contributor": members[2].address,
                "index": 0,
                "digest": update_digest(0, 2),
                "samples": update_samples(2),
            }
        ],
        [
            {
                "taskId": task.task_id,
                "round": 0,
                "contributor": members[0].address,
                "index": 1,
                "digest": update_digest(0, 0),
                "samples": update_samples(0),
            }
        ],
    ]
    participants = coordinator.get_participants(task.task_id)
    assert [(p.update_round, p.index, p.samples) for p in participants] == [
        (1, 1, update_samples(0)),
        (0, 0, 0),
        (1, 0, update_samples(2)),
    ]
    info = task.round(0)
    assert (info.contributors, info.total_samples) == (2, update_samples(0) + update_samples(2))


def test_update_phase_stays_open_until_every_joined_participant_committed(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Reaching minContributors does not close the update phase early."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:4])

    # Execute
    receipts = commit_updates(task, 0, accounts[1:3])

    # Assert
    assert all(events(coordinator, "UpdatePhaseClosed", r) == [] for r in receipts)
    info = task.round(0)
    assert (info.status, info.contributors, info.aggregation_deadline) == (RoundStatus.UPDATE, 2, 0)


def test_update_phase_closes_when_every_joined_participant_committed(
    coordinator: Coordinator, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """The last joined participant's commit freezes the set and opens aggregation at once."""
    # Prepare
    members = accounts[1:4]
    task = running_task(coordinator, operator, members, aggregation_duration=444)
    commit_updates(task, 0, members[:2])

    # Execute
    (receipt,) = commit_updates(task, 0, members[2:])

    # Assert: the key is not known in the freezing block (this read runs in it), nor drawn yet.
    now = block_timestamp(client, receipt)
    assert client.block_number() == receipt["blockNumber"]
    info = task.round(0)
    assert events(coordinator, "UpdatePhaseClosed", receipt) == [
        {
            "taskId": task.task_id,
            "round": 0,
            "contributors": 3,
            "totalSamples": sum(update_samples(i) for i in range(3)),
            "aggregationDeadline": now + 444,
        }
    ]
    assert events(coordinator, "AssignmentDrawn", receipt) == []
    assert (info.status, info.assignment_key, info.aggregation_deadline, info.fallback_deadline) == (
        RoundStatus.AGGREGATION,
        None,
        now + 444,
        now + 888,
    )
    assert (info.excluded_count, info.disputes, info.finalized_partitions) == (0, 0, 0)


def test_commit_update_twice_reverts_with_update_already_committed(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A contributor commits one update per round."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3])
    commit_updates(task, 0, accounts[1:2])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_update(accounts[1], task.task_id, 0, digest("second"), 5)

    # Assert
    assert exc.value.name == "FLCoordinatorUpdateAlreadyCommitted"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0, "account": accounts[1].address}
    assert task.round(0).contributors == 1


def test_commit_update_with_zero_digest_reverts_with_zero_digest(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An update must name a manifest."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_update(accounts[1], task.task_id, 0, ZERO_DIGEST, 5)

    # Assert
    assert exc.value.name == "FLCoordinatorZeroDigest"
    assert exc.value.arguments == {}


def test_commit_update_with_zero_samples_reverts_with_zero_samples(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An update without samples would carry no FedAvg weight."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_update(accounts[1], task.task_id, 0, digest("update"), 0)

    # Assert
    assert exc.value.name == "FLCoordinatorZeroSamples"
    assert exc.value.arguments == {}


def test_commit_update_claiming_more_than_max_samples_reverts_with_too_many_samples(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """The FedAvg weight is capped on chain: maxSamples itself is accepted, one more is refused."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:4], max_samples=500)
    coordinator.commit_update(accounts[1], task.task_id, 0, digest("at the cap"), 500)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_update(accounts[2], task.task_id, 0, digest("above the cap"), 501)

    # Assert
    assert exc.value.name == "FLCoordinatorTooManySamples"
    assert exc.value.arguments == {"samples": 501, "maxSamples": 500}
    info = task.round(0)
    assert (info.contributors, info.total_samples) == (1, 500)


def test_commit_update_for_other_round_reverts_with_round_not_current(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A commit names its round, so it cannot land in a different one."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_update(accounts[1], task.task_id, 1, digest("update"), 5)

    # Assert
    assert exc.value.name == "FLCoordinatorRoundNotCurrent"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 1, "currentRound": 0}


def test_commit_update_for_task_not_joined_reverts_with_not_joined(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Joining one task gives no right to commit in another."""
    # Prepare
    running_task(coordinator, operator, accounts[1:3])
    second = running_task(coordinator, operator, accounts[3:5])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_update(accounts[1], second.task_id, 0, digest("update"), 5)

    # Assert
    assert exc.value.name == "FLCoordinatorNotJoined"
    assert exc.value.arguments == {"taskId": second.task_id, "account": accounts[1].address}
    assert second.round(0).contributors == 0


def test_commit_update_to_open_task_reverts_with_wrong_task_status(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Updates are accepted only once the task runs."""
    # Prepare
    task_id = coordinator.create_task(operator, task_config())
    coordinator.admit(operator, [accounts[1].address])
    coordinator.join(accounts[1], task_id, [multiaddr(1)])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_update(accounts[1], task_id, 0, digest("update"), 5)

    # Assert
    assert exc.value.name == "FLCoordinatorWrongTaskStatus"
    assert exc.value.arguments == {"taskId": task_id, "status": TaskStatus.OPEN}


def test_commit_update_after_update_deadline_reverts_with_update_phase_closed(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """The update deadline closes the phase even before anyone calls advance."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3])
    pass_deadline(chain, client, task.round(0).update_deadline)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        commit_updates(task, 0, accounts[1:2])

    # Assert
    assert exc.value.name == "FLCoordinatorUpdatePhaseClosed"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0}


def test_commit_update_after_contributor_set_froze_reverts_with_update_phase_closed(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A participant joining after the set froze waits for the next round."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:3])
    late = accounts[3]
    coordinator.admit(operator, [late.address])
    coordinator.join(late, task.task_id, [multiaddr(3)])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_update(late, task.task_id, 0, digest("late"), 5)

    # Assert
    assert exc.value.name == "FLCoordinatorUpdatePhaseClosed"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0}


def test_advance_before_update_deadline_reverts_with_nothing_to_advance(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """advance has nothing to do while the update phase runs."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:4])
    commit_updates(task, 0, accounts[1:3])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.advance(accounts[5], task.task_id)

    # Assert
    assert exc.value.name == "FLCoordinatorNothingToAdvance"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0}


def test_advance_after_update_deadline_freezes_contributors(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """With enough contributors, anyone's advance after the deadline opens aggregation."""
    # Prepare: three joined, two (= minContributors) committed.
    task = running_task(coordinator, operator, accounts[1:4])
    commit_updates(task, 0, accounts[1:3])
    pass_deadline(chain, client, task.round(0).update_deadline)

    # Execute
    receipt = coordinator.advance(accounts[5], task.task_id)

    # Assert
    (closed,) = events(coordinator, "UpdatePhaseClosed", receipt)
    assert (closed["contributors"], closed["totalSamples"]) == (2, update_samples(0) + update_samples(1))
    assert closed["aggregationDeadline"] == block_timestamp(client, receipt) + task.config.aggregation_duration
    assert events(coordinator, "RoundFailed", receipt) == []
    assert task.round(0).status == RoundStatus.AGGREGATION


# -- assignment -----------------------------------------------------------------------------------


def test_draw_assignment_stores_the_key_of_the_freezing_block_once(
    coordinator: Coordinator, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """The key is keccak(seed, hash of the freezing block); views answer from the next block on,
    drawAssignment stores it and says so once; a second draw changes and emits nothing."""
    # Prepare: the last commit freezes the set; nothing is assigned while its block is the latest.
    members = accounts[1:5]
    task = running_task(coordinator, operator, members)
    *_, freeze = commit_updates(task, 0, members)
    assert [task.assigned(0, m) for m in members] == [[]] * 4
    assert not any(coordinator.is_assigned(task.task_id, 0, p, m.address) for m in members for p in range(4))
    key = expected_key(client, freeze, task.round(0).seed)

    # Execute: anyone may draw (here an account that is not even admitted).
    first = coordinator.draw_assignment(accounts[9], task.task_id, 0)
    second = coordinator.draw_assignment(accounts[8], task.task_id, 0)

    # Assert
    assert events(coordinator, "AssignmentDrawn", first) == [{"taskId": task.task_id, "round": 0, "key": key}]
    assert events(coordinator, "AssignmentDrawn", second) == []
    assert task.round(0).assignment_key == key
    assert sorted(p for m in members for p in task.assigned(0, m)) == sorted([0, 1, 2, 3] * 2)


def test_draw_assignment_during_update_phase_reverts_with_aggregation_not_open(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """There is nothing to draw before the contributor set froze."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:4])
    commit_updates(task, 0, accounts[1:3])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.draw_assignment(accounts[1], task.task_id, 0)

    # Assert
    assert exc.value.name == "FLCoordinatorAggregationNotOpen"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0}
    assert task.round(0).assignment_key is None


def test_commit_aggregate_in_the_freezing_block_reverts_with_assignment_not_drawn(
    coordinator: Coordinator, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """No transaction of the freezing block can know the key, so none can commit an aggregate."""
    # Prepare: the latest block is the freezing one, so a call runs in its context.
    members = accounts[1:4]
    task = running_task(coordinator, operator, members, partitions=1, replication=3, quorum=2)
    *_, freeze = commit_updates(task, 0, members)
    assert client.block_number() == freeze["blockNumber"]
    commit = coordinator.contract.functions.commitAggregate(task.task_id, 0, 0, honest_digest(0, 0))

    # Execute: every member is assigned (r = n), so only the missing key can refuse it.
    with pytest.raises(ContractRevertError) as exc:
        client.call(commit, decoder=coordinator.decoder, sender=members[0].address)

    # Assert
    assert exc.value.name == "FLCoordinatorAssignmentNotDrawn"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0}


def test_first_aggregate_commit_draws_the_assignment(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Nobody drew the key: once a later block exists views read it lazily, and the first commit
    stores it (AssignmentDrawn in its receipt); the aggregator the Python mirror computes from the
    documented key is the assigned one."""
    # Prepare: an empty block after the freezing one. (Without it, anvil estimates the commit's gas
    # in the freezing block's context, where it reverts FLCoordinatorAssignmentNotDrawn.)
    members = accounts[1:6]
    task = running_task(coordinator, operator, members, partitions=5, replication=2, quorum=2)
    *_, freeze = commit_updates(task, 0, members)
    key = expected_key(client, freeze, task.round(0).seed)
    chain.increase_time(1)
    assert task.round(0).assignment_key == key
    assert coordinator.find_events("AssignmentDrawn") == []
    index = aggregators_of(3, contributors=5, key=key, replication=2)[0]
    aggregator = members[index]  # commit order is join order here

    # Execute
    receipt = coordinator.commit_aggregate(aggregator, task.task_id, 0, 3, honest_digest(0, 3))

    # Assert
    assert events(coordinator, "AssignmentDrawn", receipt) == [{"taskId": task.task_id, "round": 0, "key": key}]
    assert [(e["aggregator"], e["isFallback"]) for e in events(coordinator, "AggregateCommitted", receipt)] == [
        (aggregator.address, False)
    ]
    assert task.round(0).assignment_key == key
    assert coordinator.get_votes(task.task_id, 0, 3, honest_digest(0, 3)) == (1, 1)


@pytest.mark.chain_backends(CONTRACT_RULES_BACKEND)
@pytest.mark.parametrize(
    ("contributors", "partitions", "replication", "quorum"),
    [
        pytest.param(4, 4, 2, 2, id="n4-P4-r2"),
        pytest.param(5, 3, 3, 2, id="n5-P3-r3"),
        pytest.param(3, 5, 4, 3, id="n3-P5-r4-above-n"),
        pytest.param(6, 7, 1, 1, id="n6-P7-r1"),
        pytest.param(11, 4, 3, 2, id="n11-P4-r3"),
    ],
)
def test_python_assignment_mirror_matches_contract_for_every_contributor(
    coordinator: Coordinator,
    operator: LocalAccount,
    accounts: list[LocalAccount],
    contributors: int,
    partitions: int,
    replication: int,
    quorum: int,
):
    """fl_chain.protocol.assignment gives every contributor the contract's ring position (assignmentPosition),
    partitions (getAssignedPartitions) and slots (isAssigned) under the round's drawn key."""
    # Prepare: contributors commit in reverse join order, so commit index and join order differ.
    task = running_task(
        coordinator,
        operator,
        accounts[1 : 1 + contributors],
        partitions=partitions,
        replication=replication,
        quorum=quorum,
        min_contributors=quorum,
    )
    commit_updates(task, 0, task.members[::-1])
    draw_assignment(task, 0)
    key = task.round(0).assignment_key
    assert key is not None
    index = {p.account: p.index for p in coordinator.get_participants(task.task_id)}
    by_index = sorted(task.members, key=lambda m: index[m.address])
    assert [index[m.address] for m in by_index] == list(range(contributors))

    # Execute
    on_chain_positions = [contract_position(coordinator, key, i, contributors) for i in range(contributors)]
    on_chain = [task.assigned(0, m) for m in by_index]
    on_chain_slots = [
        [coordinator.is_assigned(task.task_id, 0, p, m.address) for p in range(partitions)] for m in by_index
    ]
    on_chain_aggregators = [sorted(index[m.address] for m in task.aggregators(0, p)) for p in range(partitions)]

    # Assert
    assert on_chain_positions == [assignment_position(key, i, contributors) for i in range(contributors)]
    assert sorted(on_chain_positions) == list(range(contributors))
    assert on_chain == [
        assigned_partitions(i, contributors=contributors, key=key, partitions=partitions, replication=replication)
        for i in range(contributors)
    ]
    assert on_chain_slots == [
        [
            aggregator_slot(i, p, contributors=contributors, key=key, replication=replication) is not None
            for p in range(partitions)
        ]
        for i in range(contributors)
    ]
    assert on_chain_aggregators == [
        sorted(aggregators_of(p, contributors=contributors, key=key, replication=replication))
        for p in range(partitions)
    ]
    assert all(len(a) == min(replication, contributors) for a in on_chain_aggregators)


def test_assigned_partitions_are_empty_before_contributor_set_freezes(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """No one is assigned while the update phase runs."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:4])
    commit_updates(task, 0, accounts[1:3])

    # Execute
    assigned = [task.assigned(0, m) for m in task.members]

    # Assert
    assert assigned == [[], [], []]
    assert not coordinator.is_assigned(task.task_id, 0, 0, accounts[1].address)


def test_participant_without_update_is_not_assigned(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Only contributors of the round aggregate; a silent participant is assigned nothing."""
    # Prepare: r = 3 covers both contributors, so a wrong inclusion would show.
    task = running_task(coordinator, operator, accounts[1:4], partitions=2, replication=3, quorum=2)
    commit_updates(task, 0, accounts[1:3])
    pass_deadline(chain, client, task.round(0).update_deadline)
    coordinator.advance(operator, task.task_id)
    draw_assignment(task, 0)

    # Execute
    assigned = [task.assigned(0, m) for m in task.members]

    # Assert
    assert assigned == [[0, 1], [0, 1], []]
    assert not any(coordinator.is_assigned(task.task_id, 0, p, accounts[3].address) for p in range(2))


# -- aggregation phase ----------------------------------------------------------------------------


def test_commit_aggregate_emits_aggregate_committed(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An assigned aggregator's commit is recorded as one vote, not yet final with q = 2."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:5])
    aggregator = task.aggregators(0, 1)[0]

    # Execute
    receipt = coordinator.commit_aggregate(aggregator, task.task_id, 0, 1, honest_digest(0, 1))

    # Assert
    assert events(coordinator, "AggregateCommitted", receipt) == [
        {
            "taskId": task.task_id,
            "round": 0,
            "partition": 1,
            "aggregator": aggregator.address,
            "digest": honest_digest(0, 1),
            "isFallback": False,
        }
    ]
    assert events(coordinator, "PartitionFinalized", receipt) == []
    assert coordinator.get_votes(task.task_id, 0, 1, honest_digest(0, 1)) == (1, 1)
    assert coordinator.get_final_digests(task.task_id, 0) == [None] * 4


def test_commit_aggregates_commits_every_listed_partition(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A batch commit is one AggregateCommitted per listed partition, with its own digest."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:5])
    aggregator = task.members[0]
    partitions = task.assigned(0, aggregator)

    # Execute
    (receipt,) = commit_assigned(task, 0, [aggregator])

    # Assert
    committed = events(coordinator, "AggregateCommitted", receipt)
    assert [(e["partition"], e["digest"], e["aggregator"]) for e in committed] == [
        (p, honest_digest(0, p), aggregator.address) for p in partitions
    ]
    assert [coordinator.get_votes(task.task_id, 0, p, honest_digest(0, p)) for p in range(4)] == [
        (1, 1) if p in partitions else (0, 0) for p in range(4)
    ]


def test_partition_finalizes_when_quorum_agrees(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """q identical digests make a partition final; the others stay open."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:5])
    first, second = task.aggregators(0, 2)
    coordinator.commit_aggregate(first, task.task_id, 0, 2, honest_digest(0, 2))

    # Execute
    receipt = coordinator.commit_aggregate(second, task.task_id, 0, 2, honest_digest(0, 2))

    # Assert
    assert events(coordinator, "PartitionFinalized", receipt) == [
        {"taskId": task.task_id, "round": 0, "partition": 2, "digest": honest_digest(0, 2)}
    ]
    assert events(coordinator, "RoundFinalized", receipt) == []
    assert coordinator.get_final_digests(task.task_id, 0) == [None, None, honest_digest(0, 2), None]
    info = task.round(0)
    assert (info.status, info.finalized_partitions) == (RoundStatus.AGGREGATION, 1)


def test_get_votes_counts_each_digest_separately(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """getVotes counts (assigned, all) commits per digest, the candidate and the others alike."""
    # Prepare: r = 4, q = 3, every contributor aggregates partition 0.
    task = frozen_task(coordinator, operator, accounts[1:5], partitions=1, replication=4, quorum=3, min_contributors=3)
    a, b, c, _ = task.members
    x, y = honest_digest(0, 0), digest("other")

    # Execute
    for account, value in ((a, x), (b, y), (c, x)):
        coordinator.commit_aggregate(account, task.task_id, 0, 0, value)

    # Assert
    assert [coordinator.get_votes(task.task_id, 0, 0, d) for d in (x, y, digest("nobody"), ZERO_DIGEST)] == [
        (2, 2),
        (1, 1),
        (0, 0),
        (0, 0),
    ]
    assert coordinator.get_final_digests(task.task_id, 0) == [None]


def test_commit_aggregate_before_contributor_set_freezes_reverts_with_aggregation_not_open(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Aggregates are refused during the update phase."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:4])
    commit_updates(task, 0, accounts[1:3])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(accounts[1], task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert exc.value.name == "FLCoordinatorAggregationNotOpen"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0}


def test_commit_aggregate_for_partition_out_of_range_reverts_with_partition_out_of_range(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Partition indices stop below P."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:3])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(accounts[1], task.task_id, 0, 4, honest_digest(0, 4))

    # Assert
    assert exc.value.name == "FLCoordinatorPartitionOutOfRange"
    assert exc.value.arguments == {"partition": 4, "partitions": 4}


def test_commit_aggregate_with_zero_digest_reverts_with_zero_digest(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An aggregate must name a blob."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:3])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(accounts[1], task.task_id, 0, 0, ZERO_DIGEST)

    # Assert
    assert exc.value.name == "FLCoordinatorZeroDigest"
    assert exc.value.arguments == {}


def test_commit_aggregate_twice_reverts_with_aggregate_already_committed(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An assigned aggregator votes once per partition, even with another digest."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:5])
    aggregator = task.aggregators(0, 0)[0]
    coordinator.commit_aggregate(aggregator, task.task_id, 0, 0, digest("first"))

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(aggregator, task.task_id, 0, 0, digest("second"))

    # Assert
    assert exc.value.name == "FLCoordinatorAggregateAlreadyCommitted"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0, "partition": 0, "account": aggregator.address}
    assert coordinator.get_votes(task.task_id, 0, 0, digest("second")) == (0, 0)
    assert coordinator.get_votes(task.task_id, 0, 0, digest("first")) == (1, 1)


def test_commit_aggregate_by_unassigned_contributor_reverts_with_not_assigned(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Before the aggregation deadline only assigned aggregators commit."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:5])
    outsider = task.unassigned(0, 3)[0]

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(outsider, task.task_id, 0, 3, honest_digest(0, 3))

    # Assert
    assert exc.value.name == "FLCoordinatorNotAssigned"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0, "partition": 3, "account": outsider.address}


def test_commit_aggregate_by_admitted_non_participant_reverts_with_not_joined(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Admission alone does not let an account aggregate in a task it did not join."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:3])
    stranger = accounts[6]
    coordinator.admit(operator, [stranger.address])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(stranger, task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert exc.value.name == "FLCoordinatorNotJoined"
    assert exc.value.arguments == {"taskId": task.task_id, "account": stranger.address}


def test_commit_aggregate_by_joined_non_contributor_reverts_with_not_a_contributor(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A joined, admitted member that committed no update in the round has no vote in it at all."""
    # Prepare: three joined, two contributed.
    task = running_task(coordinator, operator, accounts[1:4], partitions=1, replication=2, quorum=2)
    commit_updates(task, 0, accounts[1:3])
    pass_deadline(chain, client, task.round(0).update_deadline)
    coordinator.advance(operator, task.task_id)
    draw_assignment(task, 0)
    idle = accounts[3]

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(idle, task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert exc.value.name == "FLCoordinatorNotAContributor"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0, "account": idle.address}
    assert coordinator.get_votes(task.task_id, 0, 0, honest_digest(0, 0)) == (0, 0)


def test_commit_aggregates_with_length_mismatch_reverts_with_length_mismatch(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Batch arrays must pair every partition with a digest."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:3])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregates(accounts[1], task.task_id, 0, [0, 1], [honest_digest(0, 0)])

    # Assert
    assert exc.value.name == "FLCoordinatorLengthMismatch"
    assert exc.value.arguments == {"partitions": 2, "digests": 1}


# -- finalization ---------------------------------------------------------------------------------


def test_full_round_with_four_participants_finalizes(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """P = 4, r = 2, q = 2: every assigned aggregator commits, every partition and the round finalize."""
    # Prepare
    task = frozen_task(coordinator, operator, accounts[1:5], partitions=4, replication=2, quorum=2)

    # Execute
    receipts = commit_assigned(task, 0, task.members)

    # Assert
    finalized = [e for r in receipts for e in events(coordinator, "PartitionFinalized", r)]
    assert sorted((e["partition"], e["digest"]) for e in finalized) == [(p, honest_digest(0, p)) for p in range(4)]
    assert events(coordinator, "RoundFinalized", receipts[-1]) == [{"taskId": task.task_id, "round": 0}]
    assert [(e["round"], e["taskId"]) for e in events(coordinator, "RoundStarted", receipts[-1])] == [(1, task.task_id)]
    assert coordinator.get_final_digests(task.task_id, 0) == [honest_digest(0, p) for p in range(4)]
    info = task.round(0)
    assert (info.status, info.finalized_partitions) == (RoundStatus.FINALIZED, 4)
    state = coordinator.get_task(task.task_id)[1]
    assert (state.status, state.current_round, state.finalized_rounds, state.latest_finalized_round) == (
        TaskStatus.RUNNING,
        1,
        1,
        0,
    )
    assert task.round(1).status == RoundStatus.UPDATE


def test_commit_aggregates_ignores_entries_after_round_finalizes(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Batch entries after the commit that finalized the round are not processed."""
    # Prepare: everyone but the last aggregator commits; its partitions then miss one vote each.
    task = frozen_task(coordinator, operator, accounts[1:5])
    *others, last = task.members
    commit_assigned(task, 0, others)
    partitions = task.assigned(0, last)
    # A repeated entry would revert with AggregateAlreadyCommitted if it were processed.
    batch = [*partitions, partitions[0]]

    # Execute
    receipt = coordinator.commit_aggregates(last, task.task_id, 0, batch, [honest_digest(0, p) for p in batch])

    # Assert
    assert [e["partition"] for e in events(coordinator, "AggregateCommitted", receipt)] == partitions
    assert events(coordinator, "RoundFinalized", receipt) == [{"taskId": task.task_id, "round": 0}]


def test_commit_aggregate_for_previous_round_reverts_with_round_not_current(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Once a round is over, aggregates naming it are refused."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3], partitions=1)
    finalize_round(task, 0)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_aggregate(accounts[1], task.task_id, 0, 0, honest_digest(0, 0))

    # Assert
    assert exc.value.name == "FLCoordinatorRoundNotCurrent"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0, "currentRound": 1}


def test_task_completes_after_configured_number_of_finalized_rounds(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """TaskCompleted comes with the last configured round, not before, and no round follows it."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3], partitions=1, rounds=2)
    first = finalize_round(task, 0)

    # Execute
    last = finalize_round(task, 1)

    # Assert
    assert [events(coordinator, "TaskCompleted", r) for r in first] == [[] for _ in first]
    assert events(coordinator, "RoundFinalized", last[-1]) == [{"taskId": task.task_id, "round": 1}]
    assert events(coordinator, "TaskCompleted", last[-1]) == [{"taskId": task.task_id}]
    assert events(coordinator, "RoundStarted", last[-1]) == []
    state = coordinator.get_task(task.task_id)[1]
    assert (state.status, state.current_round, state.finalized_rounds, state.latest_finalized_round) == (
        TaskStatus.COMPLETED,
        1,
        2,
        1,
    )


def test_commit_update_to_completed_task_reverts_with_wrong_task_status(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A completed task accepts no further commits."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3], partitions=1, rounds=1)
    finalize_round(task, 0)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.commit_update(accounts[1], task.task_id, 1, digest("update"), 5)

    # Assert
    assert exc.value.name == "FLCoordinatorWrongTaskStatus"
    assert exc.value.arguments == {"taskId": task.task_id, "status": TaskStatus.COMPLETED}
