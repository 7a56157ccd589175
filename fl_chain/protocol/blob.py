"""The self-describing partition blob: a fixed header followed by the float32 payload.

Layout (little-endian, 112-byte header, format version 2)::

    offset size field
         0    8 magic            b"FLCHAINP"
         8    2 format version   2
        10    1 dtype            1 = float32, 2 = uint64 (ring words of secure aggregation)
        11    1 kind             0 = update, 1 = aggregate, 2 = initial model, 3 = masked update
        12    8 task id
        20    4 round
        24    4 partition index
        28    4 partition count  P
        32    8 offset           first element's index in the model vector
        40    8 length           number of elements
        48   32 payload sha256
        80   20 contributor      the update's contributor address; zero for aggregates and initial models
       100   12 reserved         zero
       112    * payload          length * 4 bytes of float32 (length * 8 bytes of uint64 for dtype 2)

Decoding verifies everything it can (size, magic, version, dtype, reserved bytes, payload hash)
and then that the header is the one the caller expects from the chain's view. The contributor
field binds an update blob to its author: a copycat that lists another contributor's partition CIDs
in its own manifest is a :class:`BlobMismatchError` for every honest node.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from fl_chain.errors import BlobFormatError, BlobIntegrityError, BlobMismatchError

MAGIC = b"FLCHAINP"
FORMAT_VERSION = 2
HEADER_SIZE = 112
_HEADER = struct.Struct("<8sHBBQIIIQQ32s20s12s")
#: The contributor field of aggregates and initial models.
NO_CONTRIBUTOR = b"\x00" * 20
_RESERVED = b"\x00" * 12
assert _HEADER.size == HEADER_SIZE


class DType(IntEnum):
    FLOAT32 = 1
    #: Little-endian words of the ring Z_(2^64): a masked update under secure aggregation.
    UINT64 = 2


class BlobKind(IntEnum):
    UPDATE = 0
    AGGREGATE = 1
    INITIAL = 2
    #: A contributor's masked update under secure aggregation (dtype UINT64).
    MASKED_UPDATE = 3


_ITEMSIZE = {DType.FLOAT32: 4, DType.UINT64: 8}
_NUMPY: dict[DType, np.dtype[Any]] = {DType.FLOAT32: np.dtype("<f4"), DType.UINT64: np.dtype("<u8")}


@dataclass(frozen=True)
class BlobHeader:
    """What a partition blob says about itself."""

    kind: BlobKind
    task_id: int
    round: int
    partition: int
    partitions: int
    offset: int
    length: int
    dtype: DType = DType.FLOAT32
    payload_sha256: bytes = b""
    contributor: bytes = NO_CONTRIBUTOR


def blob_dtype(kind: BlobKind) -> DType:
    """The payload type of a blob kind: uint64 ring words for a masked update, float32 for the rest."""
    return DType.UINT64 if kind == BlobKind.MASKED_UPDATE else DType.FLOAT32


def blob_dtype_name(kind: BlobKind) -> str:
    """The manifest's name of :func:`blob_dtype` (``float32`` or ``uint64``)."""
    return "uint64" if kind == BlobKind.MASKED_UPDATE else "float32"


def blob_size(length: int, dtype: DType = DType.FLOAT32) -> int:
    """Exact size in bytes of the blob of a partition of ``length`` elements (the fetch bound)."""
    return HEADER_SIZE + length * _ITEMSIZE[dtype]


def contributor_bytes(address: str | bytes | None) -> bytes:
    """The 20 header bytes of a contributor given as ``0x`` hex address, raw bytes or None (zero)."""
    if address is None:
        return NO_CONTRIBUTOR
    if isinstance(address, str):
        text = address[2:] if address[:2].lower() == "0x" else address
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise BlobFormatError(f"contributor {address[:50]!r} is not a hex address") from None
    else:
        raw = bytes(address)
    if len(raw) != 20:
        raise BlobFormatError(f"a contributor address has 20 bytes, got {len(raw)}")
    return raw


def encode_partition(
    values: np.ndarray,
    *,
    kind: BlobKind,
    task_id: int,
    round_: int,
    partition: int,
    partitions: int,
    offset: int,
    contributor: str | bytes | None = None,
) -> bytes:
    """Serialize one partition of float32 ``values`` (uint64 ring words for a masked update) with its header.

    ``contributor``: see :func:`contributor_bytes`.
    """
    array = np.asarray(values)
    dtype = blob_dtype(kind)
    if array.dtype != (np.uint64 if dtype == DType.UINT64 else np.float32) or array.ndim != 1:
        raise BlobFormatError(
            f"partition payload must be a 1-D {_NUMPY[dtype].name} array, got {array.dtype} {array.shape}"
        )
    if not 0 <= partition < partitions:
        raise BlobFormatError(f"partition {partition} outside 0..{partitions - 1}")
    payload = array.astype(_NUMPY[dtype], copy=False).tobytes()
    header = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        dtype,
        kind,
        task_id,
        round_,
        partition,
        partitions,
        offset,
        array.size,
        hashlib.sha256(payload).digest(),
        contributor_bytes(contributor),
        _RESERVED,
    )
    return header + payload


def decode_header(blob: bytes) -> BlobHeader:
    """Parse and check the header of ``blob`` (not the payload hash)."""
    if len(blob) < HEADER_SIZE:
        raise BlobFormatError(f"blob of {len(blob)} bytes is shorter than the {HEADER_SIZE}-byte header (truncated)")
    (
        magic,
        version,
        dtype,
        kind,
        task_id,
        round_,
        partition,
        partitions,
        offset,
        length,
        digest,
        contributor,
        reserved,
    ) = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise BlobFormatError("not a partition blob (bad magic)")
    if version != FORMAT_VERSION:
        raise BlobFormatError(f"partition blob format version {version} is not supported (expected {FORMAT_VERSION})")
    if dtype not in _ITEMSIZE:
        raise BlobFormatError(f"unknown dtype code {dtype} in partition blob")
    if kind not in BlobKind._value2member_map_:
        raise BlobFormatError(f"unknown blob kind {kind}")
    if reserved != _RESERVED:
        raise BlobFormatError("reserved header bytes are not zero")
    if partitions == 0 or partition >= partitions:
        raise BlobFormatError(f"partition index {partition} outside 0..{partitions - 1}")
    return BlobHeader(
        BlobKind(kind), task_id, round_, partition, partitions, offset, length, DType(dtype), digest, contributor
    )


def decode_partition(blob: bytes, expected: BlobHeader | None = None) -> tuple[BlobHeader, np.ndarray]:
    """Verify ``blob`` and return its header and payload (a read-only float32 array).

    ``expected`` is what the chain's view says the blob must be; every field of it except
    ``payload_sha256`` (including ``contributor``) must match, else :class:`BlobMismatchError`.
    """
    header = decode_header(blob)
    payload = memoryview(blob)[HEADER_SIZE:]
    expected_size = header.length * _ITEMSIZE[header.dtype]
    if len(payload) != expected_size:
        raise BlobFormatError(
            f"payload has {len(payload)} bytes but the header says {header.length} elements ({expected_size} bytes)"
        )
    if hashlib.sha256(payload).digest() != header.payload_sha256:
        raise BlobIntegrityError("partition payload does not match the sha256 in its header")
    if expected is not None:
        for field in (
            "kind",
            "task_id",
            "round",
            "partition",
            "partitions",
            "offset",
            "length",
            "dtype",
            "contributor",
        ):
            got, want = getattr(header, field), getattr(expected, field)
            if got != want:
                raise BlobMismatchError(f"partition blob has {field}={_show(got)}, expected {_show(want)}")
    values = np.frombuffer(blob, dtype=_NUMPY[header.dtype], offset=HEADER_SIZE, count=header.length)
    return header, values


def _show(value: object) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else str(value)
