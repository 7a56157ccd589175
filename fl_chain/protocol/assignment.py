"""The deterministic aggregator assignment, mirrored exactly from ``FLCoordinator``.

Contributors sit on a ring at a keyed pseudo-random permutation of their commit index
(:func:`assignment_position`, an 8-round Feistel network with cycle walking: 4 rounds are measurably
biased on small domains, e.g. consecutive indices land adjacent too often when n is a power of 4); partition ``p`` takes
the ``r`` ring positions starting at ``p * r`` (mod n). The key is drawn from the hash of the block
that froze the contributor set, so neither commit order nor the caller that froze the set decides
who aggregates what. Every node computes the same assignment from the on-chain round state.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Protocol

_ROUNDS = 8


class _Hash(Protocol):
    def digest(self) -> bytes: ...


def _keccak256_constructor() -> Callable[[bytes], _Hash]:
    """Keccak-256 of bytes, without eth_utils' argument conversion: safe-pysha3's C hash (installed with
    eth-tester[py-evm] on CPython, ~7x faster per call than eth_utils.keccak), else pycryptodome's (a web3
    dependency)."""
    try:
        from sha3 import keccak_256
    except ImportError:
        from Crypto.Hash import keccak

        return lambda data: keccak.new(data=data, digest_bits=256)
    return keccak_256  # type: ignore[no-any-return]


_keccak256 = _keccak256_constructor()


class _RoundFunction:
    """The Feistel round function of one key, ``keccak256(key, uint256 round, uint256 right)`` read as an
    integer, each value hashed once: a permutation of n contributors needs at most ``8 * 2**half`` hashes
    instead of ``8`` per contributor and cycle-walking step."""

    __slots__ = ("prefixes", "values")

    def __init__(self, key: bytes) -> None:
        self.prefixes = [key + i.to_bytes(32, "big") for i in range(_ROUNDS)]
        self.values: list[dict[int, int]] = [{} for _ in range(_ROUNDS)]


@lru_cache(maxsize=64)
def _round_function(key: bytes) -> _RoundFunction:
    return _RoundFunction(key)


@lru_cache(maxsize=1 << 16)
def assignment_position(key: bytes, index: int, contributors: int) -> int:
    """Ring position of contributor ``index`` among ``contributors`` (``FLCoordinator.assignmentPosition``).

    Memoized: a node asks for the same positions once per partition it checks.
    """
    n = contributors
    if not 0 <= index < n:
        raise ValueError(f"contributor index {index} outside 0..{n - 1}")
    if len(key) != 32:
        raise ValueError("the assignment key is 32 bytes")
    half = 1
    while (1 << (2 * half)) < n:
        half += 1
    mask = (1 << half) - 1
    rounds = _round_function(key)
    x = index
    while True:
        left, right = x >> half, x & mask
        for prefix, values in zip(rounds.prefixes, rounds.values):
            f = values.get(right)
            if f is None:
                f = values[right] = int.from_bytes(_keccak256(prefix + right.to_bytes(32, "big")).digest(), "big")
            left, right = right, left ^ (f & mask)
        x = (left << half) | right
        if x < n:
            return x


def slot_of_position(position: int, partition: int, *, contributors: int, replication: int) -> int | None:
    """The slot (0 <= slot < r) that ring ``position`` holds for ``partition``, or ``None``."""
    n = contributors
    slot = (position + n - (partition * replication) % n) % n
    return slot if slot < min(replication, n) else None


def aggregator_slot(index: int, partition: int, *, contributors: int, key: bytes, replication: int) -> int | None:
    """The slot (0 <= slot < r) of contributor ``index`` for ``partition``, or ``None`` if not assigned."""
    position = assignment_position(key, index, contributors)
    return slot_of_position(position, partition, contributors=contributors, replication=replication)


def assigned_partitions(index: int, *, contributors: int, key: bytes, partitions: int, replication: int) -> list[int]:
    """Partitions contributor ``index`` must aggregate, ascending."""
    position = assignment_position(key, index, contributors)
    return [
        p
        for p in range(partitions)
        if slot_of_position(position, p, contributors=contributors, replication=replication) is not None
    ]


def aggregators_of(partition: int, *, contributors: int, key: bytes, replication: int) -> list[int]:
    """Contributor indices assigned to ``partition``, in slot order."""
    n = contributors
    at_position = {assignment_position(key, i, n): i for i in range(n)}
    start = (partition * replication) % n
    return [at_position[(start + j) % n] for j in range(min(replication, n))]
