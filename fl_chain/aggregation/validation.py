"""Deterministic per-contribution checks: every honest aggregator excludes the same contributions."""

from __future__ import annotations

import math

import numpy as np

from fl_chain.errors import ConfigError

# Values per chunk of the exact sum of squares: a chunk's per-exponent sums of integers < 2**24
# are exact in float64 for chunks of up to 2**29 values; small chunks also keep temporaries small.
_CHUNK = 1 << 20


def validate_values(
    values: np.ndarray,
    *,
    expected_length: int,
    norm_bound: float | None = None,
    reference: np.ndarray | None = None,
) -> str | None:
    """Why a contribution's slice must be excluded, or None if it is valid.

    Parameters
    ----------
    values:
        One contributor's slice of one partition (1-D float32).
    expected_length:
        The partition's length.
    norm_bound:
        Largest allowed L2 norm, or None for no bound. With per-partition aggregation the
        bound applies to this partition's slice, not to the whole update: a task that means
        a whole-vector bound B over P equal partitions can use for example ``B / sqrt(P)``.
    reference:
        The same slice of the global model the update was trained from. When given, the bound
        applies to the *change* ``values - reference`` (computed in float32, so the same bytes on
        every machine), not to the published vector: a sign-flipped or scaled model moves far
        from the global model although its own norm may look ordinary.

    Returns
    -------
    str or None
        None if valid, else a short reason such as ``"non-finite values"``, ``"length 9 != 10"``
        or ``"norm 123.4 > bound 100"``. The decision is exact and the same on every machine:
        the norm is :func:`l2_norm` and a norm equal to the bound passes.

    Raises
    ------
    ConfigError
        If ``norm_bound`` is negative or NaN.
    """
    if norm_bound is not None and not norm_bound >= 0:
        raise ConfigError(f"norm_bound must be a non-negative number, got {norm_bound!r}")
    if not isinstance(values, np.ndarray) or values.ndim != 1:
        return f"shape {getattr(values, 'shape', type(values).__name__)} is not 1-D"
    if values.dtype != np.float32:
        return f"dtype {values.dtype} is not float32"
    if values.size != expected_length:
        return f"length {values.size} != {expected_length}"
    if not np.isfinite(values).all():
        return "non-finite values"
    if norm_bound is None:
        return None
    what = "norm"
    if reference is not None:
        if reference.shape != values.shape or reference.dtype != np.float32:
            raise ValueError(
                f"reference must be float32 of shape {values.shape}, got {reference.dtype} {reference.shape}"
            )
        with np.errstate(over="ignore"):
            values = values - reference
        if not np.isfinite(values).all():
            return f"change from the global model overflows float32 (bound {norm_bound:g})"
        what = "change norm"
    if not _certainly_within(values, norm_bound):
        norm = l2_norm(values)
        if norm > norm_bound:
            return f"{what} {norm:.10g} > bound {norm_bound:g}"
    return None


def _certainly_within(values: np.ndarray, norm_bound: float) -> bool:
    """True only if ``l2_norm(values) <= norm_bound`` is certain from a fast float64 estimate.

    The squares are exact in float64; their float64 sum in any order (numpy's pairwise sum,
    whatever the CPU) is within ``n * 2**-53 * (1 + tiny) < 2**-22`` of the exact sum for fewer
    than 2**30 terms. An estimate below ``bound**2 * (1 - 2**-20)`` therefore puts the exact sum
    below ``bound**2 * (1 - 2**-22)`` and the rounded norm at or below the bound: the same decision
    as the exact path. Anything else (close calls, rejections) takes the exact :func:`l2_norm`.
    """
    if values.size >= 1 << 30:
        return False
    squares = values.astype(np.float64)
    squares *= squares
    return float(squares.sum()) < norm_bound * norm_bound * (1 - 2.0**-20)


def l2_norm(values: np.ndarray) -> float:
    """The L2 norm of finite float32 values: ``sqrt`` of the correctly rounded sum of squares.

    Equal to ``math.sqrt(math.fsum(float(v) ** 2 for v in values))`` (squares of float32 values
    are exact in float64), computed with exact integer arithmetic so that it is independent of
    summation order, CPU and numpy version, and fast.

    Each value is ``m * 2**(e - 150)`` with an integer mantissa ``m < 2**24`` and biased exponent
    ``e``; its square ``m**2 * 2**(2e - 300)`` is split into two 24-bit integers that are summed per
    exponent exactly, and the per-exponent sums are combined as Python integers.
    """
    if values.dtype != np.float32 or values.ndim != 1:
        raise ValueError(f"l2_norm expects a 1-D float32 array, got {values.dtype} with shape {values.shape}")
    scaled = 0  # the exact sum of squares times 2**300
    bits = values.view(np.uint32)
    for start in range(0, bits.size, _CHUNK):
        chunk = bits[start : start + _CHUNK]
        exponent = (chunk >> 23) & 0xFF
        if (exponent == 0xFF).any():
            raise ValueError("l2_norm expects finite values")
        normal = exponent != 0
        mantissa = (chunk & 0x7FFFFF) | (normal.astype(np.uint32) << 23)
        exponent[~normal] = 1  # subnormals scale like the smallest normal exponent
        square = mantissa.astype(np.uint64)
        square *= square  # < 2**48: exact
        high = np.bincount(exponent, weights=(square >> 24).astype(np.float64), minlength=256)
        low = np.bincount(exponent, weights=(square & 0xFFFFFF).astype(np.float64), minlength=256)
        for e in np.flatnonzero((high != 0) | (low != 0)):
            scaled += ((int(high[e]) << 24) + int(low[e])) << (2 * int(e))
    return math.sqrt(scaled / (1 << 300))  # int / int is correctly rounded in Python
