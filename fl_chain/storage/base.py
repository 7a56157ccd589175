"""The storage interface every backend implements: content-addressed bytes between peers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

from fl_chain.errors import BlobIntegrityError, BlobTooLargeError
from fl_chain.protocol.cid import digest_from_cid, normalize_cid
from fl_chain.protocol.unixfs import unixfs_digest

#: Seconds a get waits for a CID before it fails with BlobNotFoundError.
DEFAULT_GET_TIMEOUT = 30.0


def too_large_message(cid: str, max_size: int) -> str:
    """The message of the BlobTooLargeError of ``cid`` over ``max_size`` bytes."""
    return f"{cid} holds more than the {max_size} bytes its use allows"


class Storage(ABC):
    """A content-addressed store that is also a peer: put, get with a timeout, pin, connect.

    CIDs are CIDv1 dag-pb sha2-256 strings (see :mod:`fl_chain.protocol.cid`); every backend gives
    the same CID for the same bytes, the one ``ipfs add`` gives.
    """

    #: How many gets callers may run at once (:mod:`fl_chain.storage.concurrent`): 1 for stores
    #: whose gets do not wait on a network; network peers raise it.
    parallel_gets: int = 1

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store ``data`` (pinned) and return its CID."""

    @abstractmethod
    def _fetch(self, cid: str, timeout: float, max_size: int | None) -> bytes:
        """Backend fetch: the bytes of ``cid``, BlobNotFoundError after ``timeout`` seconds, or
        BlobTooLargeError as soon as more than ``max_size`` bytes arrive (never reading past that)."""

    def get(self, cid: str, *, timeout: float = DEFAULT_GET_TIMEOUT, max_size: int | None = None) -> bytes:
        """The bytes of ``cid``, verified against it.

        ``max_size`` is the largest content the caller can use: larger content is invalid (the same
        for every node, since ``cid`` fixes the bytes) and is not read further than the bound.

        Raises
        ------
        BlobNotFoundError
            No connected peer delivered it within ``timeout`` seconds.
        BlobTooLargeError
            The content is larger than ``max_size`` bytes.
        BlobIntegrityError
            The bytes do not hash to ``cid`` (never returned).
        """
        cid = normalize_cid(cid)
        data = self._fetch(cid, timeout, max_size)
        if max_size is not None and len(data) > max_size:
            raise BlobTooLargeError(too_large_message(cid, max_size))
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
