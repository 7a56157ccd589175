"""When an idle node looks for the next block: shortly before it is due, then often, not all the time."""

from __future__ import annotations

import statistics
from collections import deque

#: Measured block intervals kept; their median is the estimate: a late look lengthens one interval and
#: shortens the next, and a chain that mines a late block and the next at once gives one short one.
SAMPLES = 8
#: Share of the expected interval slept before the first look at a block that is not yet due.
EARLY = 0.8


class BlockWatch:
    """Learns a chain's block interval from the blocks a node sees, and says how long to sleep
    before looking again.

    Until it has seen two blocks it says ``fastest``. Afterwards the first look after a block is
    put off to ``EARLY`` of the interval, and the looks that follow come every ``fastest`` seconds,
    so a node wakes within ``fastest`` of a new block at a few requests per block, whatever the
    block time (0.2 s on a test chain, seconds on a production one). Pure: the caller passes times.
    """

    def __init__(self, fastest: float) -> None:
        self.fastest = fastest
        self._seen: tuple[int, float] | None = None  # (block number, when first seen)
        self._intervals: deque[float] = deque(maxlen=SAMPLES)

    @property
    def interval(self) -> float | None:
        """The block interval estimated so far (seconds), or ``None``."""
        return statistics.median(self._intervals) if self._intervals else None

    def observe(self, number: int, now: float) -> None:
        """Record that the chain's head was ``number`` at ``now`` (monotonic seconds)."""
        if self._seen is not None and number > self._seen[0]:
            self._intervals.append((now - self._seen[1]) / (number - self._seen[0]))
        if self._seen is None or number != self._seen[0]:
            self._seen = (number, now)

    def sleep_before_look(self, now: float) -> float:
        """Seconds to sleep before the next look for a new block."""
        interval = self.interval
        if interval is None or self._seen is None:
            return self.fastest
        return max(self.fastest, self._seen[1] + EARLY * interval - now)
