"""An in-process content-addressed store: kubo's CIDs without kubo, for tests and big simulations.

Peers live in a :class:`MemoryNetwork`; like bitswap, a get only reaches peers this one is
connected to, through the same multiaddrs the chain records (``/memory/<peer id>/p2p/<peer id>``).
"""

from __future__ import annotations

import itertools
import threading

from fl_chain.errors import BlobNotFoundError, BlobTooLargeError, StorageError
from fl_chain.protocol.cid import cid_from_digest, normalize_cid
from fl_chain.protocol.unixfs import unixfs_digest
from fl_chain.storage.base import Storage, too_large_message


class MemoryNetwork:
    """The set of in-process peers that can connect to each other."""

    def __init__(self) -> None:
        self._peers: dict[str, MemoryStorage] = {}
        self._ids = itertools.count()
        self.lock = threading.Lock()

    def register(self, peer: MemoryStorage) -> str:
        with self.lock:
            peer_id = f"mem{next(self._ids):05d}"
            self._peers[peer_id] = peer
            return peer_id

    def unregister(self, peer_id: str) -> None:
        with self.lock:
            self._peers.pop(peer_id, None)

    def peer(self, peer_id: str) -> MemoryStorage | None:
        with self.lock:
            return self._peers.get(peer_id)


class MemoryStorage(Storage):
    """One in-process peer of a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork | None = None) -> None:
        self.network = network or MemoryNetwork()
        self._blobs: dict[str, bytes] = {}
        self._connected: set[str] = set()
        self._peer_id = self.network.register(self)
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def multiaddrs(self) -> list[str]:
        return [f"/memory/{self._peer_id}/p2p/{self._peer_id}"]

    def put(self, data: bytes) -> str:
        cid = cid_from_digest(unixfs_digest(data))
        self._blobs[cid] = bytes(data)
        return cid

    def _fetch(self, cid: str, timeout: float, max_size: int | None) -> bytes:
        local = self._blobs.get(cid)
        if local is not None:
            return local
        for peer_id in sorted(self._connected):
            peer = self.network.peer(peer_id)
            if peer is not None and cid in peer._blobs:
                data = peer._blobs[cid]
                if max_size is not None and len(data) > max_size:  # refused before anything is copied
                    raise BlobTooLargeError(too_large_message(cid, max_size))
                peer.bytes_sent += len(data)
                self.bytes_received += len(data)
                self._blobs[cid] = data
                return data
        raise BlobNotFoundError(f"no connected peer has {cid} (memory network, timeout {timeout:.0f} s)")

    def pin(self, cid: str) -> None:
        if normalize_cid(cid) not in self._blobs:
            raise BlobNotFoundError(f"cannot pin {cid}: not stored on this peer")

    def connect(self, multiaddr: str) -> None:
        parts = multiaddr.strip("/").split("/")
        if len(parts) < 4 or parts[0] != "memory" or parts[-2] != "p2p":
            raise StorageError(f"{multiaddr!r} is not a memory multiaddr (/memory/<id>/p2p/<id>)")
        peer_id = parts[-1]
        peer = self.network.peer(peer_id)
        if peer is None:
            raise BlobNotFoundError(f"no memory peer {peer_id} to connect to")
        if peer_id != self._peer_id:
            self._connected.add(peer_id)
            peer._connected.add(self._peer_id)

    def close(self) -> None:
        self.network.unregister(self._peer_id)
        for peer_id in list(self._connected):
            peer = self.network.peer(peer_id)
            if peer is not None:
                peer._connected.discard(self._peer_id)
        self._connected.clear()
