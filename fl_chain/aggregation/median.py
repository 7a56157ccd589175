"""Coordinate-wise median: robust to a minority of arbitrary contributions."""

from __future__ import annotations

import numpy as np

from fl_chain.aggregation.base import Contribution, Strategy, sorted_stack


class CoordinateMedian(Strategy):
    """Unweighted coordinate-wise median; sample counts are ignored.

    Per coordinate the n values are sorted in float64 (``-0.0`` counted as ``+0.0``). For odd n
    the result is the middle value; for even n it is ``float32((a + b) / 2)`` with ``a + b`` and
    the halving in float64 and a single rounding to float32.
    """

    name = "median"

    def _aggregate_canonical(self, ordered: list[Contribution]) -> np.ndarray:
        stack = sorted_stack(ordered)
        middle = len(ordered) // 2
        if len(ordered) % 2 == 1:
            return np.asarray(stack[middle], dtype=np.float32)
        mean = np.add(stack[middle - 1], stack[middle])
        np.multiply(mean, 0.5, out=mean)  # exact: a power-of-two scaling of a normal float64
        return np.asarray(mean, dtype=np.float32)
