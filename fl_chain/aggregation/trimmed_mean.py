"""Coordinate-wise trimmed mean: drop the extremes, average the rest."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from fl_chain.aggregation.base import AggregationError, Contribution, Strategy, sorted_stack
from fl_chain.errors import ConfigError


class TrimmedMean(Strategy):
    """Unweighted coordinate-wise mean after trimming ``k`` values at each end.

    Parameters
    ----------
    trim_fraction:
        In ``[0, 0.5)``. With n contributions, ``k = floor(trim_fraction * n)`` smallest and ``k``
        largest values of every coordinate are dropped; ``trim_fraction * n`` is computed exactly
        from the number as written (``Fraction(repr(trim_fraction))``, so 0.29 of 100 trims 29).

    Raises
    ------
    ConfigError
        If ``trim_fraction`` is not a number in ``[0, 0.5)``.

    Notes
    -----
    The kept values are summed in float64 in ascending order (``-0.0`` counted as ``+0.0``) starting
    from ``+0.0``, divided by ``n - 2k`` in float64 and rounded once to float32. ``trim_fraction = 0``
    is the plain unweighted mean (summed in sorted order, so not FedAvg with equal weights).
    """

    name = "trimmed_mean"

    def __init__(self, *, trim_fraction: float = 0.1) -> None:
        if isinstance(trim_fraction, bool) or not isinstance(trim_fraction, (int, float)):
            raise ConfigError(f"trim_fraction must be a number in [0, 0.5), got {trim_fraction!r}")
        if not (math.isfinite(trim_fraction) and 0 <= trim_fraction < 0.5):
            raise ConfigError(f"trim_fraction must be in [0, 0.5), got {trim_fraction!r}")
        self.trim_fraction = float(trim_fraction)
        self._fraction = Fraction(repr(self.trim_fraction))

    def trimmed_count(self, contributors: int) -> int:
        """``k``: how many values are dropped at each end of a coordinate with ``contributors`` values."""
        return math.floor(self._fraction * contributors)

    def _aggregate_canonical(self, ordered: list[Contribution]) -> np.ndarray:
        n = len(ordered)
        k = self.trimmed_count(n)
        if n - 2 * k < 1:  # cannot happen for trim_fraction < 0.5; kept as a guard
            raise AggregationError(f"trimming {k} of {n} values at each end leaves none")
        stack = sorted_stack(ordered)
        acc = np.zeros(stack.shape[1], dtype=np.float64)
        for row in stack[k : n - k]:
            np.add(acc, row, out=acc)
        np.divide(acc, np.float64(n - 2 * k), out=acc)
        return acc.astype(np.float32)

    def __repr__(self) -> str:
        return f"TrimmedMean(trim_fraction={self.trim_fraction!r})"
