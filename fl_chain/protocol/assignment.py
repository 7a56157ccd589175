"""The deterministic aggregator assignment, mirrored exactly from ``FLCoordinator``.

Contributors sit on a ring at a keyed pseudo-random permutation of their commit index
(:func:`assignment_position`, an 8-round Feistel network with cycle walking: 4 rounds are measurably
biased on small domains, e.g. consecutive indices land adjacent too often when n is a power of 4); partition ``p`` takes
the ``r`` ring positions starting at ``p * r`` (mod n). The key is drawn from the hash of the block
that froze the contributor set, so neither commit order nor the caller that froze the set decides
who aggregates what. Every node computes the same assignment from the on-chain round state.
"""

from __future__ import annotations

from functools import lru_cache

from eth_utils.crypto import keccak

_ROUNDS = 8


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
    x = index
    while True:
        left, right = x >> half, x & mask
        for i in range(_ROUNDS):
            f = int.from_bytes(keccak(key + i.to_bytes(32, "big") + right.to_bytes(32, "big")), "big") & mask
            left, right = right, left ^ f
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
