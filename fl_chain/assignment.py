"""The deterministic aggregator assignment, mirrored from ``FLCoordinator._slot``.

Contributors sit on a ring by their commit index, rotated by the offset the contract draws when
the contributor set freezes; partition ``p`` takes the ``r`` ring positions starting at ``p * r``.
Every node computes the same assignment from the on-chain round state.
"""

from __future__ import annotations


def aggregator_slot(index: int, partition: int, *, contributors: int, offset: int, replication: int) -> int | None:
    """The slot (0 <= slot < r) of contributor ``index`` for ``partition``, or ``None`` if not assigned."""
    n = contributors
    if not 0 <= index < n:
        raise ValueError(f"contributor index {index} outside 0..{n - 1}")
    effective = min(replication, n)
    position = (index + n - offset) % n
    slot = (position + n - (partition * replication) % n) % n
    return slot if slot < effective else None


def assigned_partitions(
    index: int, *, contributors: int, offset: int, partitions: int, replication: int
) -> list[int]:
    """Partitions contributor ``index`` must aggregate, ascending."""
    return [
        p
        for p in range(partitions)
        if aggregator_slot(index, p, contributors=contributors, offset=offset, replication=replication) is not None
    ]


def aggregators_of(partition: int, *, contributors: int, offset: int, replication: int) -> list[int]:
    """Contributor indices assigned to ``partition``, in slot order."""
    n = contributors
    effective = min(replication, n)
    start = (partition * replication) % n
    return [(offset + start + j) % n for j in range(effective)]
