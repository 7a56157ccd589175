"""How likely a coalition of colluding contributors decides a partition: the bound `task create` shows.

A round with ``n`` contributors places them on a ring by a pseudo-random permutation keyed after the
contributor set froze (:mod:`fl_chain.protocol.assignment`), so the ``k`` colluders hold a uniformly random
``k``-subset of the ring positions. Partition ``p`` is decided in the assigned phase by the ``r``
positions starting at ``p * r`` (mod n): the coalition captures it when it holds ``q`` of them, a
hypergeometric tail. In the fallback phase a digest (or an exclusion) needs a strict majority of
the ``n`` contributors, so a coalition with ``2k > n`` decides everything.

:func:`capture_probability` is the union bound over the distinct windows of a round (exact when
there is one window); :func:`worst_capture` takes the largest over every contributor count a task
allows, using that the tail only falls as ``n`` grows with ``k`` fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb, gcd

#: The largest capture probability `flchain task create` accepts without ``--accept-risk``.
CAPTURE_LIMIT = 1e-6
#: Contributor counts examined one by one before the monotone tail bound takes over.
_EXACT_SPAN = 4000


def window_capture(n: int, k: int, replication: int, quorum: int) -> float:
    """P(k random colluders among n hold at least ``quorum`` of one partition's min(r, n) slots)."""
    r = min(replication, n)
    k = min(k, n)
    if quorum > r:
        return 0.0
    hits = sum(comb(k, x) * comb(n - k, r - x) for x in range(quorum, min(k, r) + 1))
    return hits / comb(n, r)


def capture_probability(n: int, k: int, *, partitions: int, replication: int, quorum: int) -> float:
    """Upper bound on P(k colluders among n contributors decide some partition of a round)."""
    if k <= 0:
        return 0.0
    if 2 * k > n:
        return 1.0  # a contributor majority decides the fallback phase
    windows = min(partitions, n // gcd(replication, n))  # distinct starts p*r mod n: a period of n/gcd(r, n)
    return min(1.0, windows * window_capture(n, k, replication, quorum))


@dataclass(frozen=True)
class CaptureBound:
    """The worst capture probability over a task's possible contributor counts, and where it is."""

    probability: float
    contributors: int
    colluders: int

    @property
    def acceptable(self) -> bool:
        """Whether it is within :data:`CAPTURE_LIMIT`."""
        return self.probability <= CAPTURE_LIMIT


def worst_capture(
    k: int, *, min_contributors: int, max_participants: int, partitions: int, replication: int, quorum: int
) -> CaptureBound:
    """The largest :func:`capture_probability` for any n in ``[min_contributors, max_participants]``."""
    options = {"partitions": partitions, "replication": replication, "quorum": quorum}
    last = min(max_participants, min_contributors + _EXACT_SPAN)
    worst = CaptureBound(0.0, min_contributors, k)
    for n in range(min_contributors, last + 1):
        p = capture_probability(n, k, **options)
        if p > worst.probability:
            worst = CaptureBound(p, n, k)
    if max_participants > last:
        # Beyond `last` the window tail only falls and there are at most P windows.
        tail = min(1.0, partitions * window_capture(last, k, replication, quorum))
        if tail > worst.probability:
            worst = CaptureBound(tail, last, k)
    return worst


def safe_quorums(n: int, k: int, *, partitions: int, max_replication: int = 15) -> list[tuple[int, int]]:
    """The (r, q) pairs with the smallest r whose capture probability is within the limit."""
    found = []
    for r in range(1, max_replication + 1):
        for q in range(r // 2 + 1, r + 1):
            if capture_probability(n, k, partitions=partitions, replication=r, quorum=q) <= CAPTURE_LIMIT:
                found.append((r, q))
                break
    return found
