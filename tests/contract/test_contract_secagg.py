"""FLCoordinator secure aggregation: the shares and unmask phases, who may commit what, and attacks.

A secure-aggregation round runs shares (setups: the key set U1) -> update (only U1; the contributor
set U2 freezes) -> unmask (check window: exclusions; reveal window: the reveal set U3) -> aggregation
and fallback as without secure aggregation. Fewer than t revealers fail the round cleanly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from fl_chain.chain import (
    Chain,
    ChainClient,
    Coordinator,
    FailureReason,
    RoundStatus,
    SecureAggregationConfig,
    TaskConfig,
)
from fl_chain.errors import ContractRevertError
from tests.conftest import CONTRACT_RULES_BACKEND, digest, multiaddr, task_config
from tests.helpers.contracts import (
    Task,
    block_timestamp,
    commit_until_final,
    draw_assignment,
    events,
    pass_deadline,
    update_digest,
    update_samples,
)

pytestmark = pytest.mark.chain_backends(CONTRACT_RULES_BACKEND)

THRESHOLD = 3
SHARES_DURATION = 300
UNMASK_DURATION = 200
SECURE = SecureAggregationConfig(threshold=THRESHOLD, shares_duration=SHARES_DURATION, unmask_duration=UNMASK_DURATION)


# -- helpers --------------------------------------------------------------------------------------


def public_key(member: int) -> bytes:
    """A member's 32-byte X25519 public key (the contract checks only its size and that it is not zero)."""
    return digest(f"x25519/{member}")


def setup_digest(round_: int, member: int) -> bytes:
    return digest(f"setup/{round_}/{member}")


def reveal_digest(round_: int, member: int) -> bytes:
    return digest(f"reveal/{round_}/{member}")


def secure_config(**overrides: Any) -> TaskConfig:
    """``task_config`` with secure aggregation (t = 3) and min_contributors = 3."""
    values: dict[str, Any] = {"min_contributors": THRESHOLD, "secure_aggregation": SECURE}
    values.update(overrides)
    return task_config(**values)


def secure_task(
    coordinator: Coordinator,
    operator: LocalAccount,
    members: Sequence[LocalAccount],
    *,
    start: bool = True,
    **overrides: Any,
) -> Task:
    """A secure-aggregation task that ``members`` joined with their keys; started: round 0 in its shares phase."""
    config = secure_config(**overrides)
    task_id = coordinator.create_task(operator, config)
    coordinator.admit(operator, [m.address for m in members])
    for i, member in enumerate(members):
        coordinator.join(member, task_id, [multiaddr(i)], public_key(i))
    if start:
        coordinator.start_task(operator, task_id)
    return Task(coordinator, operator, task_id, config, list(members))


def commit_setups(task: Task, round_: int, members: Sequence[LocalAccount]) -> list[dict[str, Any]]:
    return [
        task.coordinator.commit_setup(m, task.task_id, round_, setup_digest(round_, task.member_index(m)))
        for m in members
    ]


def pass_key_check(chain: Chain, client: ChainClient, task: Task, round_: int) -> None:
    """Move chain time past the key check window of ``round_`` (if it is in its update phase)."""
    info = task.round(round_)
    if info.status == RoundStatus.UPDATE:
        end = info.update_deadline - task.config.update_duration
        if client.block_timestamp() < end:
            pass_deadline(chain, client, end)


def commit_updates(
    chain: Chain, client: ChainClient, task: Task, round_: int, members: Sequence[LocalAccount]
) -> list[dict[str, Any]]:
    """Every member's update of ``round_``, once the key check window is over."""
    pass_key_check(chain, client, task, round_)
    return [
        task.coordinator.commit_update(
            m, task.task_id, round_, update_digest(round_, task.member_index(m)), update_samples(task.member_index(m))
        )
        for m in members
    ]


def commit_reveals(task: Task, round_: int, members: Sequence[LocalAccount]) -> list[dict[str, Any]]:
    return [
        task.coordinator.commit_reveal(m, task.task_id, round_, reveal_digest(round_, task.member_index(m)))
        for m in members
    ]


def unmasking_task(
    coordinator: Coordinator,
    chain: Chain,
    client: ChainClient,
    operator: LocalAccount,
    members: Sequence[LocalAccount],
    *,
    contributors: int | None = None,
) -> Task:
    """Round 0 with every member in U1, the first ``contributors`` (all) in U2, in the reveal window."""
    task = secure_task(coordinator, operator, members)
    commit_setups(task, 0, task.members)
    commit_updates(chain, client, task, 0, task.members[:contributors])
    if contributors is not None and contributors < len(members):
        pass_deadline(chain, client, task.round(0).update_deadline)
        coordinator.advance(operator, task.task_id)
    assert task.round(0).status == RoundStatus.UNMASK
    pass_deadline(chain, client, task.round(0).reveal_start)
    return task


def revert(call: Callable[[], Any]) -> tuple[str, dict[str, Any]]:
    """The custom error name and arguments ``call`` reverts with."""
    with pytest.raises(ContractRevertError) as info:
        call()
    return info.value.name, dict(info.value.arguments)


# -- task creation and joining --------------------------------------------------------------------


def test_create_secure_task_stores_the_config_and_emits_configured(coordinator: Coordinator, operator: LocalAccount):
    """createSecureTask stores t and the two durations (getTask), right after TaskCreated."""
    # Execute
    receipt = coordinator._transact(operator, "createSecureTask", secure_config().as_tuple(), SECURE.as_tuple())

    # Assert
    assert [e["taskId"] for e in events(coordinator, "TaskCreated", receipt)] == [1]
    assert events(coordinator, "SecureAggregationConfigured", receipt) == [
        {"taskId": 1, "threshold": THRESHOLD, "sharesDuration": SHARES_DURATION, "unmaskDuration": UNMASK_DURATION}
    ]
    assert coordinator.get_task(1)[0] == secure_config()
    plain = coordinator.create_task(operator, task_config())
    assert coordinator.get_task(plain)[0].secure_aggregation is None


@pytest.mark.parametrize(
    ("secure", "error", "arguments"),
    [
        (SecureAggregationConfig(0, 1, 1), "FLCoordinatorInvalidThreshold", {"threshold": 0, "minContributors": 3}),
        (SecureAggregationConfig(1, 1, 1), "FLCoordinatorInvalidThreshold", {"threshold": 1, "minContributors": 3}),
        (SecureAggregationConfig(4, 1, 1), "FLCoordinatorInvalidThreshold", {"threshold": 4, "minContributors": 3}),
        (
            SecureAggregationConfig(3, 0, 1),
            "FLCoordinatorInvalidSecureDurations",
            {"sharesDuration": 0, "unmaskDuration": 1},
        ),
        (
            SecureAggregationConfig(3, 1, 0),
            "FLCoordinatorInvalidSecureDurations",
            {"sharesDuration": 1, "unmaskDuration": 0},
        ),
    ],
)
def test_create_secure_task_rejects_threshold_and_durations_out_of_range(
    coordinator: Coordinator, operator: LocalAccount, secure: SecureAggregationConfig, error: str, arguments: dict
):
    """2 <= t <= minContributors, and both added phases last at least one second."""
    # Execute, Assert
    assert revert(lambda: coordinator.create_task(operator, secure_config(secure_aggregation=secure))) == (
        error,
        arguments,
    )
    assert coordinator.task_count() == 0


def test_create_secure_task_still_validates_the_task_config(coordinator: Coordinator, operator: LocalAccount):
    """The plain rules apply first (here quorum <= replication / 2)."""
    name, _ = revert(lambda: coordinator.create_task(operator, secure_config(quorum=1)))
    assert name == "FLCoordinatorInvalidQuorum"


def test_create_secure_task_is_operator_only(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    stranger = accounts[3]
    assert revert(lambda: coordinator.create_task(stranger, secure_config())) == (
        "FLCoordinatorUnauthorizedOperator",
        {"account": stranger.address},
    )


@pytest.mark.parametrize(
    ("key", "error"),
    [
        (b"", "FLCoordinatorInvalidPublicKey"),
        (b"\x01" * 31, "FLCoordinatorInvalidPublicKey"),
        (b"\x01" * 33, "FLCoordinatorInvalidPublicKey"),
        (b"\x00" * 32, "FLCoordinatorInvalidPublicKey"),
        (b"\x01" * 65, "FLCoordinatorPublicKeyTooLong"),
    ],
    ids=["empty", "31-bytes", "33-bytes", "all-zero", "65-bytes"],
)
def test_join_a_secure_task_needs_a_32_byte_key(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount], key: bytes, error: str
):
    """Joining with secure aggregation needs a non-zero 32-byte X25519 key; a key above 64 bytes is
    refused by the general bound first."""
    # Prepare
    task = secure_task(coordinator, operator, [], start=False)
    member = accounts[1]
    coordinator.admit(operator, [member.address])

    # Execute
    name, arguments = revert(lambda: coordinator.join(member, task.task_id, [multiaddr(1)], key))

    # Assert
    assert (name, arguments) == (error, {"length": len(key)})
    assert not coordinator.has_joined(task.task_id, member.address)


def test_join_a_plain_task_keeps_the_optional_key_of_up_to_64_bytes(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Without secure aggregation the key stays optional and bounded by 64 bytes (unchanged)."""
    task_id = coordinator.create_task(operator, task_config())
    coordinator.admit(operator, [a.address for a in accounts[1:3]])
    coordinator.join(accounts[1], task_id, [multiaddr(1)])
    coordinator.join(accounts[2], task_id, [multiaddr(2)], b"\x07" * 64)
    assert [p.public_key for p in coordinator.get_participants(task_id)] == [b"", b"\x07" * 64]


# -- shares phase ---------------------------------------------------------------------------------


def test_secure_round_starts_in_the_shares_phase(
    coordinator: Coordinator, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """startTask opens round 0 in SHARES; RoundStarted carries the shares deadline."""
    # Prepare
    task = secure_task(coordinator, operator, accounts[1:5], start=False)

    # Execute
    receipt = coordinator.start_task(operator, task.task_id)

    # Assert
    now = block_timestamp(client, receipt)
    (started,) = events(coordinator, "RoundStarted", receipt)
    assert (started["round"], started["updateDeadline"]) == (0, now + SHARES_DURATION)
    info = task.round(0)
    assert (info.status, info.start_time, info.shares_deadline, info.update_deadline) == (
        RoundStatus.SHARES,
        now,
        now + SHARES_DURATION,
        0,
    )
    assert not info.frozen


def test_shares_phase_closes_when_every_member_committed_a_setup(
    coordinator: Coordinator, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """The last setup closes the phase: SharesPhaseClosed, then UPDATE (key check window, then updates)
    until now + unmaskDuration + updateDuration."""
    # Prepare
    task = secure_task(coordinator, operator, accounts[1:5])

    # Execute
    receipts = commit_setups(task, 0, task.members)

    # Assert
    assert [events(coordinator, "SetupCommitted", r) for r in receipts] == [
        [{"taskId": task.task_id, "round": 0, "member": m.address, "index": i, "digest": setup_digest(0, i)}]
        for i, m in enumerate(task.members)
    ]
    assert all(events(coordinator, "SharesPhaseClosed", r) == [] for r in receipts[:-1])
    deadline = block_timestamp(client, receipts[-1]) + UNMASK_DURATION + task.config.update_duration
    assert events(coordinator, "SharesPhaseClosed", receipts[-1]) == [
        {"taskId": task.task_id, "round": 0, "setups": 4, "updateDeadline": deadline}
    ]
    info = task.round(0)
    assert (info.status, info.setups, info.update_deadline) == (RoundStatus.UPDATE, 4, deadline)


def test_shares_phase_closes_at_its_deadline_through_advance(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """With one member silent, advance closes the phase only once the shares deadline passed."""
    # Prepare
    task = secure_task(coordinator, operator, accounts[1:5])
    commit_setups(task, 0, task.members[:3])
    assert revert(lambda: coordinator.advance(operator, task.task_id))[0] == "FLCoordinatorNothingToAdvance"

    # Execute
    pass_deadline(chain, client, task.round(0).shares_deadline)
    receipt = coordinator.advance(operator, task.task_id)

    # Assert
    (closed,) = events(coordinator, "SharesPhaseClosed", receipt)
    assert closed["setups"] == 3
    assert task.round(0).status == RoundStatus.UPDATE
    late = task.members[3]
    assert revert(lambda: coordinator.commit_setup(late, task.task_id, 0, setup_digest(0, 3))) == (
        "FLCoordinatorSharesPhaseClosed",
        {"taskId": task.task_id, "round": 0},
    )


def test_too_few_setups_fail_the_round_and_the_next_starts(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Fewer than minContributors setups: RoundFailed(TooFewSetups), round 1 opens in SHARES."""
    # Prepare
    task = secure_task(coordinator, operator, accounts[1:5])
    commit_setups(task, 0, task.members[:2])
    pass_deadline(chain, client, task.round(0).shares_deadline)

    # Execute
    receipt = coordinator.advance(operator, task.task_id)

    # Assert
    now = block_timestamp(client, receipt)
    assert events(coordinator, "RoundFailed", receipt) == [
        {"taskId": task.task_id, "round": 0, "reason": FailureReason.TOO_FEW_SETUPS}
    ]
    (started,) = events(coordinator, "RoundStarted", receipt)
    assert (started["round"], started["updateDeadline"]) == (1, now + SHARES_DURATION)
    assert (task.round(0).status, task.round(1).status) == (RoundStatus.FAILED, RoundStatus.SHARES)
    commit_setups(task, 1, task.members)
    assert task.round(1).status == RoundStatus.UPDATE


def test_removing_the_last_silent_member_closes_the_shares_phase(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """The shares phase no longer waits for a removed member."""
    task = secure_task(coordinator, operator, accounts[1:5])
    commit_setups(task, 0, task.members[:3])
    receipt = coordinator.remove_participant(operator, task.task_id, task.members[3].address)
    assert [e["setups"] for e in events(coordinator, "SharesPhaseClosed", receipt)] == [3]


# -- update phase ---------------------------------------------------------------------------------


def test_only_key_set_members_commit_updates(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A member without a setup in this round cannot commit a (masked) update; updates wait for the phase."""
    # Prepare
    task = secure_task(coordinator, operator, accounts[1:5])
    early = task.members[0]
    assert revert(lambda: commit_updates(chain, client, task, 0, [early]))[0] == "FLCoordinatorUpdatePhaseClosed"
    commit_setups(task, 0, task.members[:3])
    pass_deadline(chain, client, task.round(0).shares_deadline)
    coordinator.advance(operator, task.task_id)
    outsider = task.members[3]

    # Execute, Assert
    assert revert(lambda: commit_updates(chain, client, task, 0, [outsider])) == (
        "FLCoordinatorNotInKeySet",
        {"taskId": task.task_id, "round": 0, "account": outsider.address},
    )
    commit_updates(chain, client, task, 0, task.members[:3])  # the key set completes the phase without the outsider
    assert task.round(0).status == RoundStatus.UNMASK


def test_update_phase_closes_when_the_key_set_committed_and_unmask_opens(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """The last key-set update freezes U2: UnmaskPhaseStarted with the check and reveal windows; the
    assignment is drawn from the freezing block already."""
    # Prepare
    task = secure_task(coordinator, operator, accounts[1:5])
    commit_setups(task, 0, task.members)

    # Execute
    receipts = commit_updates(chain, client, task, 0, task.members)

    # Assert
    now = block_timestamp(client, receipts[-1])
    samples = sum(update_samples(i) for i in range(4))
    assert events(coordinator, "UnmaskPhaseStarted", receipts[-1]) == [
        {
            "taskId": task.task_id,
            "round": 0,
            "contributors": 4,
            "totalSamples": samples,
            "revealStart": now + UNMASK_DURATION,
            "unmaskDeadline": now + 2 * UNMASK_DURATION,
        }
    ]
    assert events(coordinator, "UpdatePhaseClosed", receipts[-1]) == []
    info = task.round(0)
    assert (info.status, info.contributors, info.reveal_start, info.unmask_deadline) == (
        RoundStatus.UNMASK,
        4,
        now + UNMASK_DURATION,
        now + 2 * UNMASK_DURATION,
    )
    assert info.frozen and info.aggregation_deadline == now + 2 * UNMASK_DURATION + task.config.aggregation_duration
    draw_assignment(task, 0)
    assert sum(len(task.assigned(0, m)) for m in task.members) == task.config.partitions * task.config.replication


# -- key check window -----------------------------------------------------------------------------


def closed_shares(
    coordinator: Coordinator, operator: LocalAccount, members: Sequence[LocalAccount], **overrides: Any
) -> Task:
    """Round 0 with every member in U1: the update phase's key check window is open."""
    task = secure_task(coordinator, operator, members, **overrides)
    commit_setups(task, 0, task.members)
    assert task.round(0).status == RoundStatus.UPDATE
    return task


def report_setups(task: Task, member: LocalAccount, reporters: Sequence[LocalAccount]) -> list[dict[str, Any]]:
    return [task.coordinator.report_setup(r, task.task_id, 0, member.address) for r in reporters]


def test_updates_wait_for_the_key_check_window(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """The key set is final only after the key check window: an update before it reverts, after it counts."""
    task = closed_shares(coordinator, operator, accounts[1:5])
    member = task.members[0]
    assert revert(
        lambda: coordinator.commit_update(member, task.task_id, 0, update_digest(0, 0), update_samples(0))
    ) == ("FLCoordinatorKeySetNotFinal", {"taskId": task.task_id, "round": 0})
    commit_updates(chain, client, task, 0, task.members)
    assert task.round(0).status == RoundStatus.UNMASK


def test_a_key_set_majority_excludes_a_setup_and_its_member_commits_no_update(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Four of seven report a setup (t = 2, so |U1| - t = 5 would take more): the majority excludes it,
    SetupExcluded, the member leaves U1 (no update, not waited for)."""
    # Prepare
    secure = SecureAggregationConfig(threshold=2, shares_duration=SHARES_DURATION, unmask_duration=UNMASK_DURATION)
    task = closed_shares(coordinator, operator, accounts[1:8], secure_aggregation=secure, min_contributors=2)
    target = task.members[6]

    # Execute
    receipts = report_setups(task, target, task.members[:4])

    # Assert
    assert [e["reports"] for r in receipts for e in events(coordinator, "SetupReported", r)] == [1, 2, 3, 4]
    assert [events(coordinator, "SetupExcluded", r) for r in receipts[:3]] == [[], [], []]
    assert events(coordinator, "SetupExcluded", receipts[3]) == [
        {"taskId": task.task_id, "round": 0, "member": target.address}
    ]
    assert coordinator.find_setup_exclusions(task.task_id, 0) == [target.address]
    assert not coordinator.get_secure_member(task.task_id, 0, target.address).in_key_set
    pass_key_check(chain, client, task, 0)
    assert revert(lambda: commit_updates(chain, client, task, 0, [target])) == (
        "FLCoordinatorNotInKeySet",
        {"taskId": task.task_id, "round": 0, "account": target.address},
    )
    commit_updates(chain, client, task, 0, task.members[:6])  # the phase ends without waiting for it
    assert task.round(0).status == RoundStatus.UNMASK


def test_reports_from_all_but_t_members_exclude_a_setup_too_few_could_rebuild(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """|U1| = 5, t = 3: two reports leave only two other holders of its shares (< t), so it is excluded
    although two is no majority; one report is not enough."""
    task = closed_shares(coordinator, operator, accounts[1:6])
    target = task.members[4]
    first = report_setups(task, target, task.members[:1])
    assert events(coordinator, "SetupExcluded", first[0]) == []
    second = report_setups(task, target, task.members[1:2])
    assert [e["member"] for e in events(coordinator, "SetupExcluded", second[0])] == [target.address]


def test_setup_exclusions_below_min_contributors_fail_the_round(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """|U1| = t = minContributors = 3: one report excludes (nobody else could rebuild the member's
    secrets), two members are left, the round fails with TooFewSetups and the next one starts."""
    task = closed_shares(coordinator, operator, accounts[1:4])
    receipt = report_setups(task, task.members[2], task.members[:1])[0]
    assert [e["reason"] for e in events(coordinator, "RoundFailed", receipt)] == [FailureReason.TOO_FEW_SETUPS]
    assert task.round(1).status == RoundStatus.SHARES


def test_attack_setup_reports_outside_the_rules_are_refused(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Only key-set members report, about another key-set member, once, and only in the key check window."""
    task = secure_task(coordinator, operator, accounts[1:7])  # |U1| = 5: one report excludes nobody
    a, b, c, d, e, outsider = task.members
    assert revert(lambda: report_setups(task, b, [a])) == (
        "FLCoordinatorReportWindowClosed",
        {"taskId": task.task_id, "round": 0},
    )  # the shares phase: the key set is not even frozen
    commit_setups(task, 0, [a, b, c, d, e])
    pass_deadline(chain, client, task.round(0).shares_deadline)
    coordinator.advance(operator, task.task_id)
    assert revert(lambda: report_setups(task, b, [outsider]))[0] == "FLCoordinatorNotInKeySet"
    assert revert(lambda: report_setups(task, outsider, [a])) == (
        "FLCoordinatorNotInKeySet",
        {"taskId": task.task_id, "round": 0, "account": outsider.address},
    )
    assert revert(lambda: report_setups(task, a, [a])) == (
        "FLCoordinatorSelfReport",
        {"taskId": task.task_id, "account": a.address},
    )
    report_setups(task, b, [a])
    assert revert(lambda: report_setups(task, b, [a])) == (
        "FLCoordinatorAlreadyReported",
        {"taskId": task.task_id, "round": 0, "contributor": b.address, "reporter": a.address},
    )
    pass_key_check(chain, client, task, 0)
    assert revert(lambda: report_setups(task, b, [c])) == (
        "FLCoordinatorReportWindowClosed",
        {"taskId": task.task_id, "round": 0},
    )
    assert coordinator.get_secure_member(task.task_id, 0, b.address).in_key_set  # one report of five excluded nothing


def test_attack_an_excluded_member_cannot_vote_its_way_back(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Once out of U1, a member can neither report others' setups nor be reported again."""
    task = closed_shares(coordinator, operator, accounts[1:6])
    target = task.members[4]
    report_setups(task, target, task.members[:2])
    assert revert(lambda: report_setups(task, task.members[0], [target]))[0] == "FLCoordinatorNotInKeySet"
    assert revert(lambda: report_setups(task, target, task.members[2:3]))[0] == "FLCoordinatorNotInKeySet"


# -- unmask phase ---------------------------------------------------------------------------------


def test_reveals_close_the_unmask_phase_when_every_contributor_revealed(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """All of U2 reveal: UnmaskPhaseClosed, AGGREGATION until now + aggregationDuration; the round then
    finalizes as without secure aggregation and the next one opens in SHARES."""
    # Prepare
    task = unmasking_task(coordinator, chain, client, operator, accounts[1:5])

    # Execute
    receipts = commit_reveals(task, 0, task.members)

    # Assert
    assert [events(coordinator, "RevealCommitted", r) for r in receipts] == [
        [{"taskId": task.task_id, "round": 0, "member": m.address, "digest": reveal_digest(0, i), "reveals": i + 1}]
        for i, m in enumerate(task.members)
    ]
    now = block_timestamp(client, receipts[-1])
    aggregation_deadline = now + task.config.aggregation_duration
    assert events(coordinator, "UnmaskPhaseClosed", receipts[-1]) == [
        {"taskId": task.task_id, "round": 0, "reveals": 4, "aggregationDeadline": aggregation_deadline}
    ]
    info = task.round(0)
    assert (info.status, info.reveals, info.aggregation_deadline) == (
        RoundStatus.AGGREGATION,
        4,
        aggregation_deadline,
    )
    draw_assignment(task, 0)
    commit_until_final(task, 0, task.members)
    assert (task.round(0).status, task.round(1).status) == (RoundStatus.FINALIZED, RoundStatus.SHARES)


def test_unmask_phase_closes_at_its_deadline_with_threshold_reveals(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """t of four contributors reveal: advance after the unmask deadline opens aggregation."""
    # Prepare
    task = unmasking_task(coordinator, chain, client, operator, accounts[1:5])
    commit_reveals(task, 0, task.members[:THRESHOLD])
    assert revert(lambda: coordinator.advance(operator, task.task_id))[0] == "FLCoordinatorNothingToAdvance"

    # Execute
    pass_deadline(chain, client, task.round(0).unmask_deadline)
    receipt = coordinator.advance(operator, task.task_id)

    # Assert
    assert [e["reveals"] for e in events(coordinator, "UnmaskPhaseClosed", receipt)] == [THRESHOLD]
    assert task.round(0).status == RoundStatus.AGGREGATION


def test_fewer_than_threshold_reveals_fail_the_round_and_the_next_starts(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """|U3| < t: RoundFailed(TooFewReveals); round 1 opens in SHARES and runs."""
    # Prepare
    task = unmasking_task(coordinator, chain, client, operator, accounts[1:5])
    commit_reveals(task, 0, task.members[: THRESHOLD - 1])
    pass_deadline(chain, client, task.round(0).unmask_deadline)

    # Execute
    receipt = coordinator.advance(operator, task.task_id)

    # Assert
    assert events(coordinator, "RoundFailed", receipt) == [
        {"taskId": task.task_id, "round": 0, "reason": FailureReason.TOO_FEW_REVEALS}
    ]
    assert events(coordinator, "UnmaskPhaseClosed", receipt) == []
    assert [e["round"] for e in events(coordinator, "RoundStarted", receipt)] == [1]
    assert (task.round(0).failure, task.round(1).status) == (FailureReason.TOO_FEW_REVEALS, RoundStatus.SHARES)
    assert coordinator.get_task(task.task_id)[1].current_round == 1


def test_reveals_are_refused_in_the_check_window(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Until the check window ends (exclusions may still come) nobody reveals."""
    task = secure_task(coordinator, operator, accounts[1:5])
    commit_setups(task, 0, task.members)
    commit_updates(chain, client, task, 0, task.members)
    assert revert(lambda: commit_reveals(task, 0, task.members[:1])) == (
        "FLCoordinatorRevealWindowClosed",
        {"taskId": task.task_id, "round": 0},
    )


def test_exclusion_in_the_check_window_treats_the_contributor_as_dropped(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A contributor majority excludes an unavailable update before reveals open; the excluded member
    cannot reveal, and the others' reveals complete the phase without it."""
    # Prepare: five contributors, the last withholds its update blobs.
    task = secure_task(coordinator, operator, accounts[1:6])
    commit_setups(task, 0, task.members)
    commit_updates(chain, client, task, 0, task.members)
    withholder = task.members[4]

    # Execute
    for reporter in task.members[:3]:
        receipt = coordinator.report_unavailable(reporter, task.task_id, 0, withholder.address)

    # Assert
    assert events(coordinator, "ContributionExcluded", receipt) == [
        {"taskId": task.task_id, "round": 0, "contributor": withholder.address}
    ]
    assert coordinator.get_secure_member(task.task_id, 0, withholder.address).excluded
    pass_deadline(chain, client, task.round(0).reveal_start)
    assert revert(lambda: commit_reveals(task, 0, [withholder])) == (
        "FLCoordinatorNotAContributor",
        {"taskId": task.task_id, "round": 0, "account": withholder.address},
    )
    receipts = commit_reveals(task, 0, task.members[:4])
    assert [e["reveals"] for e in events(coordinator, "UnmaskPhaseClosed", receipts[-1])] == [4]


def test_exclusion_below_min_contributors_fails_the_secure_round(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Excluding in the check window below minContributors (>= t) fails the round as without secure aggregation."""
    task = secure_task(coordinator, operator, accounts[1:4])
    commit_setups(task, 0, task.members)
    commit_updates(chain, client, task, 0, task.members)
    coordinator.report_unavailable(task.members[0], task.task_id, 0, task.members[2].address)
    receipt = coordinator.report_unavailable(task.members[1], task.task_id, 0, task.members[2].address)
    assert [e["reason"] for e in events(coordinator, "RoundFailed", receipt)] == [FailureReason.TOO_FEW_CONTRIBUTORS]
    assert task.round(1).status == RoundStatus.SHARES


def test_cancel_fails_a_secure_round_in_shares_or_unmask(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    for finish_updates in (False, True):
        task = secure_task(coordinator, operator, accounts[1:4])
        if finish_updates:
            commit_setups(task, 0, task.members)
            commit_updates(chain, client, task, 0, task.members)
        receipt = coordinator.cancel_task(operator, task.task_id)
        assert [e["reason"] for e in events(coordinator, "RoundFailed", receipt)] == [FailureReason.TASK_CANCELLED]


def test_plain_tasks_refuse_setups_and_reveals(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    task_id = coordinator.create_task(operator, task_config())
    coordinator.admit(operator, [accounts[1].address, accounts[2].address])
    coordinator.join(accounts[1], task_id, [multiaddr(1)])
    coordinator.join(accounts[2], task_id, [multiaddr(2)])
    coordinator.start_task(operator, task_id)
    for call in (coordinator.commit_setup, coordinator.commit_reveal):
        assert revert(lambda call=call: call(accounts[1], task_id, 0, digest("x"))) == (
            "FLCoordinatorNotSecureTask",
            {"taskId": task_id},
        )


# -- views ----------------------------------------------------------------------------------------


def test_views_record_key_set_contributors_and_revealers(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """getSecureMember and the events say who is in U1, U2 and U3 with which digests, so anyone can
    check that a reveal blob holds the right kind of share for each member."""
    # Prepare: four members in U1, three contribute (U2), two of those plus... reveal (U3).
    task = unmasking_task(coordinator, chain, client, operator, accounts[1:5], contributors=3)
    commit_reveals(task, 0, task.members[:2])

    # Assert
    members = [coordinator.get_secure_member(task.task_id, 0, m.address) for m in task.members]
    assert [(m.in_key_set, m.contributed, m.excluded, m.revealed) for m in members] == [
        (True, True, False, True),
        (True, True, False, True),
        (True, True, False, False),
        (True, False, False, False),
    ]
    assert [m.setup_digest for m in members] == [setup_digest(0, i) for i in range(4)]
    assert [m.reveal_digest for m in members] == [reveal_digest(0, 0), reveal_digest(0, 1), None, None]
    assert [(c.member, c.index, c.digest) for c in coordinator.find_setup_commits(task.task_id, 0)] == [
        (m.address, i, setup_digest(0, i)) for i, m in enumerate(task.members)
    ]
    assert [(c.member, c.digest, c.reveals) for c in coordinator.find_reveal_commits(task.task_id, 0)] == [
        (task.members[0].address, reveal_digest(0, 0), 1),
        (task.members[1].address, reveal_digest(0, 1), 2),
    ]
    info = task.round(0)
    assert (info.setups, info.contributors, info.reveals) == (4, 3, 2)
    outsider = coordinator.get_secure_member(task.task_id, 0, accounts[9].address)
    assert (outsider.in_key_set, outsider.setup_digest) == (False, None)


# -- attacks --------------------------------------------------------------------------------------


def test_attack_setup_committed_twice_is_refused(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A member cannot replace its setup (other members already built on its shares) nor count twice."""
    task = secure_task(coordinator, operator, accounts[1:5])
    member = task.members[0]
    commit_setups(task, 0, [member])
    assert revert(lambda: coordinator.commit_setup(member, task.task_id, 0, digest("other"))) == (
        "FLCoordinatorSetupAlreadyCommitted",
        {"taskId": task.task_id, "round": 0, "account": member.address},
    )
    assert task.round(0).setups == 1


def test_attack_reveal_committed_twice_is_refused(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A contributor cannot swap its reveal for another nor count twice towards t."""
    task = unmasking_task(coordinator, chain, client, operator, accounts[1:5])
    member = task.members[0]
    commit_reveals(task, 0, [member])
    assert revert(lambda: coordinator.commit_reveal(member, task.task_id, 0, digest("other"))) == (
        "FLCoordinatorRevealAlreadyCommitted",
        {"taskId": task.task_id, "round": 0, "account": member.address},
    )
    assert task.round(0).reveals == 1


def test_attack_reveal_after_the_unmask_deadline_is_refused(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A late reveal cannot land, neither before advance nor after it."""
    task = unmasking_task(coordinator, chain, client, operator, accounts[1:5])
    commit_reveals(task, 0, task.members[:THRESHOLD])
    pass_deadline(chain, client, task.round(0).unmask_deadline)
    late = task.members[3]
    for _ in range(2):
        assert revert(lambda: commit_reveals(task, 0, [late])) == (
            "FLCoordinatorRevealWindowClosed",
            {"taskId": task.task_id, "round": 0},
        )
        if task.round(0).status == RoundStatus.UNMASK:
            coordinator.advance(operator, task.task_id)
    assert task.round(0).reveals == THRESHOLD


def test_attack_non_contributor_cannot_reveal(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A key-set member that did not contribute, and an account outside the task, cannot reveal."""
    task = unmasking_task(coordinator, chain, client, operator, accounts[1:5], contributors=3)
    dropped = task.members[3]
    assert revert(lambda: commit_reveals(task, 0, [dropped])) == (
        "FLCoordinatorNotAContributor",
        {"taskId": task.task_id, "round": 0, "account": dropped.address},
    )
    stranger = accounts[9]
    assert revert(lambda: coordinator.commit_reveal(stranger, task.task_id, 0, digest("x")))[0] == (
        "FLCoordinatorNotAdmitted"
    )
    coordinator.admit(operator, [stranger.address])
    assert revert(lambda: coordinator.commit_reveal(stranger, task.task_id, 0, digest("x"))) == (
        "FLCoordinatorNotJoined",
        {"taskId": task.task_id, "account": stranger.address},
    )


def test_attack_account_outside_the_task_cannot_commit_a_setup(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    task = secure_task(coordinator, operator, accounts[1:4])
    stranger = accounts[9]
    assert revert(lambda: coordinator.commit_setup(stranger, task.task_id, 0, digest("x"))) == (
        "FLCoordinatorNotJoined",
        {"taskId": task.task_id, "account": stranger.address},
    )
    coordinator.revoke(operator, task.members[0].address)
    assert revert(lambda: coordinator.commit_setup(task.members[0], task.task_id, 0, digest("x"))) == (
        "FLCoordinatorNotAdmitted",
        {"taskId": task.task_id, "account": task.members[0].address},
    )
    assert task.round(0).setups == 0


def test_attack_exclusion_after_reveals_opened_is_refused(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Excluding a contributor once its self-mask shares may be public would let a coalition obtain its
    key shares too (both secrets: its update in the clear). Reports close with the check window, also in
    the fallback phase."""
    # Prepare
    task = unmasking_task(coordinator, chain, client, operator, accounts[1:5])
    victim = task.members[3]

    # Execute, Assert: in the reveal window
    assert revert(lambda: coordinator.report_unavailable(task.members[0], task.task_id, 0, victim.address)) == (
        "FLCoordinatorReportWindowClosed",
        {"taskId": task.task_id, "round": 0},
    )
    # and in the fallback phase
    commit_reveals(task, 0, task.members)
    pass_deadline(chain, client, task.round(0).aggregation_deadline)
    assert revert(lambda: coordinator.report_unavailable(task.members[0], task.task_id, 0, victim.address))[0] == (
        "FLCoordinatorReportWindowClosed"
    )
    assert coordinator.get_excluded(task.task_id, 0) == []


def test_attack_coalition_withholding_reveals_only_fails_the_round(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Three of five contributors withhold their reveals (|U3| = 2 < t = 3): the round fails at the
    unmask deadline and the next round runs to finalization with the honest members alone... as long
    as they are at least minContributors: nothing is stuck."""
    # Prepare
    task = unmasking_task(coordinator, chain, client, operator, accounts[1:6])
    honest, coalition = task.members[:2], task.members[2:]
    commit_reveals(task, 0, honest)

    # Execute
    pass_deadline(chain, client, task.round(0).unmask_deadline)
    coordinator.advance(operator, task.task_id)

    # Assert
    assert task.round(0).failure == FailureReason.TOO_FEW_REVEALS
    # Round 1: the coalition takes part until unmasking, then withholds again; the round fails again.
    commit_setups(task, 1, task.members)
    commit_updates(chain, client, task, 1, task.members)
    pass_deadline(chain, client, task.round(1).reveal_start)
    commit_reveals(task, 1, honest)
    pass_deadline(chain, client, task.round(1).unmask_deadline)
    coordinator.advance(operator, task.task_id)
    assert task.round(1).failure == FailureReason.TOO_FEW_REVEALS
    # Round 2: one coalition member gives in; t reveals suffice and the round finalizes.
    commit_setups(task, 2, task.members)
    commit_updates(chain, client, task, 2, task.members)
    pass_deadline(chain, client, task.round(2).reveal_start)
    commit_reveals(task, 2, [*honest, coalition[0]])
    pass_deadline(chain, client, task.round(2).unmask_deadline)
    coordinator.advance(operator, task.task_id)
    draw_assignment(task, 2)
    commit_until_final(task, 2, task.members)
    assert task.round(2).status == RoundStatus.FINALIZED


def test_attack_stalled_member_never_blocks_the_phases(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A member that sends nothing at all: the shares phase ends at its deadline, then every later phase
    ends by completion without it (it is in neither U1 nor U2), and the round finalizes."""
    # Prepare
    task = secure_task(coordinator, operator, accounts[1:5])
    active, stalled = task.members[:3], task.members[3]

    # Execute
    commit_setups(task, 0, active)
    pass_deadline(chain, client, task.round(0).shares_deadline)
    coordinator.advance(operator, task.task_id)
    commit_updates(chain, client, task, 0, active)
    assert task.round(0).status == RoundStatus.UNMASK
    pass_deadline(chain, client, task.round(0).reveal_start)
    commit_reveals(task, 0, active)
    draw_assignment(task, 0)
    commit_until_final(task, 0, active)

    # Assert
    assert task.round(0).status == RoundStatus.FINALIZED
    assert not coordinator.get_secure_member(task.task_id, 0, stalled.address).in_key_set


def test_attack_key_set_member_withholding_its_update_only_delays_the_update_phase(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A member that commits a setup and then no update holds the update phase open only until its
    deadline; it is then a dropped member of U1 \\ U2 and the round unmasks without it."""
    task = secure_task(coordinator, operator, accounts[1:5])
    commit_setups(task, 0, task.members)
    commit_updates(chain, client, task, 0, task.members[:3])
    assert task.round(0).status == RoundStatus.UPDATE
    pass_deadline(chain, client, task.round(0).update_deadline)
    receipt = coordinator.advance(operator, task.task_id)
    assert [e["contributors"] for e in events(coordinator, "UnmaskPhaseStarted", receipt)] == [3]
    pass_deadline(chain, client, task.round(0).reveal_start)
    commit_reveals(task, 0, task.members[:3])
    assert task.round(0).status == RoundStatus.AGGREGATION
