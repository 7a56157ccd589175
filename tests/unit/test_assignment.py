"""The Python mirror of the aggregator assignment: a keyed permutation, balanced, covering every partition.

``tests/test_contract_rounds.py`` checks that it equals the contract's ``assignmentPosition``,
``getAssignedPartitions`` and ``isAssigned``; these tests check its properties on many keys.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sha3 import keccak_256  # safe-pysha3, installed with eth-tester[py-evm]: the keys of 120,000 trials in C

from fl_chain.protocol.assignment import aggregator_slot, aggregators_of, assigned_partitions, assignment_position

keys = st.binary(min_size=32, max_size=32)


def fixed_keys(count: int, label: str) -> list[bytes]:
    """``count`` deterministic 32-byte keys (Keccak-256 hashes of ``label`` and a counter)."""
    return [keccak_256(f"{label}/{i}".encode()).digest() for i in range(count)]


@settings(deadline=None, max_examples=60)  # aggregators_of places all n contributors per call
@given(n=st.integers(1, 70), partitions=st.integers(1, 70), replication=st.integers(1, 64), key=keys)
def test_every_partition_gets_min_r_n_distinct_aggregators(
    n: int, partitions: int, replication: int, key: bytes
) -> None:
    """Each partition has min(r, n) distinct aggregators, consistent with aggregator_slot and
    assigned_partitions."""
    # Each contributor's partitions once (assigned_partitions scans every partition).
    assigned = [
        assigned_partitions(i, contributors=n, key=key, partitions=partitions, replication=replication)
        for i in range(n)
    ]
    for p in range(partitions):
        aggregators = aggregators_of(p, contributors=n, key=key, replication=replication)
        assert len(aggregators) == len(set(aggregators)) == min(replication, n)
        assert all(0 <= index < n for index in aggregators)
        for j, index in enumerate(aggregators):
            assert aggregator_slot(index, p, contributors=n, key=key, replication=replication) == j
            assert p in assigned[index]
    assert sum(len(partitions_of_one) for partitions_of_one in assigned) == partitions * min(replication, n)


@given(n=st.integers(2, 64), key=keys)
def test_partitions_equal_contributors_gives_each_node_r_partitions(n: int, key: bytes) -> None:
    """With P = N and r = 2 every contributor aggregates exactly two partitions."""
    load = Counter(len(assigned_partitions(i, contributors=n, key=key, partitions=n, replication=2)) for i in range(n))
    assert load == Counter({2: n})


@pytest.mark.parametrize("n", [*range(1, 130), 255, 256, 257, 1000, 1024, 1025, 4097])
def test_assignment_position_is_a_permutation_of_range_n(n: int) -> None:
    """For every n (powers of four, one above and below them, odd and even) and a fixed set of keys,
    the positions of contributors 0..n-1 are exactly 0..n-1."""
    for key in fixed_keys(4 if n < 1000 else 2, f"permutation/{n}"):
        assert sorted(assignment_position(key, i, n) for i in range(n)) == list(range(n))


@settings(deadline=None)
@given(n=st.integers(1, 600), key=keys)
def test_assignment_position_is_a_permutation_for_any_key(n: int, key: bytes) -> None:
    positions = [assignment_position(key, i, n) for i in range(n)]
    assert sorted(positions) == list(range(n))


def test_assignment_position_depends_on_the_key() -> None:
    """Different keys give different orders (the permutation is not a fixed rotation): over 200 keys
    of n = 20 nearly every order is distinct, and contributor 0 lands on every position."""
    n = 20
    orders = [tuple(assignment_position(key, i, n) for i in range(n)) for key in fixed_keys(200, "orders")]
    assert len(set(orders)) == len(orders)
    assert {order[0] for order in orders} == set(range(n))


def test_assignment_position_refuses_an_index_outside_the_contributors_or_a_short_key() -> None:
    key = keccak_256(b"key").digest()
    with pytest.raises(ValueError, match="outside"):
        assignment_position(key, 5, 5)
    with pytest.raises(ValueError, match="outside"):
        assignment_position(key, -1, 5)
    with pytest.raises(ValueError, match="32 bytes"):
        assignment_position(key[:31], 0, 5)


def ring_distance(a: int, b: int, n: int) -> int:
    return min((a - b) % n, (b - a) % n)


# With 4 Feistel rounds this test failed at n = 16, 64 and 256 (20,000 fixed keys: n = 16 adjacent
# 3,333 times against 2,667 expected, z = 13.9): the contract and the mirror now use 8 rounds.


def chi_square_limit(degrees: int, z: float = 4.75) -> float:
    """Upper 1e-6 quantile (z = 4.75) of chi-square with ``degrees`` (Wilson-Hilferty approximation)."""
    h = 2 / (9 * degrees)
    return float(degrees * (1 - h + z * h**0.5) ** 3)


@pytest.mark.long
@pytest.mark.parametrize(
    "n",
    [
        5,
        16,
        20,
        64,
        100,
        256,
    ],
)
def test_colluders_committing_last_are_not_adjacent_more_often_than_chance(n: int) -> None:
    """Two colluders that commit last (indices n-2 and n-1) sat on adjacent ring positions under
    every offset of the old rotation, so they shared a partition whenever r >= 2. Under the keyed
    permutation their ring distance must be that of two random positions: over a fixed set of 20,000
    keys they are adjacent at most five standard deviations above the chance rate 2/(n-1) (enough to
    see a bias of a fifth of that rate), and their distances pass a chi-square test of uniformity at
    p = 1e-6.

    Deterministic: the keys are fixed, so the test passes or fails the same way every run.
    """
    trials = 20_000
    colluders = (n - 2, n - 1)
    distances = Counter(
        ring_distance(*(assignment_position(key, i, n) for i in colluders), n)
        for key in fixed_keys(trials, f"colluders/{n}")
    )
    chance = 2 / (n - 1)
    expected = trials * chance
    spread = (trials * chance * (1 - chance)) ** 0.5
    assert distances[1] <= expected + 5 * spread, (
        f"adjacent {distances[1]} times, chance {expected:.0f} +- {spread:.0f}"
    )
    # Chi-square over the possible distances: each of the n-1 other positions is equally likely,
    # and distance d < n/2 covers two of them (d = n/2, for even n, only one).
    cells = range(1, n // 2 + 1)
    weight = {d: (1 if 2 * d == n else 2) / (n - 1) for d in cells}
    statistic = sum((distances[d] - trials * weight[d]) ** 2 / (trials * weight[d]) for d in cells)
    assert set(distances) <= set(cells)
    if len(cells) > 1:
        assert statistic < chi_square_limit(len(cells) - 1), (statistic, sorted(distances.items()))


def test_colluders_committing_last_capture_a_partition_at_the_random_rate() -> None:
    """n = 20, P = 20, r = 3, q = 2: the two last committers share a window (capture a partition)
    when their positions are at most 2 apart: 4 of the 19 other positions, not always as before."""
    n, partitions, replication = 20, 20, 3
    trials = 4000
    captured = 0
    for key in fixed_keys(trials, "capture"):
        held = [
            set(assigned_partitions(i, contributors=n, key=key, partitions=partitions, replication=replication))
            for i in (n - 2, n - 1)
        ]
        captured += bool(held[0] & held[1])
    chance = 4 / 19
    spread = (trials * chance * (1 - chance)) ** 0.5
    assert abs(captured - trials * chance) <= 5 * spread, (captured, trials * chance)
