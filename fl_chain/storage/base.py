"""The storage interface every backend implements: content-addressed bytes between peers."""

from __future__ import annotations

from abc import ABC, abstractmethod

from fl_chain.errors import BlobIntegrityError
from fl_chain.storage.cid import digest_from_cid, normalize_cid
from fl_chain.storage.unixfs import unixfs_digest

#: Seconds a get waits for a CID before it fails with BlobNotFoundError.
DEFAULT_GET_TIMEOUT = 30.0


class Storage(ABC):
    """A content-addressed store that is also a peer: put, get with a timeout, pin, connect.

    CIDs are CIDv1 dag-pb sha2-256 strings (see :mod:`fl_chain.storage.cid`); every backend gives
    the same CID for the same bytes, the one ``ipfs add`` gives.
    """

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store ``data`` (pinned) and return its CID."""

    @abstractmethod
    def _fetch(self, cid: str, timeout: float) -> bytes:
        """Backend fetch: the bytes of ``cid`` or BlobNotFoundError after ``timeout`` seconds."""

    def get(self, cid: str, *, timeout: float = DEFAULT_GET_TIMEOUT) -> bytes:
        """The bytes of ``cid``, verified against it.

        Raises
        ------
        BlobNotFoundError
            No connected peer delivered it within ``timeout`` seconds.
        BlobIntegrityError
            The bytes do not hash to ``cid`` (never returned).
        """
        cid = normalize_cid(cid)
        data = self._fetch(cid, timeout)
        if unixfs_digest(data) != digest_from_cid(cid):
            raise BlobIntegrityError(f"content received for {cid} does not hash to it")
        return data

    @abstractmethod
    def pin(self, cid: str) -> None:
        """Keep ``cid`` (already present locally) from garbage collection."""

    @abstractmethod
    def connect(self, multiaddr: str) -> None:
        """Connect to the peer at ``multiaddr`` (with its ``/p2p/`` id)."""

    @property
    @abstractmethod
    def peer_id(self) -> str:
        """This peer's id."""

    @abstractmethod
    def multiaddrs(self) -> list[str]:
        """Addresses other peers dial to reach this one, each ending in ``/p2p/<peer id>``."""

    def close(self) -> None:
        """Stop the peer and release its resources."""

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
