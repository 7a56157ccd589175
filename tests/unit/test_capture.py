"""The capture bound `flchain task create` prints: exact where it claims to be, an upper bound elsewhere."""

from __future__ import annotations

import itertools
import random

import pytest

from fl_chain.protocol.assignment import assigned_partitions
from fl_chain.protocol.capture import CAPTURE_LIMIT, capture_probability, safe_quorums, window_capture, worst_capture


@pytest.mark.parametrize(("n", "k", "r", "q"), [(6, 2, 3, 2), (7, 3, 3, 2), (8, 2, 5, 3), (5, 1, 2, 1), (9, 4, 4, 3)])
def test_window_capture_equals_enumeration_of_every_colluder_placement(n: int, k: int, r: int, q: int) -> None:
    """One window of r ring positions: the hypergeometric tail equals counting every k-subset."""
    window = set(range(r))
    placements = list(itertools.combinations(range(n), k))
    hits = sum(len(window & set(c)) >= q for c in placements)
    assert window_capture(n, k, r, q) == pytest.approx(hits / len(placements), abs=1e-12)


def test_capture_probability_bounds_the_rate_seen_with_the_real_assignment() -> None:
    """Over many assignment keys, k colluders hold q slots of some partition no more often than the bound."""
    n, k, partitions, r, q = 12, 3, 6, 3, 2
    rng = random.Random(3)
    colluders = rng.sample(range(n), k)
    trials, captured = 1500, 0
    for _ in range(trials):
        key = rng.randbytes(32)
        counts = [0] * partitions
        for c in colluders:
            for p in assigned_partitions(c, contributors=n, key=key, partitions=partitions, replication=r):
                counts[p] += 1
        captured += max(counts) >= q
    rate = captured / trials
    assert rate > 0.05  # the attack is real at these sizes: the bound must not be vacuous
    assert rate <= capture_probability(n, k, partitions=partitions, replication=r, quorum=q) + 0.03


def test_a_colluding_majority_always_captures_and_fewer_than_q_never() -> None:
    assert capture_probability(9, 5, partitions=3, replication=3, quorum=2) == 1.0
    assert capture_probability(9, 1, partitions=3, replication=3, quorum=2) == 0.0
    assert capture_probability(9, 0, partitions=3, replication=1, quorum=1) == 0.0


def test_worst_capture_takes_the_worst_contributor_count_of_the_task() -> None:
    """Fewer contributors concentrate the colluders: the worst case is at the minimum, and a
    minimum at or below 2k is a colluding majority."""
    bound = worst_capture(2, min_contributors=10, max_participants=50, partitions=10, replication=3, quorum=2)
    assert bound.contributors == 10
    assert bound.probability == capture_probability(10, 2, partitions=10, replication=3, quorum=2)
    assert not worst_capture(
        2, min_contributors=3, max_participants=50, partitions=4, replication=3, quorum=3
    ).acceptable
    assert worst_capture(2, min_contributors=4, max_participants=50, partitions=4, replication=3, quorum=3).acceptable
    far = worst_capture(1, min_contributors=3, max_participants=100_000, partitions=8, replication=3, quorum=2)
    assert far.acceptable and far.probability == 0.0


def test_safe_quorums_are_within_the_limit() -> None:
    for r, q in safe_quorums(50, 5, partitions=50):
        assert capture_probability(50, 5, partitions=50, replication=r, quorum=q) <= CAPTURE_LIMIT
