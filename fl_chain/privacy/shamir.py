"""t-of-n Shamir secret sharing of 32-byte secrets over the prime field of the Mersenne prime 2^521 - 1.

A secret ``s`` (a big-endian integer below 2^256) is the constant term of a random polynomial of
degree ``t - 1`` whose other coefficients come from :mod:`secrets`; share ``x`` is the point
``(x, p(x))`` for ``x = 1..n`` (the members' positions). Any ``t`` shares give ``s`` back by Lagrange
interpolation at 0; any ``t - 1`` shares are consistent with every secret alike, so they reveal
nothing. A share serializes to ``SHARE_BYTES`` = 68 bytes: ``x`` as 2 big-endian bytes, then ``y``
as 66 big-endian bytes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from fl_chain.errors import InvalidShareError, NotEnoughSharesError

#: The field's prime, 2^521 - 1 (larger than every 32-byte secret).
PRIME = (1 << 521) - 1
#: Bytes of a secret.
SECRET_BYTES = 32
#: Largest share x-coordinate, hence the largest number of shares.
MAX_SHARES = 0xFFFF
_X_BYTES = 2
_Y_BYTES = 66
#: Bytes of a serialized share.
SHARE_BYTES = _X_BYTES + _Y_BYTES


@dataclass(frozen=True, repr=False)
class Share:
    """The point ``(x, y)`` of a sharing polynomial; ``x`` is the holder's position, 1-based."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if not 1 <= self.x <= MAX_SHARES:
            raise InvalidShareError(f"share x must be in 1..{MAX_SHARES}, got {self.x}")
        if not 0 <= self.y < PRIME:
            raise InvalidShareError("share y must be in the field 0..2^521-2")

    def to_bytes(self) -> bytes:
        """``SHARE_BYTES`` bytes: ``x`` (2, big-endian) then ``y`` (66, big-endian)."""
        return self.x.to_bytes(_X_BYTES, "big") + self.y.to_bytes(_Y_BYTES, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Parse :meth:`to_bytes`; raises :class:`InvalidShareError` on a wrong size or out-of-range value."""
        if len(data) != SHARE_BYTES:
            raise InvalidShareError(f"a share is {SHARE_BYTES} bytes, got {len(data)}")
        return cls(x=int.from_bytes(data[:_X_BYTES], "big"), y=int.from_bytes(data[_X_BYTES:], "big"))

    def __repr__(self) -> str:
        return f"Share(x={self.x})"


def split(secret: bytes, *, threshold: int, count: int) -> list[Share]:
    """Shares ``x = 1..count`` of ``secret``, any ``threshold`` of which reconstruct it.

    Raises
    ------
    ValueError
        If the secret is not 32 bytes or not ``1 <= threshold <= count <= MAX_SHARES``.
    """
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a secret is {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= count <= MAX_SHARES:
        raise ValueError(f"need 1 <= threshold <= count <= {MAX_SHARES}, got threshold {threshold}, count {count}")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return [Share(x=x, y=_evaluate(coefficients, x)) for x in range(1, count + 1)]


def _evaluate(coefficients: list[int], x: int) -> int:
    value = 0
    for coefficient in reversed(coefficients):  # Horner
        value = (value * x + coefficient) % PRIME
    return value


def _interpolate(points: list[Share], at: int) -> int:
    """The value at ``at`` of the polynomial of degree ``len(points) - 1`` through ``points`` (Lagrange)."""
    total = 0
    for i, point in enumerate(points):
        numerator, denominator = 1, 1
        for j, other in enumerate(points):
            if i != j:
                numerator = numerator * (at - other.x) % PRIME
                denominator = denominator * (point.x - other.x) % PRIME
        total = (total + point.y * numerator * pow(denominator, -1, PRIME)) % PRIME
    return total


def combine(shares: Iterable[Share], *, threshold: int) -> bytes:
    """The 32-byte secret of ``shares``; any extra shares beyond ``threshold`` must agree with the first.

    Raises
    ------
    NotEnoughSharesError
        If fewer than ``threshold`` shares are given.
    InvalidShareError
        If two shares have the same x, the shares disagree (one is wrong), or the result is not a
        32-byte secret.
    """
    if threshold < 1:
        raise ValueError(f"threshold must be >= 1, got {threshold}")
    points = sorted(shares, key=lambda share: share.x)
    xs = [point.x for point in points]
    if len(set(xs)) != len(xs):
        raise InvalidShareError(f"two shares have the same x: {sorted(x for x in set(xs) if xs.count(x) > 1)}")
    if len(points) < threshold:
        raise NotEnoughSharesError(f"{len(points)} shares, the threshold is {threshold}: the secret cannot be rebuilt")
    basis = points[:threshold]
    for extra in points[threshold:]:
        if _interpolate(basis, extra.x) != extra.y:
            raise InvalidShareError(f"share x={extra.x} disagrees with shares {[p.x for p in basis]}: one is wrong")
    secret = _interpolate(basis, 0)
    if secret >= 1 << (8 * SECRET_BYTES):
        raise InvalidShareError("the shares rebuild a value larger than a 32-byte secret: one is wrong")
    return secret.to_bytes(SECRET_BYTES, "big")
