"""Partition blobs, manifests and CIDs: everything that does not verify is rejected with a typed error."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fl_chain.errors import (
    BlobFormatError,
    BlobIntegrityError,
    BlobInvalidError,
    BlobMismatchError,
    BlobNotFoundError,
)
from fl_chain.exchange.transfer import fetch_manifest, fetch_partition, fetch_vector, publish_vector
from fl_chain.protocol.blob import (
    FORMAT_VERSION,
    HEADER_SIZE,
    NO_CONTRIBUTOR,
    BlobHeader,
    BlobKind,
    DType,
    blob_size,
    decode_partition,
    encode_partition,
)
from fl_chain.protocol.cid import cidv0_from_digest
from fl_chain.protocol.manifest import Manifest, parse_manifest
from fl_chain.protocol.partitioning import partition_bounds, split_vector
from fl_chain.protocol.unixfs import unixfs_digest
from fl_chain.storage import MemoryNetwork, MemoryStorage, cid_from_digest, digest_from_cid

CONTRIBUTOR = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def _blob(values: np.ndarray | None = None) -> bytes:
    values = np.linspace(-1, 1, 10, dtype=np.float32) if values is None else values
    return encode_partition(values, kind=BlobKind.UPDATE, task_id=7, round_=3, partition=1, partitions=4, offset=10)


def _expected(**overrides: object) -> BlobHeader:
    fields: dict[str, object] = {
        "kind": BlobKind.UPDATE,
        "task_id": 7,
        "round": 3,
        "partition": 1,
        "partitions": 4,
        "offset": 10,
        "length": 10,
    }
    fields.update(overrides)
    return BlobHeader(**fields)  # type: ignore[arg-type]


def test_known_cids_of_ipfs_add() -> None:
    """The empty file and 'hello' get the CIDs `ipfs add` gives them."""
    assert cidv0_from_digest(unixfs_digest(b"")) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert cidv0_from_digest(unixfs_digest(b"hello\n")) == "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN"


def test_cid_is_rebuilt_exactly_from_its_digest() -> None:
    """digest -> CIDv1 -> digest is the identity, and CIDv0 names the same digest."""
    digest = hashlib.sha256(b"x").digest()
    cid = cid_from_digest(digest)
    assert cid.startswith("bafybei")
    assert digest_from_cid(cid) == digest
    assert digest_from_cid(cidv0_from_digest(digest)) == digest


@pytest.mark.parametrize("bad", ["", "Qm123", "bafkreiabc", "zdj7W", "b" + "a" * 58])
def test_foreign_cids_are_rejected(bad: str) -> None:
    """Strings that are not dag-pb sha2-256 CIDs raise BlobFormatError."""
    with pytest.raises(BlobFormatError):
        digest_from_cid(bad)


@pytest.mark.parametrize(("dimension", "partitions"), [(10, 1), (10, 3), (10, 10), (1_000_003, 64)])
def test_partitions_are_contiguous_and_cover_the_vector(dimension: int, partitions: int) -> None:
    """Bounds tile [0, D) in order with lengths differing by at most one."""
    bounds = partition_bounds(dimension, partitions)
    assert [b.offset for b in bounds] == [sum(x.length for x in bounds[:i]) for i in range(partitions)]
    assert sum(b.length for b in bounds) == dimension
    assert max(b.length for b in bounds) - min(b.length for b in bounds) <= 1
    vector = np.arange(dimension, dtype=np.float32)
    assert np.array_equal(np.concatenate(split_vector(vector, partitions)), vector)


def test_header_is_112_bytes_and_binds_the_contributor() -> None:
    """Format 2: a 112-byte header (a multiple of 16) carrying the contributor; aggregates carry zero."""
    assert HEADER_SIZE == 112 and HEADER_SIZE % 16 == 0 and FORMAT_VERSION == 2
    values = np.ones(3, np.float32)
    blob = encode_partition(
        values, kind=BlobKind.UPDATE, task_id=1, round_=0, partition=0, partitions=1, offset=0, contributor=CONTRIBUTOR
    )
    assert blob[80:100] == bytes.fromhex(CONTRIBUTOR[2:]) and blob[100:HEADER_SIZE] == bytes(12)
    assert len(blob) == blob_size(3)
    header, _ = decode_partition(blob)
    assert header.contributor == bytes.fromhex(CONTRIBUTOR[2:])
    aggregate = encode_partition(
        values, kind=BlobKind.AGGREGATE, task_id=1, round_=0, partition=0, partitions=1, offset=0
    )
    assert decode_partition(aggregate)[0].contributor == NO_CONTRIBUTOR == bytes(20)
    with pytest.raises(BlobFormatError, match="20 bytes"):
        encode_partition(
            values, kind=BlobKind.UPDATE, task_id=1, round_=0, partition=0, partitions=1, offset=0, contributor="0x12"
        )


def test_blob_round_trip_keeps_header_and_bytes() -> None:
    """decode(encode(x)) gives x bit for bit and the header written."""
    values = np.array([0.1, -0.0, np.float32(3.4e38), 1e-45], dtype=np.float32)
    header, decoded = decode_partition(_blob(values), _expected(length=4))
    assert decoded.tobytes() == values.tobytes()
    assert (header.task_id, header.round, header.partition, header.offset) == (7, 3, 1, 10)


def test_truncated_blob_is_rejected() -> None:
    """A blob missing its last byte, or most of its header, is a format error."""
    blob = _blob()
    with pytest.raises(BlobFormatError, match="payload has"):
        decode_partition(blob[:-1])
    with pytest.raises(BlobFormatError, match="truncated"):
        decode_partition(blob[: HEADER_SIZE - 1])


def test_corrupted_payload_is_rejected() -> None:
    """One flipped payload bit fails the payload hash."""
    blob = bytearray(_blob())
    blob[-1] ^= 0x01
    with pytest.raises(BlobIntegrityError):
        decode_partition(bytes(blob))


@pytest.mark.parametrize(
    ("position", "message"), [(0, "bad magic"), (8, "format version"), (10, "dtype"), (11, "kind"), (105, "reserved")]
)
def test_corrupted_header_is_rejected(position: int, message: str) -> None:
    """Damage to magic, version, dtype, kind or reserved bytes is a format error naming the field."""
    blob = bytearray(_blob())
    blob[position] ^= 0x7F
    with pytest.raises(BlobFormatError, match=message):
        decode_partition(bytes(blob))


@pytest.mark.parametrize(
    "override",
    [
        {"task_id": 8},
        {"round": 4},
        {"partition": 2},
        {"offset": 11},
        {"length": 9},
        {"kind": BlobKind.AGGREGATE},
        {"contributor": bytes.fromhex(CONTRIBUTOR[2:])},
    ],
)
def test_valid_blob_with_other_header_than_chain_expects_is_rejected(override: dict[str, object]) -> None:
    """A well-formed blob for another task, round, partition, range, kind or contributor is a mismatch."""
    with pytest.raises(BlobMismatchError):
        decode_partition(_blob(), _expected(**override))


def test_manifest_round_trip_and_canonical_bytes() -> None:
    """parse(to_bytes(m)) == m; the same manifest always has the same bytes."""
    cid = cid_from_digest(hashlib.sha256(b"p").digest())
    manifest = Manifest("update", 1, 2, 100, (cid, cid), CONTRIBUTOR)
    assert parse_manifest(manifest.to_bytes()) == manifest
    assert manifest.to_bytes() == Manifest("update", 1, 2, 100, (cid, cid), CONTRIBUTOR).to_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff", "not ASCII"),
        (b"{", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"format":"other"}', "unknown manifest format"),
        (b'{"format":"fl-chain/update","version":2}', "version"),
        (
            b'{"dimension":4,"dtype":"float32","format":"fl-chain/model","partitions":[],"round":0,"task":1,"version":1}',
            "non-empty",
        ),
    ],
)
def test_malformed_manifests_are_rejected(data: bytes, message: str) -> None:
    """Manifests that are not what fl-chain writes raise BlobFormatError."""
    with pytest.raises(BlobFormatError, match=message):
        parse_manifest(data)


def test_non_canonical_manifest_is_rejected() -> None:
    """The same fields with other whitespace are a different CID, so they are refused."""
    cid = cid_from_digest(hashlib.sha256(b"p").digest())
    text = Manifest("model", 1, 2, 100, (cid,)).to_bytes().decode().replace(",", ", ")
    with pytest.raises(BlobFormatError, match="canonical"):
        parse_manifest(text.encode())


def test_vector_published_by_one_peer_is_fetched_by_a_connected_peer() -> None:
    """A peer connected through the publisher's multiaddr gets every partition, identical."""
    network = MemoryNetwork()
    publisher, fetcher = MemoryStorage(network), MemoryStorage(network)
    vector = np.random.default_rng(0).standard_normal(10_001).astype(np.float32)
    digest, _ = publish_vector(
        publisher, vector, blob_kind=BlobKind.UPDATE, task_id=1, round_=0, partitions=4, contributor=CONTRIBUTOR
    )
    fetcher.connect(publisher.multiaddrs()[0])
    manifest = fetch_manifest(
        fetcher, digest, kind="update", task_id=1, round_=0, partitions=4, contributor=CONTRIBUTOR
    )
    assert fetch_vector(fetcher, manifest, blob_kind=BlobKind.UPDATE).tobytes() == vector.tobytes()
    assert np.array_equal(fetch_partition(fetcher, manifest, 3, blob_kind=BlobKind.UPDATE), vector[7501:])


def test_unconnected_peer_cannot_fetch() -> None:
    """Like bitswap, a get reaches only connected peers: otherwise BlobNotFoundError."""
    network = MemoryNetwork()
    publisher, stranger = MemoryStorage(network), MemoryStorage(network)
    cid = publisher.put(b"secret update")
    with pytest.raises(BlobNotFoundError):
        stranger.get(cid, timeout=1)


def test_manifest_from_another_contributor_is_a_mismatch() -> None:
    """A manifest naming another contributor than the chain's committer is refused."""
    storage = MemoryStorage()
    digest, _ = publish_vector(
        storage,
        np.ones(8, np.float32),
        blob_kind=BlobKind.UPDATE,
        task_id=1,
        round_=0,
        partitions=2,
        contributor=CONTRIBUTOR,
    )
    with pytest.raises(BlobMismatchError, match="contributor"):
        fetch_manifest(storage, digest, kind="update", task_id=1, round_=0, partitions=2, contributor="0x" + "11" * 20)


def test_masked_update_blobs_carry_uint64_ring_words_and_their_manifest_says_so() -> None:
    # Prepare: a masked update (secure aggregation) as uint64 ring words
    storage = MemoryStorage(MemoryNetwork())
    words = np.arange(2**64 - 23, 2**64 - 1, dtype=np.uint64)

    # Execute
    digest, manifest = publish_vector(
        storage, words, blob_kind=BlobKind.MASKED_UPDATE, task_id=7, round_=3, partitions=4, contributor=CONTRIBUTOR
    )
    fetched = fetch_manifest(
        storage, digest, kind="update", task_id=7, round_=3, partitions=4, contributor=CONTRIBUTOR, dtype="uint64"
    )

    # Assert: the same words back, 8 bytes each; a fetcher expecting float32 refuses both manifest and blob
    assert fetched == manifest and manifest.dtype == "uint64"
    assert fetch_vector(storage, fetched, blob_kind=BlobKind.MASKED_UPDATE).tobytes() == words.tobytes()
    assert blob_size(6, DType.UINT64) == HEADER_SIZE + 48
    with pytest.raises(BlobMismatchError, match="dtype"):
        fetch_manifest(storage, digest, kind="update", task_id=7, round_=3, partitions=4, contributor=CONTRIBUTOR)
    with pytest.raises(BlobInvalidError):  # larger than a float32 blob of its length: not even read
        fetch_partition(storage, fetched, 0, blob_kind=BlobKind.UPDATE)


def test_attack_a_float32_update_where_a_masked_one_is_due_is_a_mismatch() -> None:
    # Prepare: a plain update blob (float32) and its manifest, offered in a secure round
    storage = MemoryStorage(MemoryNetwork())
    digest, manifest = publish_vector(
        storage, np.ones(24, dtype=np.float32), blob_kind=BlobKind.UPDATE, task_id=7, round_=3, partitions=4,
        contributor=CONTRIBUTOR,
    )  # fmt: skip

    # Execute / Assert: the manifest names float32, and its blobs are not masked-update blobs
    with pytest.raises(BlobMismatchError, match="dtype"):
        fetch_manifest(
            storage, digest, kind="update", task_id=7, round_=3, partitions=4, contributor=CONTRIBUTOR, dtype="uint64"
        )
    with pytest.raises(BlobInvalidError):
        fetch_partition(storage, manifest, 0, blob_kind=BlobKind.MASKED_UPDATE)


def test_only_update_manifests_may_name_uint64() -> None:
    model = Manifest("model", 7, 3, 24, (cid_from_digest(bytes(32)),), dtype="uint64")
    with pytest.raises(BlobFormatError, match="dtype"):
        parse_manifest(model.to_bytes())
    masked = Manifest("update", 7, 3, 24, (cid_from_digest(bytes(32)),), CONTRIBUTOR, dtype="uint64")
    assert parse_manifest(masked.to_bytes()) == masked
