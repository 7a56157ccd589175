"""FLCoordinator contract: the operator role, admission lists, task creation and unknown tasks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from fl_chain.chain import Coordinator, TaskStatus
from fl_chain.errors import ContractRevertError
from tests.conftest import digest, multiaddr, task_config
from tests.helpers.contracts import ZERO_ADDRESS, ZERO_DIGEST, events

# -- operator role ----------------------------------------------------------------------------------


def test_deploy_emits_operator_transferred_from_zero_to_deployer(coordinator: Coordinator, operator: LocalAccount):
    """The constructor makes the deployer operator and says so in an event."""
    # Execute
    (event,) = coordinator.find_events("OperatorTransferred")

    # Assert
    assert event["args"]["previousOperator"] == ZERO_ADDRESS
    assert event["args"]["newOperator"] == operator.address
    assert coordinator.operator() == operator.address


def test_transfer_operator_only_offers_the_role(coordinator: Coordinator, accounts: list[LocalAccount]):
    """transferOperator emits OperatorTransferStarted and records the pending operator; the role
    stays with the old operator, and the new account cannot use it yet."""
    # Prepare
    old, new = accounts[0], accounts[1]

    # Execute
    receipt = coordinator.transfer_operator(old, new.address)

    # Assert
    assert events(coordinator, "OperatorTransferStarted", receipt) == [
        {"previousOperator": old.address, "newOperator": new.address}
    ]
    assert events(coordinator, "OperatorTransferred", receipt) == []
    assert (coordinator.operator(), coordinator.pending_operator()) == (old.address, new.address)
    with pytest.raises(ContractRevertError) as exc:
        coordinator.create_task(new, task_config())
    assert exc.value.name == "FLCoordinatorUnauthorizedOperator"
    assert coordinator.create_task(old, task_config()) == 1


def test_accept_operator_hands_role_to_new_account(coordinator: Coordinator, accounts: list[LocalAccount]):
    """acceptOperator by the pending account emits OperatorTransferred and the new operator can create tasks."""
    # Prepare
    old, new = accounts[0], accounts[1]
    coordinator.transfer_operator(old, new.address)

    # Execute
    receipt = coordinator.accept_operator(new)

    # Assert
    assert events(coordinator, "OperatorTransferred", receipt) == [
        {"previousOperator": old.address, "newOperator": new.address}
    ]
    assert (coordinator.operator(), coordinator.pending_operator()) == (new.address, None)
    assert coordinator.create_task(new, task_config()) == 1


def test_previous_operator_reverts_with_unauthorized_operator_after_transfer(
    coordinator: Coordinator, accounts: list[LocalAccount]
):
    """After a completed transfer the old operator is an ordinary account."""
    # Prepare
    old, new = accounts[0], accounts[1]
    coordinator.transfer_operator(old, new.address)
    coordinator.accept_operator(new)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.admit(old, [accounts[2].address])

    # Assert
    assert exc.value.name == "FLCoordinatorUnauthorizedOperator"
    assert exc.value.arguments == {"account": old.address}


def test_accept_operator_by_other_account_reverts_with_not_pending_operator(
    coordinator: Coordinator, accounts: list[LocalAccount]
):
    """Only the offered account takes the role: not another one, not the operator itself, and not
    an account whose offer was replaced by a later transferOperator."""
    # Prepare: the offer to accounts[1] is replaced by one to accounts[2].
    old = accounts[0]
    coordinator.transfer_operator(old, accounts[1].address)
    coordinator.transfer_operator(old, accounts[2].address)

    # Execute
    failures = []
    for account in (accounts[1], accounts[3], old):
        with pytest.raises(ContractRevertError) as exc:
            coordinator.accept_operator(account)
        failures.append((exc.value.name, exc.value.arguments))

    # Assert
    assert failures == [
        ("FLCoordinatorNotPendingOperator", {"account": a.address}) for a in (accounts[1], accounts[3], old)
    ]
    assert (coordinator.operator(), coordinator.pending_operator()) == (old.address, accounts[2].address)


def test_accept_operator_twice_reverts_with_not_pending_operator(
    coordinator: Coordinator, accounts: list[LocalAccount]
):
    """An accepted offer is used up."""
    # Prepare
    new = accounts[1]
    coordinator.transfer_operator(accounts[0], new.address)
    coordinator.accept_operator(new)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.accept_operator(new)

    # Assert
    assert exc.value.name == "FLCoordinatorNotPendingOperator"
    assert exc.value.arguments == {"account": new.address}
    assert coordinator.operator() == new.address


def test_accept_operator_without_offer_reverts_with_not_pending_operator(
    coordinator: Coordinator, accounts: list[LocalAccount]
):
    """With no offer there is no pending operator (the zero address cannot send a transaction)."""
    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.accept_operator(accounts[1])

    # Assert
    assert exc.value.name == "FLCoordinatorNotPendingOperator"
    assert coordinator.pending_operator() is None


def test_transfer_operator_to_zero_address_reverts_with_invalid_operator(
    coordinator: Coordinator, operator: LocalAccount
):
    """The operator role cannot be thrown away."""
    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.transfer_operator(operator, ZERO_ADDRESS)

    # Assert
    assert exc.value.name == "FLCoordinatorInvalidOperator"
    assert exc.value.arguments == {"operator": ZERO_ADDRESS}
    assert (coordinator.operator(), coordinator.pending_operator()) == (operator.address, None)


OPERATOR_CALLS: dict[str, Callable[[Coordinator, LocalAccount, list[LocalAccount]], Any]] = {
    "transferOperator": lambda c, sender, a: c.transfer_operator(sender, a[5].address),
    "admit": lambda c, sender, a: c.admit(sender, [a[5].address]),
    "revoke": lambda c, sender, a: c.revoke(sender, a[4].address),
    "createTask": lambda c, sender, a: c.create_task(sender, task_config()),
    "startTask": lambda c, sender, a: c.start_task(sender, 1),
    "cancelTask": lambda c, sender, a: c.cancel_task(sender, 1),
}


@pytest.mark.parametrize("function", list(OPERATOR_CALLS))
def test_operator_function_called_by_other_account_reverts_with_unauthorized_operator(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount], function: str
):
    """Every operator-only function rejects any other sender, naming it."""
    # Prepare: task 1 exists (the operator could cancel it) and accounts[4] is admitted (could be revoked).
    intruder = accounts[3]
    coordinator.create_task(operator, task_config())
    coordinator.admit(operator, [accounts[4].address])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        OPERATOR_CALLS[function](coordinator, intruder, accounts)

    # Assert
    assert exc.value.name == "FLCoordinatorUnauthorizedOperator"
    assert exc.value.arguments == {"account": intruder.address}


# -- admission list ---------------------------------------------------------------------------------


def test_admit_emits_participant_admitted_once_per_new_account(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Admitting an already admitted account is skipped silently."""
    # Prepare
    a, b, c = accounts[1], accounts[2], accounts[3]
    coordinator.admit(operator, [a.address, b.address])

    # Execute
    receipt = coordinator.admit(operator, [b.address, c.address])

    # Assert
    assert events(coordinator, "ParticipantAdmitted", receipt) == [{"account": c.address}]
    assert [coordinator.is_admitted(x.address) for x in (a, b, c, accounts[4])] == [True, True, True, False]


def test_revoke_emits_participant_revoked_and_clears_admission(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Revoking an admitted account removes it from the admission list."""
    # Prepare
    coordinator.admit(operator, [accounts[1].address, accounts[2].address])

    # Execute
    receipt = coordinator.revoke(operator, accounts[1].address)

    # Assert
    assert events(coordinator, "ParticipantRevoked", receipt) == [{"account": accounts[1].address}]
    assert not coordinator.is_admitted(accounts[1].address)
    assert coordinator.is_admitted(accounts[2].address)


def test_revoke_of_account_never_admitted_emits_nothing(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Revoking an account that is not admitted is a no-op."""
    # Execute
    receipt = coordinator.revoke(operator, accounts[1].address)

    # Assert
    assert events(coordinator, "ParticipantRevoked", receipt) == []
    assert not coordinator.is_admitted(accounts[1].address)


# -- task creation ----------------------------------------------------------------------------------


def test_create_task_emits_task_created_with_config(coordinator: Coordinator, operator: LocalAccount):
    """createTask stores the configuration, opens the task and emits it in TaskCreated."""
    # Prepare
    config = task_config(
        manifest_digest=digest("manifest"),
        partitions=5,
        replication=3,
        quorum=2,
        min_contributors=3,
        update_duration=111,
        aggregation_duration=222,
        rounds=7,
        max_participants=44,
        max_samples=5555,
        open_admission=True,
    )

    # Execute
    task_id = coordinator.create_task(operator, config)

    # Assert
    assert task_id == 1
    assert [dict(e["args"]) for e in coordinator.find_events("TaskCreated")] == [
        {
            "taskId": 1,
            "creator": operator.address,
            "config": {
                "manifestDigest": digest("manifest"),
                "partitions": 5,
                "replication": 3,
                "quorum": 2,
                "minContributors": 3,
                "updateDuration": 111,
                "aggregationDuration": 222,
                "rounds": 7,
                "maxParticipants": 44,
                "maxSamples": 5555,
                "openAdmission": True,
            },
        }
    ]
    stored, state = coordinator.get_task(task_id)
    assert stored == config
    assert (state.status, state.participant_count, state.finalized_rounds, state.creator) == (
        TaskStatus.OPEN,
        0,
        0,
        operator.address,
    )


def test_task_ids_count_up_from_one(coordinator: Coordinator, operator: LocalAccount):
    """Task ids start at 1 and taskCount follows them."""
    # Execute
    ids = [coordinator.create_task(operator, task_config()) for _ in range(2)]

    # Assert
    assert ids == [1, 2]
    assert coordinator.task_count() == 2


INVALID_CONFIGS = [
    pytest.param({"manifest_digest": ZERO_DIGEST}, "FLCoordinatorZeroDigest", {}, id="zero-manifest"),
    pytest.param({"partitions": 0}, "FLCoordinatorInvalidPartitions", {"partitions": 0}, id="no-partitions"),
    pytest.param(
        {"replication": 0, "quorum": 0, "min_contributors": 0},
        "FLCoordinatorInvalidReplication",
        {"replication": 0},
        id="replication-0",
    ),
    pytest.param(
        {"replication": 65, "quorum": 33, "min_contributors": 33},
        "FLCoordinatorInvalidReplication",
        {"replication": 65},
        id="replication-65",
    ),
    pytest.param({"quorum": 0}, "FLCoordinatorInvalidQuorum", {"quorum": 0, "replication": 2}, id="quorum-0"),
    pytest.param(
        {"quorum": 3, "min_contributors": 3},
        "FLCoordinatorInvalidQuorum",
        {"quorum": 3, "replication": 2},
        id="quorum-above-replication",
    ),
    pytest.param(
        {"replication": 4, "quorum": 2},
        "FLCoordinatorInvalidQuorum",
        {"quorum": 2, "replication": 4},
        id="quorum-half-replication",
    ),
    pytest.param(
        {"min_contributors": 1},
        "FLCoordinatorInvalidMinContributors",
        {"minContributors": 1, "quorum": 2},
        id="min-contributors-below-quorum",
    ),
    pytest.param(
        {"update_duration": 0},
        "FLCoordinatorInvalidDuration",
        {"updateDuration": 0, "aggregationDuration": 600},
        id="update-duration-0",
    ),
    pytest.param(
        {"aggregation_duration": 0},
        "FLCoordinatorInvalidDuration",
        {"updateDuration": 600, "aggregationDuration": 0},
        id="aggregation-duration-0",
    ),
    pytest.param({"rounds": 0}, "FLCoordinatorInvalidRounds", {"rounds": 0}, id="no-rounds"),
    pytest.param(
        {"max_participants": 1},
        "FLCoordinatorInvalidMaxParticipants",
        {"maxParticipants": 1, "minContributors": 2},
        id="max-participants-below-min-contributors",
    ),
    pytest.param(
        {"max_participants": 100_001},
        "FLCoordinatorInvalidMaxParticipants",
        {"maxParticipants": 100_001, "minContributors": 2},
        id="max-participants-above-100000",
    ),
    pytest.param({"max_samples": 0}, "FLCoordinatorInvalidMaxSamples", {}, id="max-samples-0"),
]


@pytest.mark.parametrize(("overrides", "error", "arguments"), INVALID_CONFIGS)
def test_create_task_with_invalid_config_reverts(
    coordinator: Coordinator, operator: LocalAccount, overrides: dict[str, Any], error: str, arguments: dict[str, Any]
):
    """Each invalid configuration field is rejected with its own error and the offending values."""
    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.create_task(operator, task_config(**overrides))

    # Assert
    assert exc.value.name == error
    assert exc.value.arguments == arguments
    assert coordinator.task_count() == 0


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"replication": 64, "quorum": 33, "min_contributors": 33}, id="max-replication-min-quorum"),
        pytest.param(
            {
                "partitions": 1,
                "replication": 1,
                "quorum": 1,
                "min_contributors": 1,
                "update_duration": 1,
                "aggregation_duration": 1,
                "rounds": 1,
                "max_participants": 1,
                "max_samples": 1,
            },
            id="all-minimal",
        ),
        pytest.param({"max_participants": 100_000, "max_samples": 2**64 - 1}, id="max-participants-and-samples"),
        pytest.param({"max_participants": 2, "min_contributors": 2}, id="max-participants-equal-min-contributors"),
    ],
)
def test_create_task_accepts_boundary_config(
    coordinator: Coordinator, operator: LocalAccount, overrides: dict[str, Any]
):
    """The validation bounds are inclusive: r = 64 with q = 33, every minimum of 1, maxParticipants
    from minContributors to 100,000, maxSamples up to the uint64 maximum."""
    # Execute
    task_id = coordinator.create_task(operator, task_config(**overrides))

    # Assert
    assert coordinator.get_task(task_id)[0] == task_config(**overrides)


# -- unknown tasks --------------------------------------------------------------------------------

UNKNOWN_TASK = 7
UNKNOWN_TASK_CALLS: dict[str, Callable[[Coordinator, list[LocalAccount]], Any]] = {
    "getTask": lambda c, a: c.get_task(UNKNOWN_TASK),
    "getRound": lambda c, a: c.get_round(UNKNOWN_TASK, 0),
    "getParticipants": lambda c, a: c.get_participants(UNKNOWN_TASK),
    "getExcluded": lambda c, a: c.get_excluded(UNKNOWN_TASK, 0),
    "isAssigned": lambda c, a: c.is_assigned(UNKNOWN_TASK, 0, 0, a[1].address),
    "getFinalDigests": lambda c, a: c.get_final_digests(UNKNOWN_TASK, 0),
    "getAssignedPartitions": lambda c, a: c.get_assigned_partitions(UNKNOWN_TASK, 0, a[1].address),
    "join": lambda c, a: c.join(a[1], UNKNOWN_TASK, [multiaddr(1)]),
    "startTask": lambda c, a: c.start_task(a[0], UNKNOWN_TASK),
    "cancelTask": lambda c, a: c.cancel_task(a[0], UNKNOWN_TASK),
    "commitUpdate": lambda c, a: c.commit_update(a[1], UNKNOWN_TASK, 0, digest("u"), 1),
    "commitAggregate": lambda c, a: c.commit_aggregate(a[1], UNKNOWN_TASK, 0, 0, digest("a")),
    "commitAggregates": lambda c, a: c.commit_aggregates(a[1], UNKNOWN_TASK, 0, [0], [digest("a")]),
    "drawAssignment": lambda c, a: c.draw_assignment(a[1], UNKNOWN_TASK, 0),
    "reportUnavailable": lambda c, a: c.report_unavailable(a[1], UNKNOWN_TASK, 0, a[2].address),
    "disputeRound": lambda c, a: c.dispute_round(a[1], UNKNOWN_TASK, 0),
    "removeParticipant": lambda c, a: c.remove_participant(a[0], UNKNOWN_TASK, a[1].address),
    "advance": lambda c, a: c.advance(a[1], UNKNOWN_TASK),
    "commitSetup": lambda c, a: c.commit_setup(a[1], UNKNOWN_TASK, 0, digest("s")),
    "commitReveal": lambda c, a: c.commit_reveal(a[1], UNKNOWN_TASK, 0, digest("r")),
    "getSecureMember": lambda c, a: c.get_secure_member(UNKNOWN_TASK, 0, a[1].address),
}


@pytest.mark.parametrize("function", list(UNKNOWN_TASK_CALLS))
def test_call_naming_unknown_task_reverts_with_unknown_task(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount], function: str
):
    """Functions taking a task id reject ids that were never created."""
    # Prepare: task 1 exists, so only the id is wrong.
    coordinator.create_task(operator, task_config())

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        UNKNOWN_TASK_CALLS[function](coordinator, accounts)

    # Assert
    assert exc.value.name == "FLCoordinatorUnknownTask"
    assert exc.value.arguments == {"taskId": UNKNOWN_TASK}
