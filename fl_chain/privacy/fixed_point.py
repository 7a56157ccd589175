"""Fixed-point encoding of float updates into the ring Z_(2^64), where masks add and cancel exactly.

A value ``v`` with ``|v| <= clip`` becomes the integer ``rint(v * 2^f)`` (numpy's ``rint`` on float64:
round half to even, deterministic on every machine), stored two's-complement as ``uint64``. Ring
addition is numpy's wrap-around ``uint64`` addition, so a sum is the same whatever the order of its
terms. Decoding reads the sum as ``int64`` and divides by ``2^f``.

The sum must not wrap, and its decoding must be exact: :func:`check_no_wrap` refuses parameters where
``n`` contributions of magnitude at most ``clip`` can reach more than ``2^53`` in fixed point
(``MAX_EXACT_SUM``; the ring itself would wrap only at ``2^63``). When it passes,
``|decode(sum) - float sum| <= n * 2^-(f+1)`` (:func:`quantization_bound`): each encoded term is off
by at most half a unit of ``2^-f``, and the rest is exact.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from fl_chain.errors import RingOverflowError

#: Bits of the ring Z_(2^k).
RING_BITS = 64
#: Largest magnitude of a fixed-point sum: float64 holds every integer up to it, so decoding is exact.
MAX_EXACT_SUM = 1 << 53
#: Largest scale exponent ``f``: a value must keep at least one integer bit below ``MAX_EXACT_SUM``.
MAX_FRAC_BITS = 52

Ring = npt.NDArray[np.uint64]


def _check_frac_bits(frac_bits: int) -> None:
    if not 0 <= frac_bits <= MAX_FRAC_BITS:
        raise ValueError(f"frac_bits must be in 0..{MAX_FRAC_BITS}, got {frac_bits}")


def max_code(clip: float, frac_bits: int) -> int:
    """Largest magnitude of an encoded value within ``clip``: ``rint(clip * 2^f)``."""
    _check_frac_bits(frac_bits)
    if not (np.isfinite(clip) and clip >= 0):
        raise RingOverflowError(f"the clip bound must be finite and >= 0, got {clip}")
    return int(np.rint(np.float64(clip) * np.float64(2.0**frac_bits)))


def check_no_wrap(n: int, clip: float, frac_bits: int) -> None:
    """Refuse parameters where the sum of ``n`` contributions can wrap or decode inexactly.

    Parameters
    ----------
    n:
        Most contributions in one sum (the round's contributors).
    clip:
        Bound on every coordinate's absolute value, after weighting.
    frac_bits:
        The scale exponent ``f``.

    Raises
    ------
    RingOverflowError
        If ``n * rint(clip * 2^f) > 2^53``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    bound = n * max_code(clip, frac_bits)
    if bound > MAX_EXACT_SUM:
        raise RingOverflowError(
            f"{n} contributions of |v| <= {clip} at scale 2^{frac_bits} can sum to {bound} > 2^53: "
            "lower frac_bits or the clip bound, or cap the number of contributors"
        )


def quantization_bound(n: int, frac_bits: int) -> float:
    """Largest ``|decode(sum) - exact float sum|`` for ``n`` contributions: ``n * 2^-(f+1)``.

    Holds whenever :func:`check_no_wrap` passes for the same ``n``, clip and ``f``.
    """
    _check_frac_bits(frac_bits)
    return n * 2.0 ** -(frac_bits + 1)


def encode(values: npt.ArrayLike, *, clip: float, frac_bits: int) -> Ring:
    """``rint(v * 2^f)`` of each value as ``uint64`` (two's complement), round half to even.

    Raises
    ------
    RingOverflowError
        If a value is not finite or exceeds ``clip`` in magnitude (clip the update first), or if
        ``clip`` itself does not fit (:func:`check_no_wrap` with ``n = 1``).
    """
    check_no_wrap(1, clip, frac_bits)
    array = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(array) | (np.abs(array) > clip)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise RingOverflowError(
            f"value {array.flat[index]} at index {index} is not finite or exceeds the clip bound {clip}: "
            "clip the update before encoding"
        )
    codes = np.rint(array * np.float64(2.0**frac_bits)).astype(np.int64)
    return codes.view(np.uint64)


def ring_sum(parts: Iterable[Ring]) -> Ring:
    """Sum of ``uint64`` vectors modulo 2^64; the same bytes in any order of ``parts``.

    Raises
    ------
    ValueError
        If there are no parts, or they differ in shape or are not ``uint64``.
    """
    total: Ring | None = None
    for part in parts:
        if part.dtype != np.uint64:
            raise ValueError(f"ring elements must be uint64, got {part.dtype}")
        if total is None:
            total = part.copy()
        elif part.shape != total.shape:
            raise ValueError(f"ring vectors differ in shape: {part.shape} and {total.shape}")
        else:
            np.add(total, part, out=total)
    if total is None:
        raise ValueError("ring_sum needs at least one vector")
    return total


def decode(total: Ring, *, frac_bits: int) -> npt.NDArray[np.float64]:
    """The float64 value of a fixed-point sum: ``int64(total) / 2^f`` (exact within ``MAX_EXACT_SUM``)."""
    _check_frac_bits(frac_bits)
    if total.dtype != np.uint64:
        raise ValueError(f"ring elements must be uint64, got {total.dtype}")
    return total.view(np.int64).astype(np.float64) * np.float64(2.0**-frac_bits)
