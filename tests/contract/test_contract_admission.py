"""FLCoordinator contract: joining tasks, peer addresses, starting and cancelling tasks."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from fl_chain.chain import ChainClient, Coordinator, FailureReason, RoundStatus, TaskStatus
from fl_chain.chain import coordinator as coordinator_module
from fl_chain.errors import ContractRevertError
from tests.conftest import CONTRACT_RULES_BACKEND, multiaddr, task_config
from tests.helpers.contracts import (
    block_timestamp,
    commit_updates,
    events,
    expected_seed,
    open_task,
    running_task,
    update_digest,
)

pytestmark = pytest.mark.chain_backends(CONTRACT_RULES_BACKEND)

#: The contract's registration bounds (MAX_MULTIADDRS, MAX_MULTIADDR_LENGTH, MAX_PUBLIC_KEY_LENGTH).
MAX_MULTIADDRS = 4
MAX_MULTIADDR_LENGTH = 256
MAX_PUBLIC_KEY_LENGTH = 64


def sized_multiaddr(i: int, length: int) -> str:
    """A multiaddr of participant ``i`` padded to exactly ``length`` bytes."""
    base = multiaddr(i)
    return base + "x" * (length - len(base))


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
        member.address,
        tuple(addresses),
        b"\x02" * 33,
        0,
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


def test_join_without_multiaddrs_reverts_with_invalid_multiaddrs(
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
    assert exc.value.name == "FLCoordinatorInvalidMultiaddrs"
    assert exc.value.arguments == {"count": 0}
    assert not coordinator.has_joined(task_id, accounts[1].address)


OVERSIZED_REGISTRATIONS = [
    pytest.param(
        [multiaddr(i) for i in range(MAX_MULTIADDRS + 1)],
        b"",
        "FLCoordinatorInvalidMultiaddrs",
        {"count": MAX_MULTIADDRS + 1},
        id="five-multiaddrs",
    ),
    pytest.param(
        [multiaddr(1), sized_multiaddr(2, MAX_MULTIADDR_LENGTH + 1)],
        b"",
        "FLCoordinatorMultiaddrTooLong",
        {"index": 1, "length": MAX_MULTIADDR_LENGTH + 1},
        id="multiaddr-257-bytes",
    ),
    pytest.param(
        [multiaddr(1)],
        b"\x02" * (MAX_PUBLIC_KEY_LENGTH + 1),
        "FLCoordinatorPublicKeyTooLong",
        {"length": MAX_PUBLIC_KEY_LENGTH + 1},
        id="public-key-65-bytes",
    ),
]


@pytest.mark.parametrize(("addresses", "public_key", "error", "arguments"), OVERSIZED_REGISTRATIONS)
def test_join_with_oversized_registration_reverts(
    coordinator: Coordinator,
    operator: LocalAccount,
    accounts: list[LocalAccount],
    addresses: list[str],
    public_key: bytes,
    error: str,
    arguments: dict[str, Any],
):
    """Registrations are bounded (every node reads them all): 1..4 multiaddrs of at most 256 bytes,
    a public key of at most 64 bytes."""
    # Prepare
    task_id = coordinator.create_task(operator, task_config())
    coordinator.admit(operator, [accounts[1].address])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.join(accounts[1], task_id, addresses, public_key)

    # Assert
    assert exc.value.name == error
    assert exc.value.arguments == arguments
    assert coordinator.get_task(task_id)[1].participant_count == 0


def test_join_with_largest_registration_succeeds(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """The bounds are inclusive: four multiaddrs of 256 bytes and a 64-byte key are stored as given."""
    # Prepare
    task_id = coordinator.create_task(operator, task_config())
    coordinator.admit(operator, [accounts[1].address])
    addresses = [sized_multiaddr(i, MAX_MULTIADDR_LENGTH) for i in range(MAX_MULTIADDRS)]
    key = bytes(range(MAX_PUBLIC_KEY_LENGTH))

    # Execute
    coordinator.join(accounts[1], task_id, addresses, key)

    # Assert
    (participant,) = coordinator.get_participants(task_id)
    assert (participant.multiaddrs, participant.public_key) == (tuple(addresses), key)
    assert all(len(a.encode()) == MAX_MULTIADDR_LENGTH for a in participant.multiaddrs)


def test_join_beyond_max_participants_reverts_with_task_full(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """maxParticipants bounds the participant list, in an open task as in a running one."""
    # Prepare
    task = open_task(coordinator, operator, accounts[1:4], max_participants=3, min_contributors=2)
    coordinator.admit(operator, [accounts[4].address])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.join(accounts[4], task.task_id, [multiaddr(4)])

    # Assert
    assert exc.value.name == "FLCoordinatorTaskFull"
    assert exc.value.arguments == {"taskId": task.task_id, "maxParticipants": 3}
    assert coordinator.get_task(task.task_id)[1].participant_count == 3
    assert not coordinator.has_joined(task.task_id, accounts[4].address)


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


def test_update_peer_without_multiaddrs_reverts_with_invalid_multiaddrs(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A participant cannot clear its addresses."""
    # Prepare
    task = open_task(coordinator, operator, accounts[1:2])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.update_peer(accounts[1], task.task_id, [])

    # Assert
    assert exc.value.name == "FLCoordinatorInvalidMultiaddrs"
    assert exc.value.arguments == {"count": 0}
    assert coordinator.get_participants(task.task_id)[0].multiaddrs == (multiaddr(0),)


@pytest.mark.parametrize(
    ("addresses", "error", "arguments"),
    [
        pytest.param(
            [multiaddr(i) for i in range(MAX_MULTIADDRS + 1)],
            "FLCoordinatorInvalidMultiaddrs",
            {"count": MAX_MULTIADDRS + 1},
            id="five-multiaddrs",
        ),
        pytest.param(
            [sized_multiaddr(2, MAX_MULTIADDR_LENGTH + 1)],
            "FLCoordinatorMultiaddrTooLong",
            {"index": 0, "length": MAX_MULTIADDR_LENGTH + 1},
            id="multiaddr-257-bytes",
        ),
    ],
)
def test_update_peer_with_oversized_multiaddrs_reverts(
    coordinator: Coordinator,
    operator: LocalAccount,
    accounts: list[LocalAccount],
    addresses: list[str],
    error: str,
    arguments: dict[str, Any],
):
    """updatePeer keeps the bounds of join: the old addresses stay."""
    # Prepare
    task = open_task(coordinator, operator, accounts[1:2])

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.update_peer(accounts[1], task.task_id, addresses)

    # Assert
    assert exc.value.name == error
    assert exc.value.arguments == arguments
    assert coordinator.get_participants(task.task_id)[0].multiaddrs == (multiaddr(0),)


# -- participant pages and removal ----------------------------------------------------------------


def test_get_participants_pages_through_every_participant(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount], monkeypatch: pytest.MonkeyPatch
):
    """getParticipants(start, count) answers a bounded page; Coordinator.get_participants reads pages
    until a short one, also when the count is a multiple of the page size."""
    # Prepare
    members = accounts[1:7]
    task = open_task(coordinator, operator, members)
    page = coordinator.contract.functions.getParticipants

    # Execute
    pages = {
        (start, count): [p[0] for p in coordinator.client.call(page(task.task_id, start, count))]
        for start, count in ((0, 2), (4, 5), (6, 1), (9, 3), (2, 0))
    }
    paged = {}
    for size in (1, 3, 4, 6, 200):
        monkeypatch.setattr(coordinator_module, "PARTICIPANT_PAGE", size)
        paged[size] = [p.account for p in coordinator.get_participants(task.task_id)]

    # Assert
    addresses = [m.address for m in members]
    assert pages == {(0, 2): addresses[:2], (4, 5): addresses[4:], (6, 1): [], (9, 3): [], (2, 0): []}
    assert paged == {size: addresses for size in (1, 3, 4, 6, 200)}


def test_operator_removes_a_participant_and_the_last_one_takes_its_place(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """removeParticipant frees the slot (swap with the last participant) and forgets the registration."""
    # Prepare
    members = accounts[1:5]
    task = open_task(coordinator, operator, members, max_participants=4)

    # Execute
    receipt = coordinator.remove_participant(operator, task.task_id, members[1].address)

    # Assert
    assert events(coordinator, "ParticipantRemoved", receipt) == [
        {"taskId": task.task_id, "account": members[1].address}
    ]
    assert [p.account for p in coordinator.get_participants(task.task_id)] == [
        members[0].address,
        members[3].address,
        members[2].address,
    ]
    assert not coordinator.has_joined(task.task_id, members[1].address)
    assert coordinator.get_task(task.task_id)[1].participant_count == 3
    # The freed slot takes a new participant; then the task is full again, also for the removed one.
    coordinator.admit(operator, [accounts[5].address])
    coordinator.join(accounts[5], task.task_id, [multiaddr(5)])
    with pytest.raises(ContractRevertError) as full:
        coordinator.join(members[1], task.task_id, [multiaddr(1)])
    assert full.value.name == "FLCoordinatorTaskFull"


def test_anyone_removes_a_revoked_participant_but_not_an_admitted_one(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """In a task without open admission, revocation lets any account end the membership; an
    admitted participant can only be removed by the operator."""
    # Prepare
    members = accounts[1:4]
    task = open_task(coordinator, operator, members)
    coordinator.revoke(operator, members[0].address)
    stranger = accounts[9]

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.remove_participant(stranger, task.task_id, members[1].address)
    receipt = coordinator.remove_participant(stranger, task.task_id, members[0].address)

    # Assert
    assert exc.value.name == "FLCoordinatorStillAdmitted"
    assert exc.value.arguments == {"taskId": task.task_id, "account": members[1].address}
    assert [e["account"] for e in events(coordinator, "ParticipantRemoved", receipt)] == [members[0].address]
    assert [p.account for p in coordinator.get_participants(task.task_id)] == [members[2].address, members[1].address]


def test_revoked_participant_of_open_task_is_removed_only_by_the_operator(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """With open admission revocation does not end a membership, so others may not remove it."""
    # Prepare
    members = accounts[1:3]
    task = open_task(coordinator, operator, members, open_admission=True)
    coordinator.admit(operator, [members[0].address])
    coordinator.revoke(operator, members[0].address)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.remove_participant(members[1], task.task_id, members[0].address)

    # Assert
    assert exc.value.name == "FLCoordinatorStillAdmitted"
    assert exc.value.arguments == {"taskId": task.task_id, "account": members[0].address}
    coordinator.remove_participant(operator, task.task_id, members[0].address)
    assert not coordinator.has_joined(task.task_id, members[0].address)


def test_remove_participant_not_joined_reverts_with_not_joined(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Only a joined participant can be removed (twice is once too many)."""
    # Prepare
    task = open_task(coordinator, operator, accounts[1:3])
    coordinator.remove_participant(operator, task.task_id, accounts[1].address)

    # Execute
    with pytest.raises(ContractRevertError) as exc:
        coordinator.remove_participant(operator, task.task_id, accounts[1].address)

    # Assert
    assert exc.value.name == "FLCoordinatorNotJoined"
    assert exc.value.arguments == {"taskId": task.task_id, "account": accounts[1].address}
    assert coordinator.get_task(task.task_id)[1].participant_count == 1


def test_removing_the_last_silent_participant_freezes_the_update_phase(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """The update phase waits for every joined participant; removing the only one that has not
    committed freezes the set at once, and the removed one's absence does not count."""
    # Prepare
    members = accounts[1:5]
    task = running_task(coordinator, operator, members)
    commit_updates(task, 0, members[:3])

    # Execute
    receipt = coordinator.remove_participant(operator, task.task_id, members[3].address)

    # Assert
    assert [(e["round"], e["contributors"]) for e in events(coordinator, "UpdatePhaseClosed", receipt)] == [(0, 3)]
    assert (task.round(0).status, task.round(0).contributors) == (RoundStatus.AGGREGATION, 3)


def test_removing_a_contributor_keeps_its_update_and_the_phase_waits_for_the_others(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An update already committed stays in the round; the phase still waits for the silent member."""
    # Prepare
    members = accounts[1:5]
    task = running_task(coordinator, operator, members)
    commit_updates(task, 0, members[:2])

    # Execute
    receipt = coordinator.remove_participant(operator, task.task_id, members[0].address)
    (closing,) = commit_updates(task, 0, members[2:3])
    still_open = task.round(0).status
    (freeze,) = commit_updates(task, 0, members[3:])

    # Assert
    assert events(coordinator, "UpdatePhaseClosed", receipt) == []
    assert events(coordinator, "UpdatePhaseClosed", closing) == []
    assert still_open == RoundStatus.UPDATE
    assert [e["contributors"] for e in events(coordinator, "UpdatePhaseClosed", freeze)] == [4]
    assert task.round(0).contributors == 4
    assert [p.account for p in coordinator.get_participants(task.task_id)] == [
        members[3].address,
        members[1].address,
        members[2].address,
    ]


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


def test_cancel_open_task_emits_task_cancelled_without_round_failed(coordinator: Coordinator, operator: LocalAccount):
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
