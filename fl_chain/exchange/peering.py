"""Peers find each other through the chain: the multiaddrs participants registered when joining."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Sequence

from fl_chain.chain.coordinator import Coordinator, ParticipantInfo
from fl_chain.errors import StorageError
from fl_chain.storage.base import Storage

log = logging.getLogger(__name__)

#: Events that are emitted whenever a participant's registered multiaddrs change.
PEER_EVENTS = ("ParticipantJoined", "PeerUpdated")


class PeerDirectory:
    """The registered participants of one task, read again from the chain only after a peer change.

    Accounts and multiaddrs change only through ``join`` and ``updatePeer``, and each emits an event
    (:data:`PEER_EVENTS`). A read notes the latest block number before calling ``getParticipants``;
    the next read looks for either event after that block and returns the previous list when there
    is none, so the accounts and multiaddrs returned are always those a fresh read would give (a
    change in the very block of the previous read only causes one more read). The other fields
    (``update_round``, ``index``, ``samples``) are those of the last read: use this for peer
    addresses only.
    """

    def __init__(self, coordinator: Coordinator, task_id: int) -> None:
        self.coordinator = coordinator
        self.task_id = task_id
        self._participants: list[ParticipantInfo] | None = None
        self._read_at = -1

    @classmethod
    def shared(cls, coordinator: Coordinator, task_id: int) -> PeerDirectory:
        """The directory of ``task_id`` shared by everyone using this ``coordinator`` object.

        Nodes simulated in one process share one coordinator, so the participants are read once
        for all of them, not once per node; the answers are those of a directory of one's own.
        """
        directories = _SHARED.setdefault(coordinator, {})
        if task_id not in directories:
            directories[task_id] = cls(coordinator, task_id)
        return directories[task_id]

    def participants(self) -> list[ParticipantInfo]:
        """Every participant of the task with its current multiaddrs, in join order."""
        latest = self.coordinator.client.block_number()
        if self._participants is not None and not self._changed(latest):
            return self._participants
        self._participants = self.coordinator.get_participants(self.task_id)
        self._read_at = latest
        return self._participants

    def _changed(self, latest: int) -> bool:
        if latest <= self._read_at:
            return False
        return any(
            self.coordinator.find_events(name, from_block=self._read_at + 1, to_block=latest, taskId=self.task_id)
            for name in PEER_EVENTS
        )


_SHARED: weakref.WeakKeyDictionary[Coordinator, dict[int, PeerDirectory]] = weakref.WeakKeyDictionary()


def connect_to_participants(
    storage: Storage,
    coordinator: Coordinator,
    task_id: int,
    accounts: Iterable[str],
    *,
    participants: Sequence[ParticipantInfo] | None = None,
) -> dict[str, bool]:
    """Connect ``storage`` to the registered peers of ``accounts`` in ``task_id``.

    ``participants`` are the task's registered participants when the caller has just read them
    (by default they are read from the chain here).

    Returns, per account, whether at least one of its multiaddrs connected. An unreachable peer is
    not an error here: fetching its blobs will fail on its timeout, the same way for every node.
    """
    wanted = {a.lower() for a in accounts}
    connected: dict[str, bool] = {}
    registered = coordinator.get_participants(task_id) if participants is None else participants
    for participant in registered:
        if participant.account.lower() not in wanted:
            continue
        ok = False
        for multiaddr in participant.multiaddrs:
            if multiaddr.endswith(f"/p2p/{storage.peer_id}"):
                ok = True  # ourselves
                break
            try:
                storage.connect(multiaddr)
                ok = True
                break
            except StorageError as exc:
                log.warning("cannot connect to %s of %s: %s", multiaddr, participant.account, exc)
        connected[participant.account] = ok
    return connected
