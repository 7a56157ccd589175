"""Peers find each other through the chain: the multiaddrs participants registered when joining."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fl_chain.chain.coordinator import Coordinator
from fl_chain.errors import StorageError
from fl_chain.storage.base import Storage

log = logging.getLogger(__name__)


def connect_to_participants(
    storage: Storage, coordinator: Coordinator, task_id: int, accounts: Iterable[str]
) -> dict[str, bool]:
    """Connect ``storage`` to the registered peers of ``accounts`` in ``task_id``.

    Returns, per account, whether at least one of its multiaddrs connected. An unreachable peer is
    not an error here: fetching its blobs will fail on its timeout, the same way for every node.
    """
    wanted = {a.lower() for a in accounts}
    connected: dict[str, bool] = {}
    for participant in coordinator.get_participants(task_id):
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
