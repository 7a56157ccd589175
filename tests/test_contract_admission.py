"""FLCoordinator contract: joining tasks, peer addresses, starting and cancelling tasks."""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from fl_chain.chain import ChainClient, Coordinator, FailureReason, RoundStatus, TaskStatus
from fl_chain.errors import ContractRevertError
from tests.conftest import multiaddr, task_config
from tests.contract_helpers import (
    block_timestamp,
    commit_updates,
    events,
    expected_seed,
    open_task,
    running_task,
    update_digest,
)

# -- join -----------------------------------------------------------------------------------------


def test_join_emits_participant_joined_and_registers_peer(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """join records the multiaddrs and public key and counts the participant."""
    # Prepare
    member = accounts[1]
    task_id = coordinator.create_task(operator, task_config())
    coordinator.admit(operator, [member.address])
    addresses = [multiaddr(1), "/ip6/::1/tcp/4001/p2p/12D3KooWOther"]

    # Execute
    receipt = coordinator.join(member, task_id, addresses, b"\x02" * 33)

    # Assert
    assert events(coordinator, "ParticipantJoined", receipt) == [
        {"taskId": task_id, "account": member.address, "multiaddrs": addresses}
    ]
    (participant,) = coordinator.get_participants(task_id)
    assert (participant.account, participant.multiaddrs, participant.public_key, participant.update_round) == (
        member.address, tuple(addresses), b"\x02" * 33, 0
    )
    assert coordinator.has_joined(task_id, member.address)
    assert coordinator.get_task(task_id)[1].participant_count == 1


def test_join_by_account_not_admitted_reverts_with_not_admitted(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Without open admission only admitted accounts may join."""
    # Prepare
    outsider = accounts[1]
    task_id = coordinator.create_task(operator, task_config())

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.join(outsider, task_id, [multiaddr(1)])

    # Assert
    assert exc.value.name == "FLCoordinatorNotAdmitted"
    assert exc.value.arguments == {"taskId": task_id, "account": outsider.address}
    assert not coordinator.has_joined(task_id, outsider.address)


def test_open_admission_task_lets_account_not_admitted_join_and_commit(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """With open admission an account never admitted joins and commits an update."""
    # Prepare
    outsiders = accounts[1:3]
    task = running_task(coordinator, operator, outsiders, open_admission=True)

    # Execute
    (receipt,) = commit_updates(task, 0, outsiders[:1])

    # Assert
    assert not coordinator.is_admitted(outsiders[0].address)
    assert [coordinator.has_joined(task.task_id, o.address) for o in outsiders] == [True, True]
    assert [e["contributor"] for e in events(coordinator, "UpdateCommitted", receipt)] == [outsiders[0].address]


def test_join_twice_reverts_with_already_joined(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An account joins a task at most once."""
    # Prepare
    task = open_task(coordinator, operator, accounts[1:2])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.join(accounts[1], task.task_id, [multiaddr(9)])

    # Assert
    assert exc.value.name == "FLCoordinatorAlreadyJoined"
    assert exc.value.arguments == {"taskId": task.task_id, "account": accounts[1].address}
    assert coordinator.get_task(task.task_id)[1].participant_count == 1


def test_join_without_multiaddrs_reverts_with_no_multiaddrs(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A participant must be reachable: at least one multiaddr."""
    # Prepare
    task_id = coordinator.create_task(operator, task_config())
    coordinator.admit(operator, [accounts[1].address])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.join(accounts[1], task_id, [])

    # Assert
    assert exc.value.name == "FLCoordinatorNoMultiaddrs"
    assert exc.value.arguments == {}


def test_join_running_task_adds_participant(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Participants may join after the task started."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3])
    late = accounts[3]
    coordinator.admit(operator, [late.address])

    # Execute
    coordinator.join(late, task.task_id, [multiaddr(3)])

    # Assert
    assert coordinator.get_task(task.task_id)[1].participant_count == 3
    assert [p.account for p in coordinator.get_participants(task.task_id)] == [a.address for a in accounts[1:4]]


def test_join_cancelled_task_reverts_with_wrong_task_status(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A cancelled task takes no new participants."""
    # Prepare
    task_id = coordinator.create_task(operator, task_config())
    coordinator.admit(operator, [accounts[1].address])
    coordinator.cancel_task(operator, task_id)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.join(accounts[1], task_id, [multiaddr(1)])

    # Assert
    assert exc.value.name == "FLCoordinatorWrongTaskStatus"
    assert exc.value.arguments == {"taskId": task_id, "status": TaskStatus.CANCELLED}


# -- updatePeer -----------------------------------------------------------------------------------


def test_update_peer_replaces_multiaddrs_and_emits_peer_updated(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """updatePeer swaps the registered multiaddrs of the caller only."""
    # Prepare
    task = open_task(coordinator, operator, accounts[1:3])
    moved = ["/ip4/10.0.0.5/tcp/4101/p2p/12D3KooWMoved"]

    # Execute
    receipt = coordinator.update_peer(accounts[1], task.task_id, moved)

    # Assert
    assert events(coordinator, "PeerUpdated", receipt) == [
        {"taskId": task.task_id, "account": accounts[1].address, "multiaddrs": moved}
    ]
    assert [p.multiaddrs for p in coordinator.get_participants(task.task_id)] == [tuple(moved), (multiaddr(1),)]


def test_update_peer_by_non_participant_reverts_with_not_joined(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Only participants have peer addresses to update."""
    # Prepare
    task = open_task(coordinator, operator, accounts[1:2])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.update_peer(accounts[2], task.task_id, [multiaddr(2)])

    # Assert
    assert exc.value.name == "FLCoordinatorNotJoined"
    assert exc.value.arguments == {"taskId": task.task_id, "account": accounts[2].address}


def test_update_peer_without_multiaddrs_reverts_with_no_multiaddrs(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A participant cannot clear its addresses."""
    # Prepare
    task = open_task(coordinator, operator, accounts[1:2])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.update_peer(accounts[1], task.task_id, [])

    # Assert
    assert exc.value.name == "FLCoordinatorNoMultiaddrs"
    assert coordinator.get_participants(task.task_id)[0].multiaddrs == (multiaddr(0),)


# -- startTask ------------------------------------------------------------------------------------


def test_start_task_emits_task_started_and_round_started(
    coordinator: Coordinator, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """startTask runs the task and opens round 0 with its seed and update deadline."""
    # Prepare
    task = open_task(coordinator, operator, accounts[1:3], update_duration=321)

    # Execute
    receipt = coordinator.start_task(operator, task.task_id)

    # Assert
    now = block_timestamp(client, receipt)
    seed = expected_seed(client, coordinator, receipt, task.task_id, 0)
    assert events(coordinator, "TaskStarted", receipt) == [{"taskId": task.task_id}]
    assert events(coordinator, "RoundStarted", receipt) == [
        {"taskId": task.task_id, "round": 0, "seed": seed, "updateDeadline": now + 321}
    ]
    info = task.round(0)
    assert (info.status, info.start_time, info.update_deadline, info.seed) == (RoundStatus.UPDATE, now, now + 321, seed)
    assert (info.aggregation_deadline, info.fallback_deadline) == (0, 0)
    state = coordinator.get_task(task.task_id)[1]
    assert (state.status, state.current_round) == (TaskStatus.RUNNING, 0)


def test_start_task_with_too_few_participants_reverts_with_not_enough_participants(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A task needs minContributors participants before it starts."""
    # Prepare
    task = open_task(coordinator, operator, accounts[1:3], replication=3, quorum=2, min_contributors=3)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.start_task(operator, task.task_id)

    # Assert
    assert exc.value.name == "FLCoordinatorNotEnoughParticipants"
    assert exc.value.arguments == {"taskId": task.task_id, "joined": 2, "required": 3}


def test_start_task_twice_reverts_with_wrong_task_status(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A running task cannot be started again (which would restart round 0)."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.start_task(operator, task.task_id)

    # Assert
    assert exc.value.name == "FLCoordinatorWrongTaskStatus"
    assert exc.value.arguments == {"taskId": task.task_id, "status": TaskStatus.RUNNING}


# -- admission during rounds ------------------------------------------------------------------------


def test_commit_update_by_revoked_participant_reverts_with_not_admitted(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Revoking a participant stops its commits in tasks without open admission."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3])
    coordinator.revoke(operator, accounts[1].address)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        commit_updates(task, 0, accounts[1:2])

    # Assert
    assert exc.value.name == "FLCoordinatorNotAdmitted"
    assert exc.value.arguments == {"taskId": task.task_id, "account": accounts[1].address}


def test_commit_update_by_revoked_participant_of_open_task_succeeds(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Revocation does not matter where admission is open."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3], open_admission=True)
    coordinator.admit(operator, [accounts[1].address])
    coordinator.revoke(operator, accounts[1].address)

    # Execute
    (receipt,) = commit_updates(task, 0, accounts[1:2])

    # Assert
    assert events(coordinator, "UpdateCommitted", receipt)[0]["digest"] == update_digest(0, 0)


# -- cancelTask -----------------------------------------------------------------------------------


def test_cancel_open_task_emits_task_cancelled_without_round_failed(
    coordinator: Coordinator, operator: LocalAccount
):
    """Cancelling a task that never started fails no round."""
    # Prepare
    task_id = coordinator.create_task(operator, task_config())

    # Execute
    receipt = coordinator.cancel_task(operator, task_id)

    # Assert
    assert events(coordinator, "TaskCancelled", receipt) == [{"taskId": task_id}]
    assert events(coordinator, "RoundFailed", receipt) == []
    assert coordinator.get_task(task_id)[1].status == TaskStatus.CANCELLED


def test_cancel_running_task_fails_current_round(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """cancelTask fails the running round with TaskCancelled and starts no next round."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3])

    # Execute
    receipt = coordinator.cancel_task(operator, task.task_id)

    # Assert
    assert events(coordinator, "RoundFailed", receipt) == [
        {"taskId": task.task_id, "round": 0, "reason": FailureReason.TASK_CANCELLED}
    ]
    assert events(coordinator, "TaskCancelled", receipt) == [{"taskId": task.task_id}]
    assert events(coordinator, "RoundStarted", receipt) == []
    info = task.round(0)
    assert (info.status, info.failure) == (RoundStatus.FAILED, FailureReason.TASK_CANCELLED)
    state = coordinator.get_task(task.task_id)[1]
    assert (state.status, state.current_round) == (TaskStatus.CANCELLED, 0)


def test_commit_update_to_cancelled_task_reverts_with_wrong_task_status(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """After cancellation no commit is accepted."""
    # Prepare
    task = running_task(coordinator, operator, accounts[1:3])
    coordinator.cancel_task(operator, task.task_id)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        commit_updates(task, 0, accounts[1:2])

    # Assert
    assert exc.value.name == "FLCoordinatorWrongTaskStatus"
    assert exc.value.arguments == {"taskId": task.task_id, "status": TaskStatus.CANCELLED}


def test_cancel_cancelled_task_reverts_with_wrong_task_status(coordinator: Coordinator, operator: LocalAccount):
    """A task is cancelled once."""
    # Prepare
    task_id = coordinator.create_task(operator, task_config())
    coordinator.cancel_task(operator, task_id)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.cancel_task(operator, task_id)

    # Assert
    assert exc.value.name == "FLCoordinatorWrongTaskStatus"
    assert exc.value.arguments == {"taskId": task_id, "status": TaskStatus.CANCELLED}
