"""Concurrent gets: order-preserving results, per-call errors, and the prefetch of a round's updates."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fl_chain.chain.coordinator import UpdateCommit
from fl_chain.errors import BlobInvalidError, BlobNotFoundError
from fl_chain.exchange.gather import gather_partitions
from fl_chain.exchange.transfer import publish_vector
from fl_chain.exchange.updates import RoundUpdates
from fl_chain.protocol.blob import BlobKind, encode_partition
from fl_chain.protocol.cid import digest_from_cid
from fl_chain.protocol.partitioning import partition_bounds
from fl_chain.storage import MemoryNetwork, MemoryStorage
from fl_chain.storage.concurrent import run_gets

PARTITIONS = 4
DIMENSION = 103


class ParallelMemoryStorage(MemoryStorage):
    """A memory peer that lets callers run four gets at once and records the threads that fetched."""

    parallel_gets = 4

    def __init__(self, network: MemoryNetwork) -> None:
        super().__init__(network)
        self.fetch_threads: set[str] = set()
        self.fetches = 0

    def _fetch(self, cid: str, timeout: float, max_size: int | None) -> bytes:
        self.fetch_threads.add(threading.current_thread().name)
        self.fetches += 1
        return super()._fetch(cid, timeout, max_size)


def test_run_gets_runs_calls_at_once_and_keeps_their_order() -> None:
    # Four calls that each wait for the other three: only a concurrent run gets past the barrier.
    barrier = threading.Barrier(4, timeout=60)

    def call(i: int) -> int:
        barrier.wait()
        return i

    assert run_gets([lambda i=i: call(i) for i in range(4)], parallel=4) == [0, 1, 2, 3]


def test_run_gets_returns_storage_errors_and_raises_others() -> None:
    def missing() -> bytes:
        raise BlobNotFoundError("gone")

    results = run_gets([lambda: b"a", missing, lambda: b"c"], parallel=2)
    assert results[0] == b"a" and results[2] == b"c"
    assert isinstance(results[1], BlobNotFoundError)

    def broken() -> bytes:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run_gets([lambda: b"a", broken], parallel=2)
    with pytest.raises(ZeroDivisionError):
        run_gets([broken], parallel=1)


def _round(peers: int) -> tuple[ParallelMemoryStorage, list[UpdateCommit], dict[str, np.ndarray]]:
    network = MemoryNetwork()
    reader = ParallelMemoryStorage(network)
    commits, vectors = [], {}
    for i in range(peers):
        peer = MemoryStorage(network)
        reader.connect(peer.multiaddrs()[0])
        address = "0x" + f"{i + 1:040x}"
        vectors[address] = np.arange(DIMENSION, dtype=np.float32) * (i + 1)
        digest, _ = publish_vector(
            peer,
            vectors[address],
            blob_kind=BlobKind.UPDATE,
            task_id=1,
            round_=0,
            partitions=PARTITIONS,
            contributor=address,
        )
        commits.append(UpdateCommit(contributor=address, digest=digest, samples=10 + i, index=i, block_number=1))
    return reader, commits, vectors


def _updates(storage: MemoryStorage) -> RoundUpdates:
    return RoundUpdates(storage, task_id=1, round_=0, partitions=PARTITIONS, dimension=DIMENSION, timeout=5)


def test_prefetched_submissions_equal_fetched_ones_and_come_from_worker_threads() -> None:
    reader, commits, vectors = _round(5)
    updates = _updates(reader)
    updates.prefetch(commits, [1, 3])
    assert any(name.startswith("flchain-get") for name in reader.fetch_threads)
    fetched = reader.fetches
    for partition in (1, 3):
        bounds = partition_bounds(DIMENSION, PARTITIONS)[partition]
        for commit in commits:
            submission = updates.submission(commit, partition)
            expected = vectors[commit.contributor][bounds.offset : bounds.offset + bounds.length]
            assert submission.values is not None and submission.values.tobytes() == expected.tobytes()
            assert submission.samples == commit.samples
    assert reader.fetches == fetched  # every submission came from the prefetch
    updates.submission(commits[0], 1)  # taken once: asked again, it is fetched again
    assert reader.fetches == fetched + 1


def test_prefetch_keeps_unavailable_and_invalid_content_apart() -> None:
    reader, commits, _ = _round(3)
    missing = UpdateCommit(contributor="0x" + "e" * 40, digest=b"\x11" * 32, samples=5, index=3, block_number=1)
    updates = _updates(reader)
    updates.prefetch([*commits, missing], [0])
    with pytest.raises(BlobNotFoundError):
        updates.submission(missing, 0)  # unavailable: raised (the node waits or reports), not excluded
    assert updates.submission(commits[0], 0).values is not None


def test_gather_partitions_fetches_concurrently_and_names_a_bad_partition() -> None:
    network = MemoryNetwork()
    reader = ParallelMemoryStorage(network)
    peer = MemoryStorage(network)
    reader.connect(peer.multiaddrs()[0])
    vector = np.linspace(-1, 1, DIMENSION, dtype=np.float32)
    digests = []
    for index, bounds in enumerate(partition_bounds(DIMENSION, PARTITIONS)):
        blob = encode_partition(
            vector[bounds.offset : bounds.offset + bounds.length],
            kind=BlobKind.AGGREGATE,
            task_id=1,
            round_=2,
            partition=index,
            partitions=PARTITIONS,
            offset=bounds.offset,
        )
        digests.append(digest_from_cid(peer.put(blob)))
    joined = gather_partitions(reader, digests, task_id=1, round_=2, timeout=5, dimension=DIMENSION)
    assert joined.tobytes() == vector.tobytes()
    assert any(name.startswith("flchain-get") for name in reader.fetch_threads)
    # Partition 2 replaced by partition 3's blob: its header says partition 3.
    with pytest.raises(BlobInvalidError, match="partition 2"):
        gather_partitions(
            reader, [*digests[:2], digests[3], digests[3]], task_id=1, round_=2, timeout=5, dimension=DIMENSION
        )
