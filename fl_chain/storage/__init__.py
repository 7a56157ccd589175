"""Content-addressed storage: the interface, the memory backend and the embedded kubo peer."""

from fl_chain.protocol.cid import cid_from_digest, digest_from_cid, normalize_cid
from fl_chain.storage.base import DEFAULT_GET_TIMEOUT, Storage
from fl_chain.storage.memory import MemoryNetwork, MemoryStorage

__all__ = [
    "DEFAULT_GET_TIMEOUT",
    "MemoryNetwork",
    "MemoryStorage",
    "Storage",
    "cid_from_digest",
    "digest_from_cid",
    "normalize_cid",
]
