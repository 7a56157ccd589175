"""Attacks on the contract's trust rules, each by a coalition smaller than half of a round's contributors.

Every test here failed on the contract before the Trust issue (2026-12-02) and runs on the embedded
chain, ganache and anvil (the ``chain`` fixture). The rules they check (``FLCoordinator``'s NatSpec):

- only a round's non-excluded contributors commit aggregates, report or dispute: members who did
  not contribute have no vote;
- in the fallback phase a digest finalizes, and an update is excluded, only with a strict majority
  of the round's contributors;
- the assignment is a keyed permutation whose key is the freezing block's hash, unknown to every
  transaction of that block, so neither commit order nor the caller of ``advance`` picks it;
- a strict majority of a finalized round's contributors undoes it (``disputeRound``);
- claimed sample counts, registrations and participant reads are bounded; removal is complete;
  the operator role moves in two steps.
"""

from __future__ import annotations

import random

import pytest
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.logs import DISCARD

from fl_chain.chain import Chain, ChainClient, Coordinator, RoundStatus, TaskStatus
from fl_chain.chain.coordinator import FailureReason
from fl_chain.errors import ContractRevertError
from fl_chain.protocol.assignment import assigned_partitions
from fl_chain.protocol.capture import capture_probability, window_capture
from tests.conftest import CONTRACT_RULES_BACKEND, digest, multiaddr
from tests.helpers.contracts import (
    Task,
    commit_updates,
    draw_assignment,
    finalize_round,
    forged_digest,
    honest_digest,
    pass_deadline,
    running_task,
)

pytestmark = pytest.mark.chain_backends(CONTRACT_RULES_BACKEND)

P, R, Q = 4, 3, 2


def reverts(name: str, call) -> None:  # type: ignore[no-untyped-def]
    """``call()`` must revert with the custom error ``name``."""
    with pytest.raises(ContractRevertError) as caught:
        call()
    assert caught.value.name == name, caught.value


def frozen_round(chain: Chain, client: ChainClient, task: Task, contributors: list[LocalAccount]) -> None:
    """``contributors`` commit round 0, the update deadline passes, the set freezes and its key is drawn."""
    commit_updates(task, 0, contributors)
    if task.round(0).status == RoundStatus.UPDATE:
        pass_deadline(chain, client, task.round(0).update_deadline)
        task.coordinator.advance(contributors[0], task.task_id)
    task.coordinator.draw_assignment(contributors[0], task.task_id, 0)
    assert task.round(0).assignment_key is not None


def assigned(task: Task, account: LocalAccount) -> set[int]:
    return set(task.assigned(0, account))


def disjoint_pair(task: Task, members: list[LocalAccount]) -> tuple[LocalAccount, LocalAccount]:
    """Two members that share no assigned partition (so together they hold < q of every partition)."""
    for i, a in enumerate(members):
        for b in members[i + 1 :]:
            if not assigned(task, a) & assigned(task, b):
                return a, b
    raise AssertionError("no two members with disjoint assignments")


@pytest.fixture()
def eight(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> tuple[Task, list[LocalAccount], LocalAccount]:
    """A running task (P=4, r=3, q=2) with 8 contributors-to-be and one member that will not contribute."""
    members, outsider = accounts[1:9], accounts[9]
    task = running_task(coordinator, operator, [*members, outsider], partitions=P, replication=R, quorum=Q)
    return task, members, outsider


# -- 1. fallback forgery ---------------------------------------------------------------------------


def test_attack_fallback_forgery_by_a_contributor_and_a_non_contributor_is_refused(
    chain: Chain, client: ChainClient, eight
) -> None:
    """The reproduced forgery: one contributor forces the fallback (commits a digest nobody else can
    match), then it and a non-contributing member commit a forged digest for every partition. The
    member has no vote; two colluding contributors of 8 are no majority; the honest majority decides."""
    task, members, outsider = eight
    co = task.coordinator
    frozen_round(chain, client, task, members)
    a, b = disjoint_pair(task, members)
    forged = [forged_digest(0, p) for p in range(P)]
    co.commit_aggregates(a, task.task_id, 0, sorted(assigned(task, a)), [forged[p] for p in sorted(assigned(task, a))])
    pass_deadline(chain, client, task.round(0).aggregation_deadline)

    reverts(
        "FLCoordinatorNotAContributor", lambda: co.commit_aggregates(outsider, task.task_id, 0, list(range(P)), forged)
    )
    for colluder in (a, b):
        rest = [p for p in range(P) if p not in (assigned(task, a) if colluder is a else set())]
        co.commit_aggregates(colluder, task.task_id, 0, rest, [forged[p] for p in rest])
    assert co.get_final_digests(task.task_id, 0) == [None] * P, "two of eight contributors finalized a forgery"

    honest = [m for m in members if m not in (a, b)]
    for voter in honest[:4]:  # 4 honest + nobody else: 4 of 8 is not a strict majority either
        co.commit_aggregates(voter, task.task_id, 0, list(range(P)), [honest_digest(0, p) for p in range(P)])
    final = co.get_final_digests(task.task_id, 0)
    assert all(d in (None, honest_digest(0, p)) for p, d in enumerate(final))
    co.commit_aggregates(
        honest[4],
        task.task_id,
        0,
        [p for p in range(P) if final[p] is None],
        [honest_digest(0, p) for p in range(P) if final[p] is None],
    )
    assert co.get_final_digests(task.task_id, 0) == [honest_digest(0, p) for p in range(P)]
    assert task.round(0).status == RoundStatus.FINALIZED


def test_attack_assigned_phase_liar_below_quorum_cannot_finalize(chain: Chain, client: ChainClient, eight) -> None:
    """An assigned liar's digest counts one assigned vote: below q, it never finalizes, and votes of
    other contributors for it before the aggregation deadline are refused (not assigned)."""
    task, members, _ = eight
    co = task.coordinator
    frozen_round(chain, client, task, members)
    liar = members[0]
    partition = min(assigned(task, liar))
    co.commit_aggregate(liar, task.task_id, 0, partition, forged_digest(0, partition))
    helper = next(m for m in members if partition not in assigned(task, m))
    reverts(
        "FLCoordinatorNotAssigned",
        lambda: co.commit_aggregate(helper, task.task_id, 0, partition, forged_digest(0, partition)),
    )
    assert co.get_votes(task.task_id, 0, partition, forged_digest(0, partition)) == (1, 1)
    assert co.get_final_digests(task.task_id, 0)[partition] is None


# -- 2. censorship by false reports ----------------------------------------------------------------


def test_attack_false_reports_by_a_minority_exclude_nobody(chain: Chain, client: ChainClient, eight) -> None:
    """Non-contributors cannot report; reports by up to half of the contributors exclude no one; the
    fifth of eight (a strict majority) does."""
    task, members, outsider = eight
    co = task.coordinator
    frozen_round(chain, client, task, members)
    pass_deadline(chain, client, task.round(0).aggregation_deadline)
    victim, *others = members
    reverts("FLCoordinatorNotAContributor", lambda: co.report_unavailable(outsider, task.task_id, 0, victim.address))
    for reporter in others[:4]:
        co.report_unavailable(reporter, task.task_id, 0, victim.address)
        assert co.get_excluded(task.task_id, 0) == []
    co.report_unavailable(others[4], task.task_id, 0, victim.address)
    assert co.get_excluded(task.task_id, 0) == [victim.address]
    # the excluded contributor has no vote left in the round
    reverts("FLCoordinatorNotAContributor", lambda: co.report_unavailable(victim, task.task_id, 0, others[0].address))
    reverts(
        "FLCoordinatorNotAContributor",
        lambda: co.commit_aggregates(victim, task.task_id, 0, [0], [forged_digest(0, 0)]),
    )


# -- 3. steerable assignment -----------------------------------------------------------------------


def test_attack_freezing_caller_cannot_know_the_assignment_key(
    chain: Chain, client: ChainClient, coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """The key is keccak(seed, hash of the freezing block): no transaction in that block (the last
    committer's, or the ``advance`` caller's) can read it, and it is the same for every reader after."""
    members = accounts[1:5]
    task = running_task(coordinator, operator, members, partitions=P, replication=2, quorum=2)
    receipts = commit_updates(task, 0, members)  # the last commit freezes the set
    freeze = receipts[-1]
    info = task.round(0)
    assert info.status == RoundStatus.AGGREGATION
    coordinator.draw_assignment(members[0], task.task_id, 0)
    freeze_hash = bytes(client.w3.eth.get_block(freeze["blockNumber"])["hash"])
    expected = keccak(encode(["bytes32", "bytes32"], [info.seed, freeze_hash]))
    assert task.round(0).assignment_key == expected
    drawn = coordinator.find_events("AssignmentDrawn", taskId=task.task_id, round=0)
    assert [bytes(e["args"]["key"]) for e in drawn] == [expected]
    coordinator.draw_assignment(members[1], task.task_id, 0)  # a second draw changes nothing
    assert task.round(0).assignment_key == expected


def test_attack_colluders_committing_last_are_no_longer_adjacent() -> None:
    """The reproduced steering: with n=20, r=3, q=2, two colluders who commit last used to capture a
    partition whenever the drawn offset suited them (adjacent ring positions from commit order), and
    the caller of the freezing transaction could predict it. Over 2,000 keys the permutation gives
    them exactly the chance of random positions, within the bound ``task create`` prints."""
    n, partitions = 20, 20
    colluders = (n - 2, n - 1)
    rng = random.Random(7)
    captured = 0
    keys = 2000
    for _ in range(keys):
        key = rng.randbytes(32)
        held = [
            set(assigned_partitions(i, contributors=n, key=key, partitions=partitions, replication=R))
            for i in colluders
        ]
        captured += bool(held[0] & held[1])  # q = 2 slots of one partition
    rate = captured / keys
    # Two random ring positions share one of the 20 windows of 3 exactly when they are at most 2
    # apart: 4 of the 19 other positions.
    at_random = 4 / 19
    bound = capture_probability(n, 2, partitions=partitions, replication=R, quorum=Q)
    assert abs(rate - at_random) < 0.04, (
        f"colluders committing last capture {rate:.3f} of rounds, random {at_random:.3f}"
    )
    assert rate <= bound
    assert window_capture(n, 2, R, Q) < rate  # more than one window's chance, as the union bound says


# -- 4b. partition vote state reused across rounds ---------------------------------------------------


def test_attack_stale_votes_of_a_failed_round_never_count_in_the_next(
    chain: Chain, client: ChainClient, coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """A partition's vote state is rewritten round after round. A colluder's assigned vote left in a
    failed round (one of q = 2) must not complete a quorum in the next round with one more colluder
    vote, and the committed-slot bits of the earlier round must not lock out this round's aggregators."""
    members = accounts[1:5]
    task = running_task(coordinator, operator, members, partitions=2, replication=2, quorum=2)
    co, tid, p = task.coordinator, task.task_id, 0
    forged = forged_digest(1, p)
    commit_updates(task, 0, members)
    draw_assignment(task, 0)
    first, _ = task.aggregators(0, p)
    co.commit_aggregate(first, tid, 0, p, forged)
    assert co.get_votes(tid, 0, p, forged) == (1, 1)
    pass_deadline(chain, client, task.round(0).fallback_deadline)
    co.advance(members[0], tid)
    assert task.round(0).status == RoundStatus.FAILED

    commit_updates(task, 1, members)
    draw_assignment(task, 1)
    assert co.get_votes(tid, 1, p, forged) == (0, 0)
    colluder, honest = task.aggregators(1, p)
    co.commit_aggregate(colluder, tid, 1, p, forged)
    assert co.get_votes(tid, 1, p, forged) == (1, 1), "a vote of the failed round counted in this one"
    assert co.get_final_digests(tid, 1)[p] is None, "one assigned vote of this round finalized a forgery"
    reverts("FLCoordinatorAggregateAlreadyCommitted", lambda: co.commit_aggregate(colluder, tid, 1, p, forged))
    co.commit_aggregate(honest, tid, 1, p, honest_digest(1, p))  # its slot is free whatever round 0 set
    assert co.get_final_digests(tid, 1)[p] is None
    # The failed round's history stays exact: its votes come from its events, nothing of it became final.
    assert co.get_votes(tid, 0, p, forged) == (1, 1)
    assert co.get_votes(tid, 0, p, honest_digest(1, p)) == (0, 0)
    assert co.get_final_digests(tid, 0) == [None, None]


def test_attack_final_state_of_a_round_never_carries_into_the_next(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """Round 0 finalizes every partition with q assigned votes. In round 1 the reused state must read
    as empty: one assigned vote for round 0's final digest is one vote (no quorum), the partition is
    not final, and round 0's final digests never change when round 1 finalizes other ones."""
    members = accounts[1:5]
    task = running_task(coordinator, operator, members, partitions=2, replication=2, quorum=2)
    co, tid, p = task.coordinator, task.task_id, 1
    finalize_round(task, 0)
    final0 = [honest_digest(0, q) for q in range(2)]
    assert co.get_final_digests(tid, 0) == final0

    commit_updates(task, 1, members)
    draw_assignment(task, 1)
    stale, other = task.aggregators(1, p)
    receipt = co.commit_aggregate(stale, tid, 1, p, final0[p])
    assert co.get_votes(tid, 1, p, final0[p]) == (1, 1)
    assert co.get_final_digests(tid, 1) == [None, None], "round 0's final state carried into round 1"
    assert not co.contract.events.AggregateDisputed().process_receipt(receipt, errors=DISCARD)
    co.commit_aggregate(other, tid, 1, p, honest_digest(1, p))
    assert co.get_final_digests(tid, 1) == [None, None]  # 1 vs 1: no quorum
    assert co.get_final_digests(tid, 0) == final0
    assert co.get_votes(tid, 0, p, final0[p]) == (2, 2)


def test_attack_candidate_of_a_failed_round_never_reads_as_final_after_reuse(
    chain: Chain, client: ChainClient, coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """A failed round keeps the partitions it did finalize and nothing else. A colluder's candidate
    that never reached quorum must read as not final before and after a later round reuses the
    partition's vote state (which deletes that candidate), and the final partition must keep its
    digest through the reuse."""
    members = accounts[1:5]
    task = running_task(coordinator, operator, members, partitions=2, replication=2, quorum=2)
    co, tid = task.coordinator, task.task_id
    commit_updates(task, 0, members)
    draw_assignment(task, 0)
    for aggregator in task.aggregators(0, 0):
        co.commit_aggregate(aggregator, tid, 0, 0, honest_digest(0, 0))
    colluder = task.aggregators(0, 1)[0]
    co.commit_aggregate(colluder, tid, 0, 1, forged_digest(0, 1))
    expected = [honest_digest(0, 0), None]
    assert co.get_final_digests(tid, 0) == expected
    pass_deadline(chain, client, task.round(0).fallback_deadline)
    co.advance(members[0], tid)
    assert task.round(0).status == RoundStatus.FAILED
    assert co.get_final_digests(tid, 0) == expected, "the failed round's final digests changed"

    commit_updates(task, 1, members)
    draw_assignment(task, 1)
    for p in range(2):
        co.commit_aggregate(task.aggregators(1, p)[0], tid, 1, p, forged_digest(0, 1))
        assert co.get_final_digests(tid, 0) == expected, "reusing the vote state changed an earlier round"
    assert co.get_final_digests(tid, 1) == [None, None]
    assert co.get_votes(tid, 0, 1, forged_digest(0, 1)) == (1, 1)


# -- 5. a final round that cannot be fetched or validated ---------------------------------------------


def finalize_with(task: Task, chain: Chain, client: ChainClient, round_: int, digests: list[bytes]) -> None:
    """Every member commits round ``round_``; a contributor majority then commits ``digests`` in fallback."""
    co = task.coordinator
    commit_updates(task, round_, task.members)
    co.draw_assignment(task.members[0], task.task_id, round_)
    pass_deadline(chain, client, task.round(round_).aggregation_deadline)
    for member in task.members:
        if task.round(round_).status != RoundStatus.AGGREGATION:
            break
        co.commit_aggregates(member, task.task_id, round_, list(range(task.config.partitions)), digests)
    assert task.round(round_).status == RoundStatus.FINALIZED


def test_attack_unusable_final_round_is_undone_by_a_contributor_majority(
    chain: Chain, client: ChainClient, coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """Round 1 finalizes with digests nobody can use. Its contributors dispute it: a minority changes
    nothing, non-contributors and members that contributed since have no say, a majority fails the
    round and the current one, and the task continues from round 0's model."""
    members, outsider = accounts[1:6], accounts[6]
    task = running_task(coordinator, operator, [*members, outsider], partitions=2, replication=2, quorum=2, rounds=5)
    task.members = members  # the outsider never contributes
    for round_ in (0, 1):
        commit_updates(task, round_, members)
        pass_deadline(chain, client, task.round(round_).update_deadline)
        coordinator.advance(members[0], task.task_id)
        coordinator.draw_assignment(members[0], task.task_id, round_)
        pass_deadline(chain, client, task.round(round_).aggregation_deadline)
        digests = [honest_digest(round_, p) if round_ == 0 else forged_digest(round_, p) for p in range(2)]
        for member in members[:3]:
            if task.round(round_).status == RoundStatus.AGGREGATION:
                coordinator.commit_aggregates(member, task.task_id, round_, [0, 1], digests)
        assert task.round(round_).status == RoundStatus.FINALIZED
    assert coordinator.get_task(task.task_id)[1].latest_finalized_round == 1
    # members[4] fetched the model and contributed to round 2: it no longer has a say about round 1
    coordinator.commit_update(members[4], task.task_id, 2, digest("r2"), 10)
    reverts("FLCoordinatorNotAContributor", lambda: coordinator.dispute_round(members[4], task.task_id, 1))
    reverts("FLCoordinatorNotAContributor", lambda: coordinator.dispute_round(outsider, task.task_id, 1))
    reverts("FLCoordinatorNotDisputable", lambda: coordinator.dispute_round(members[0], task.task_id, 0))
    coordinator.dispute_round(members[0], task.task_id, 1)
    coordinator.dispute_round(members[1], task.task_id, 1)
    reverts("FLCoordinatorAlreadyDisputed", lambda: coordinator.dispute_round(members[1], task.task_id, 1))
    assert task.round(1).status == RoundStatus.FINALIZED  # 2 of 5 is no majority
    receipt = coordinator.dispute_round(members[2], task.task_id, 1)
    failed = [
        (int(e["args"]["round"]), FailureReason(e["args"]["reason"]))
        for e in coordinator.contract.events.RoundFailed().process_receipt(receipt, errors=DISCARD)
    ]
    assert failed == [(1, FailureReason.DISPUTED), (2, FailureReason.DISPUTED)]
    _, state = coordinator.get_task(task.task_id)
    assert (state.status, state.finalized_rounds, state.latest_finalized_round, state.current_round) == (
        TaskStatus.RUNNING,
        1,
        0,
        3,
    )
    assert task.round(3).status == RoundStatus.UPDATE


def test_attack_unusable_last_round_reopens_a_completed_task(
    chain: Chain, client: ChainClient, coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """A task whose last round is unusable is not bricked: within the update duration after it
    completed, a contributor majority reopens it, and the next round starts from the initial model."""
    members = accounts[1:4]
    task = running_task(coordinator, operator, members, partitions=2, replication=2, quorum=2, rounds=1)
    finalize_with(task, chain, client, 0, [forged_digest(0, p) for p in range(2)])
    assert coordinator.get_task(task.task_id)[1].status == TaskStatus.COMPLETED
    coordinator.dispute_round(members[0], task.task_id, 0)
    coordinator.dispute_round(members[1], task.task_id, 0)
    _, state = coordinator.get_task(task.task_id)
    assert (state.status, state.finalized_rounds, state.current_round) == (TaskStatus.RUNNING, 0, 1)
    finalize_with(task, chain, client, 1, [honest_digest(1, p) for p in range(2)])
    assert coordinator.get_task(task.task_id)[1].status == TaskStatus.COMPLETED


def test_attack_dispute_window_of_a_completed_task_closes(
    chain: Chain, client: ChainClient, coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """After the update duration a completed task is final: a late majority cannot reopen it."""
    members = accounts[1:4]
    task = running_task(coordinator, operator, members, partitions=2, replication=2, quorum=2, rounds=1)
    finalize_with(task, chain, client, 0, [honest_digest(0, p) for p in range(2)])
    pass_deadline(chain, client, client.block_timestamp() + task.config.update_duration)
    reverts("FLCoordinatorNotDisputable", lambda: coordinator.dispute_round(members[0], task.task_id, 0))


# -- 6. sample inflation ---------------------------------------------------------------------------


def test_attack_sample_inflation_is_refused_on_chain(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """Claiming 2**64-1 samples (to own FedAvg) reverts; the default cap is in every task config."""
    members = accounts[1:3]
    task = running_task(coordinator, operator, members, max_samples=5000)
    assert coordinator.get_task(task.task_id)[0].max_samples == 5000
    reverts(
        "FLCoordinatorTooManySamples",
        lambda: coordinator.commit_update(members[0], task.task_id, 0, digest("x"), 2**64 - 1),
    )
    reverts(
        "FLCoordinatorTooManySamples", lambda: coordinator.commit_update(members[0], task.task_id, 0, digest("x"), 5001)
    )
    coordinator.commit_update(members[0], task.task_id, 0, digest("x"), 5000)


# -- 8. participant list DoS -----------------------------------------------------------------------


def test_attack_oversized_registrations_are_refused(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """A join cannot store more than 4 multiaddrs of 256 bytes and a 64-byte key, nor pass maxParticipants."""
    members = accounts[1:5]
    task_id = coordinator.create_task(operator, task_config_for(max_participants=3))
    coordinator.admit(operator, [m.address for m in members])
    attacker = members[0]
    reverts(
        "FLCoordinatorInvalidMultiaddrs", lambda: coordinator.join(attacker, task_id, [multiaddr(i) for i in range(5)])
    )
    reverts("FLCoordinatorInvalidMultiaddrs", lambda: coordinator.join(attacker, task_id, []))
    reverts("FLCoordinatorMultiaddrTooLong", lambda: coordinator.join(attacker, task_id, ["/" + "x" * 256]))
    reverts("FLCoordinatorPublicKeyTooLong", lambda: coordinator.join(attacker, task_id, [multiaddr(0)], b"k" * 65))
    coordinator.join(attacker, task_id, ["/" + "x" * 255] * 4, b"k" * 64)  # the largest registration
    reverts("FLCoordinatorMultiaddrTooLong", lambda: coordinator.update_peer(attacker, task_id, ["/" + "y" * 300]))
    coordinator.join(members[1], task_id, [multiaddr(1)])
    coordinator.join(members[2], task_id, [multiaddr(2)])
    reverts("FLCoordinatorTaskFull", lambda: coordinator.join(members[3], task_id, [multiaddr(3)]))


def test_attack_participant_reads_stay_cheap_with_maximal_registrations(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """Maximal joins cannot make the participant list unreadable: it is read in pages, and one page
    of maximal registrations costs a bounded, small fraction of a 30M-gas call budget."""
    members = accounts[1:12]
    task_id = coordinator.create_task(operator, task_config_for())
    coordinator.admit(operator, [m.address for m in members])
    for i, member in enumerate(members):
        coordinator.join(member, task_id, [f"/{i}" + "x" * 250] * 4, b"k" * 64)
    everyone = coordinator.get_participants(task_id)
    assert [p.account for p in everyone] == [m.address for m in members]
    page = coordinator.contract.functions.getParticipants(task_id, 0, 5)
    per_participant = page.estimate_gas() / 5
    # A 200-participant page (PARTICIPANT_PAGE) of maximal registrations stays below a 30M call budget.
    assert per_participant * 200 < 30_000_000, per_participant
    assert [p.account for p in coordinator.get_participants(task_id)[3:5]] == [
        str(v[0]) for v in coordinator.contract.functions.getParticipants(task_id, 3, 2).call()
    ]


# -- 9. revocation, operator transfer --------------------------------------------------------------


def test_attack_revoked_member_no_longer_holds_rounds_open(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """After ``revoke``, anyone removes the member from the task: its slot is freed and the update
    phase ends when every remaining participant committed, instead of waiting for the deadline."""
    members = accounts[1:5]
    task = running_task(coordinator, operator, members)
    commit_updates(task, 0, members[:3])
    assert task.round(0).status == RoundStatus.UPDATE
    reverts(
        "FLCoordinatorStillAdmitted",
        lambda: coordinator.remove_participant(members[0], task.task_id, members[3].address),
    )
    coordinator.revoke(operator, members[3].address)
    coordinator.remove_participant(members[0], task.task_id, members[3].address)
    assert task.round(0).status == RoundStatus.AGGREGATION
    _, state = coordinator.get_task(task.task_id)
    assert state.participant_count == 3
    assert [p.account for p in coordinator.get_participants(task.task_id)] == [m.address for m in members[:3]]
    reverts("FLCoordinatorNotJoined", lambda: coordinator.update_peer(members[3], task.task_id, [multiaddr(3)]))


def test_attack_removed_contributor_still_counts_in_its_round_but_not_for_completion(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """Removing a member that already committed keeps its update in the round, and the phase still
    waits for every remaining participant (no early freeze that would shut out an honest site)."""
    members = accounts[1:5]
    task = running_task(coordinator, operator, members)
    commit_updates(task, 0, members[:1])
    coordinator.remove_participant(operator, task.task_id, members[0].address)
    commit_updates(task, 0, members[1:3])
    assert task.round(0).status == RoundStatus.UPDATE  # members[3] has not committed yet
    commit_updates(task, 0, members[3:4])
    info = task.round(0)
    assert (info.status, info.contributors) == (RoundStatus.AGGREGATION, 4)


def test_attack_operator_transfer_to_a_wrong_address_is_recoverable(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
) -> None:
    """A one-step transfer to a mistyped address loses the role forever; now the role moves only
    when the new account accepts, and the offer can be replaced until then."""
    typo, new = accounts[10], accounts[11]
    coordinator.transfer_operator(operator, typo.address)
    assert coordinator.operator() == operator.address
    reverts("FLCoordinatorNotPendingOperator", lambda: coordinator.accept_operator(new))
    coordinator.transfer_operator(operator, new.address)
    reverts("FLCoordinatorNotPendingOperator", lambda: coordinator.accept_operator(typo))
    coordinator.accept_operator(new)
    assert (coordinator.operator(), coordinator.pending_operator()) == (new.address, None)


def task_config_for(**overrides):  # type: ignore[no-untyped-def]
    from tests.conftest import task_config

    return task_config(**overrides)
