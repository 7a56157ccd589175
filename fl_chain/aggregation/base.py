"""Shared types of the aggregation strategies: contributions, the strategy interface, its error.

Every strategy works coordinate-wise on one contiguous slice (partition) of the flat float32
model vector, so aggregating P slices and concatenating them gives the same bytes as aggregating
the whole vector. Determinism rules shared by all strategies:

- contributions are put in canonical order (``contributor.lower()``) before any arithmetic;
- arithmetic is elementwise IEEE-754 float64 in a fixed order, rounded once to float32 at the end;
- inputs must be finite (``validate_values`` excludes the rest before aggregation);
- the floating-point environment must be the IEEE default (round to nearest, no flush-to-zero):
  a library that sets FTZ/DAZ (``-ffast-math``, ``torch.set_flush_denormal(True)``) would change
  results, so aggregation refuses to run then.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

#: Largest sample count a contribution may claim (the contract stores it as uint64).
MAX_SAMPLES = 2**64 - 1


from fl_chain.errors import AggregationError


@dataclass(frozen=True, eq=False)
class Contribution:
    """One contributor's slice of the model vector for one partition.

    Parameters
    ----------
    contributor:
        The contributor's address; compared case-insensitively.
    samples:
        Training samples behind the update (the FedAvg weight), 1 to ``2**64 - 1``.
    values:
        1-D float32 slice; it is read, never modified or copied.

    Raises
    ------
    AggregationError
        If a field has the wrong type, dtype, shape or range.

    Notes
    -----
    Equality is identity (``eq=False``): comparing numpy arrays has no single truth value.
    """

    contributor: str
    samples: int
    values: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.contributor, str) or not self.contributor:
            raise AggregationError(f"contributor must be a non-empty address string, got {self.contributor!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, (int, np.integer)):
            raise AggregationError(f"{self.contributor}: samples must be an integer, got {self.samples!r}")
        if not 1 <= int(self.samples) <= MAX_SAMPLES:
            raise AggregationError(f"{self.contributor}: samples must be between 1 and 2**64 - 1, got {self.samples}")
        object.__setattr__(self, "samples", int(self.samples))
        if not isinstance(self.values, np.ndarray) or self.values.ndim != 1:
            shape = getattr(self.values, "shape", type(self.values).__name__)
            raise AggregationError(f"{self.contributor}: values must be a 1-D array, got shape {shape}")
        if self.values.dtype != np.float32:
            raise AggregationError(f"{self.contributor}: values must be float32, got {self.values.dtype}")


class Strategy(ABC):
    """A deterministic, coordinate-wise aggregation rule.

    Subclasses implement :meth:`_aggregate_canonical`; :meth:`aggregate` checks the input and
    puts it in canonical order first, so no strategy can depend on arrival order.
    """

    #: Name used in task files and by :func:`fl_chain.aggregation.get_strategy`.
    name: ClassVar[str]

    def aggregate(self, contributions: Sequence[Contribution]) -> np.ndarray:
        """Aggregate one partition.

        Parameters
        ----------
        contributions:
            One contribution per contributor, in any order, all of the same length.

        Returns
        -------
        numpy.ndarray
            A new 1-D float32 array of that length: byte-identical for the same set of
            contributions on every machine.

        Raises
        ------
        AggregationError
            If there are no contributions, lengths differ, a contributor appears twice,
            a value is not finite, or the floating-point environment is not the IEEE default.
        """
        ordered = canonical_order(contributions)
        check_float_environment()
        result = self._aggregate_canonical(ordered)
        assert result.dtype == np.float32 and result.shape == ordered[0].values.shape
        return result

    @abstractmethod
    def _aggregate_canonical(self, ordered: list[Contribution]) -> np.ndarray:
        """Aggregate checked contributions that are already in canonical order."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def canonical_order(contributions: Sequence[Contribution]) -> list[Contribution]:
    """Check contributions and sort them by ``contributor.lower()``.

    Raises
    ------
    AggregationError
        If there are none, a contributor appears twice (case-insensitively), lengths differ,
        or a value is NaN or infinite.
    """
    if len(contributions) == 0:
        raise AggregationError("no contributions to aggregate")
    for item in contributions:
        if not isinstance(item, Contribution):
            raise AggregationError(f"expected Contribution objects, got {type(item).__name__}")
    ordered = sorted(contributions, key=lambda c: c.contributor.lower())
    for previous, current in itertools.pairwise(ordered):
        if previous.contributor.lower() == current.contributor.lower():
            raise AggregationError(f"contributor {current.contributor} appears more than once")
    length = ordered[0].values.size
    for item in ordered:
        if item.values.size != length:
            raise AggregationError(
                f"{item.contributor}: length {item.values.size} != {length} of {ordered[0].contributor}"
            )
        if not np.isfinite(item.values).all():
            raise AggregationError(f"{item.contributor}: non-finite values (validate contributions first)")
    return ordered


def sorted_stack(ordered: Sequence[Contribution]) -> np.ndarray:
    """The contributions as a float64 ``(n, length)`` stack, each column sorted ascending.

    ``-0.0`` becomes ``+0.0`` first, so equal values are equal bit patterns and every sort
    algorithm (numpy picks one per CPU) yields the same bytes.
    """
    stack = np.empty((len(ordered), ordered[0].values.size), dtype=np.float64)
    for row, item in zip(stack, ordered):
        np.add(item.values, 0.0, out=row, dtype=np.float64)  # exact; -0.0 + 0.0 == +0.0
    stack.sort(axis=0)
    return stack


# Probes of the floating-point environment: (float64 input, expected float32 bits after rounding).
_ROUNDING_PROBES = np.array([2.0**-140, 1.0 + 2.0**-24 + 2.0**-30, -(1.0 + 2.0**-24 + 2.0**-30)], dtype=np.float64)
_ROUNDING_EXPECTED = np.array([0x00000200, 0x3F800001, 0xBF800001], dtype=np.uint32)
_SUBNORMAL_FLOAT32 = np.array([0x00000001], dtype=np.uint32).view(np.float32)


def check_float_environment() -> None:
    """Raise AggregationError unless float arithmetic is IEEE default in this thread.

    Checks round-to-nearest (not toward zero, up or down), no flush-to-zero of subnormal results
    (FTZ) and no denormals-are-zero on inputs (DAZ): each would make honest nodes disagree.
    """
    rounded = _ROUNDING_PROBES.astype(np.float32).view(np.uint32)
    widened = _SUBNORMAL_FLOAT32.astype(np.float64)
    if not np.array_equal(rounded, _ROUNDING_EXPECTED) or widened[0] != 2.0**-149:
        raise AggregationError(
            "the floating-point environment is not IEEE default (flush-to-zero, denormals-are-zero or a "
            "non-nearest rounding mode is set, e.g. by torch.set_flush_denormal(True) or a -ffast-math library); "
            "aggregates would not match other nodes"
        )
