"""The Python mirror of the aggregator assignment is balanced and covers every partition."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from fl_chain.assignment import aggregator_slot, aggregators_of, assigned_partitions


@given(
    n=st.integers(1, 70),
    partitions=st.integers(1, 70),
    replication=st.integers(1, 64),
    offset_seed=st.integers(0, 10**9),
)
def test_every_partition_gets_min_r_n_distinct_aggregators(n: int, partitions: int, replication: int, offset_seed: int) -> None:
    """Each partition has min(r, n) distinct aggregators, consistent with aggregator_slot."""
    offset = offset_seed % n
    for p in range(partitions):
        aggregators = aggregators_of(p, contributors=n, offset=offset, replication=replication)
        assert len(aggregators) == len(set(aggregators)) == min(replication, n)
        for j, index in enumerate(aggregators):
            assert aggregator_slot(index, p, contributors=n, offset=offset, replication=replication) == j


@given(n=st.integers(2, 64), offset_seed=st.integers(0, 10**9))
def test_partitions_equal_contributors_gives_each_node_r_partitions(n: int, offset_seed: int) -> None:
    """With P = N and r = 2 every contributor aggregates exactly two partitions."""
    offset = offset_seed % n
    load = Counter(
        len(assigned_partitions(i, contributors=n, offset=offset, partitions=n, replication=2)) for i in range(n)
    )
    assert load == Counter({2: n})
