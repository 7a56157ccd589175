"""BlockWatch: an idle node looks for the next block shortly before it is due, then often."""

from __future__ import annotations

import pytest

from fl_chain.node.block_watch import EARLY, BlockWatch


def test_before_two_blocks_it_looks_at_the_fastest_rate() -> None:
    watch = BlockWatch(0.05)
    assert watch.sleep_before_look(0.0) == 0.05
    watch.observe(10, 0.0)
    assert watch.interval is None
    assert watch.sleep_before_look(0.01) == 0.05


def test_it_sleeps_until_shortly_before_the_next_block_is_due_then_looks_often() -> None:
    # Prepare: blocks every 2 s, seen at once
    watch = BlockWatch(0.05)
    for n, t in [(1, 0.0), (2, 2.0), (3, 4.0)]:
        watch.observe(n, t)

    # Execute / Assert: just after block 3, sleep until EARLY of the interval; past that, look often
    assert watch.interval == pytest.approx(2.0)
    assert watch.sleep_before_look(4.0) == pytest.approx(EARLY * 2.0)
    assert watch.sleep_before_look(4.0 + EARLY * 2.0) == 0.05
    watch.observe(3, 5.9)  # the same block seen again changes nothing
    assert watch.sleep_before_look(5.9) == 0.05


def test_late_looks_and_bursts_do_not_move_the_estimate_and_skipped_blocks_are_divided() -> None:
    watch = BlockWatch(0.05)
    watch.observe(1, 0.0)
    watch.observe(2, 1.0)  # seen on time: 1 s
    watch.observe(3, 2.7)  # seen 0.7 s late (the node was busy): 1.7 s
    watch.observe(4, 3.0)  # and the next on time: 0.3 s
    watch.observe(7, 6.0)  # three blocks in 3 s: 1 s
    watch.observe(8, 7.6)  # a late block (1.6 s) ...
    watch.observe(9, 7.63)  # ... and the next mined at once (0.03 s)
    assert watch.interval == pytest.approx(1.0)
