"""Feldman verifiable secret sharing over secp256k1: t-of-n shares anyone can check against commitments.

A secret ``s`` is a scalar in ``1..n-1`` (``n`` = ``ORDER``, the order of secp256k1's group). The dealer
draws a polynomial ``f(X) = a_0 + a_1 X + ... + a_(t-1) X^(t-1)`` over Z_n with ``a_0 = s`` and the
other coefficients uniform in ``1..n-1``; share ``x`` is ``(x, f(x))`` for ``x = 1..count`` (the holders'
positions). The dealer publishes the commitments ``C_j = a_j * G`` (compressed 33-byte points). A share
``(x, y)`` *verifies* when ``y * G == sum_j x^j * C_j``.

* Any ``t`` verified shares interpolate (Lagrange at 0, mod n) to exactly the committed secret, the
  ``s`` with ``s * G == C_0``: G has prime order, so a share that verifies lies on the committed
  polynomial, whatever the dealer did. A dealer who wants reconstruction to fail can only hand out
  shares that do not verify, and the holder sees it when it checks its own share.
* Any ``t - 1`` shares fit every candidate secret with exactly one polynomial; beyond them, the
  commitments reveal ``s * G``, from which ``s`` is as hard to find as a discrete logarithm (the
  secrets shared here are fresh random scalars: a self-mask seed, a per-round private key).

Points come from peers: one that is not 33 bytes, not a canonical compressed encoding, or not on the
curve is :class:`~fl_chain.errors.InvalidCommitmentError`; a share out of range is
:class:`~fl_chain.errors.InvalidShareError`; never a crash. The point arithmetic is libsecp256k1's
(through ``coincurve``); the scalar arithmetic is Python integers mod n.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from coincurve import PublicKey

from fl_chain.errors import InvalidCommitmentError, InvalidShareError, NotEnoughSharesError

#: The order n of secp256k1's group: shares and secrets are scalars mod n.
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
#: Bytes of a scalar (big-endian).
SCALAR_BYTES = 32
#: Bytes of a compressed point.
POINT_BYTES = 33
#: Largest share x-coordinate, hence the largest number of shares.
MAX_SHARES = 0xFFFF
_X_BYTES = 2
#: Bytes of a serialized share: ``x`` (2 bytes, big-endian) then ``y`` (32 bytes, big-endian).
SHARE_BYTES = _X_BYTES + SCALAR_BYTES


def random_scalar() -> int:
    """A uniform scalar in ``1..n-1`` from the operating system's randomness (rejection sampling)."""
    while True:
        value = int.from_bytes(os.urandom(SCALAR_BYTES), "big")
        if 0 < value < ORDER:
            return value


def scalar_bytes(value: int) -> bytes:
    """The 32 big-endian bytes of a scalar in ``0..n-1``."""
    if not 0 <= value < ORDER:
        raise ValueError("a scalar is in 0..n-1")
    return value.to_bytes(SCALAR_BYTES, "big")


def public_point(scalar: int) -> bytes:
    """``scalar * G``, compressed (33 bytes); ``scalar`` in ``1..n-1``."""
    return PublicKey.from_secret(scalar_bytes(scalar)).format(compressed=True)


def parse_point(data: bytes) -> PublicKey:
    """A point from its canonical compressed encoding.

    Raises
    ------
    InvalidCommitmentError
        If ``data`` is not 33 bytes starting 02 or 03, not on the curve, or not canonical (x >= p).
        The point at infinity has no such encoding, so it is refused too.
    """
    if len(data) != POINT_BYTES or data[0] not in (2, 3):
        raise InvalidCommitmentError(f"a point is {POINT_BYTES} compressed bytes (02 or 03, then x), got {len(data)}")
    try:
        point = PublicKey(bytes(data))
    except (ValueError, TypeError):
        raise InvalidCommitmentError(f"{bytes(data).hex()} is not a point of secp256k1") from None
    if point.format(compressed=True) != data:
        raise InvalidCommitmentError(f"{bytes(data).hex()} is not a canonical point encoding")
    return point


@dataclass(frozen=True, repr=False)
class Share:
    """The point ``(x, y)`` of a sharing polynomial over Z_n; ``x`` is the holder's position, 1-based."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if not 1 <= self.x <= MAX_SHARES:
            raise InvalidShareError(f"share x must be in 1..{MAX_SHARES}, got {self.x}")
        if not 0 <= self.y < ORDER:
            raise InvalidShareError("share y must be a scalar in 0..n-1")

    def to_bytes(self) -> bytes:
        """``SHARE_BYTES`` bytes: ``x`` (2, big-endian) then ``y`` (32, big-endian)."""
        return self.x.to_bytes(_X_BYTES, "big") + self.y.to_bytes(SCALAR_BYTES, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Parse :meth:`to_bytes`; raises :class:`InvalidShareError` on a wrong size or out-of-range value."""
        if len(data) != SHARE_BYTES:
            raise InvalidShareError(f"a share is {SHARE_BYTES} bytes, got {len(data)}")
        return cls(x=int.from_bytes(data[:_X_BYTES], "big"), y=int.from_bytes(data[_X_BYTES:], "big"))

    def __repr__(self) -> str:
        return f"Share(x={self.x})"


@dataclass(frozen=True)
class Commitments:
    """A dealer's Feldman commitments ``C_0..C_(t-1)`` (compressed points); ``t`` is their number.

    Raises
    ------
    InvalidCommitmentError
        If there are none, more than ``MAX_SHARES``, or one is not a valid point.
    """

    points: tuple[bytes, ...]
    _parsed: tuple[PublicKey, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.points) <= MAX_SHARES:
            raise InvalidCommitmentError(f"a sharing has 1..{MAX_SHARES} commitments, got {len(self.points)}")
        object.__setattr__(self, "points", tuple(bytes(p) for p in self.points))
        object.__setattr__(self, "_parsed", tuple(parse_point(p) for p in self.points))

    @property
    def threshold(self) -> int:
        """``t``: how many shares rebuild the secret."""
        return len(self.points)

    @property
    def secret_point(self) -> bytes:
        """``C_0 = s * G``."""
        return self.points[0]

    def to_bytes(self) -> bytes:
        """The points, concatenated (``t * POINT_BYTES`` bytes)."""
        return b"".join(self.points)

    @classmethod
    def from_bytes(cls, data: bytes, *, threshold: int) -> Commitments:
        """Parse ``threshold`` concatenated points; :class:`InvalidCommitmentError` if they are not that."""
        if len(data) != threshold * POINT_BYTES:
            raise InvalidCommitmentError(
                f"{threshold} commitments are {threshold * POINT_BYTES} bytes, got {len(data)}"
            )
        return cls(tuple(data[i : i + POINT_BYTES] for i in range(0, len(data), POINT_BYTES)))

    def expected(self, x: int) -> bytes | None:
        """``sum_j x^j * C_j`` compressed, or None where that sum is the point at infinity (no share verifies)."""
        return _evaluate(self, x)


@lru_cache(maxsize=4096)
def _evaluate(commitments: Commitments, x: int) -> bytes | None:
    # Cached: every aggregator of a round checks the same (owner, holder) shares once per partition.
    terms = [commitments._parsed[0]]
    power = 1
    for point in commitments._parsed[1:]:
        power = power * x % ORDER  # never 0: 1 <= x < n and n is prime
        terms.append(point.multiply(power.to_bytes(SCALAR_BYTES, "big")))
    try:
        return PublicKey.combine_keys(terms).format(compressed=True)
    except ValueError:  # the sum is the point at infinity
        return None


def split(secret: int, *, threshold: int, count: int) -> tuple[list[Share], Commitments]:
    """Shares ``x = 1..count`` of ``secret`` (a scalar in ``1..n-1``), and the commitments they verify against.

    Raises
    ------
    ValueError
        If the secret is not in ``1..n-1`` or not ``1 <= threshold <= count <= MAX_SHARES``.
    """
    if not 0 < secret < ORDER:
        raise ValueError("a secret is a scalar in 1..n-1")
    if not 1 <= threshold <= count <= MAX_SHARES:
        raise ValueError(f"need 1 <= threshold <= count <= {MAX_SHARES}, got threshold {threshold}, count {count}")
    coefficients = [secret] + [random_scalar() for _ in range(threshold - 1)]
    shares = [Share(x=x, y=_evaluate_polynomial(coefficients, x)) for x in range(1, count + 1)]
    return shares, Commitments(tuple(public_point(a) for a in coefficients))


def _evaluate_polynomial(coefficients: Sequence[int], x: int) -> int:
    value = 0
    for coefficient in reversed(coefficients):  # Horner
        value = (value * x + coefficient) % ORDER
    return value


def verify(share: Share, commitments: Commitments) -> bool:
    """Whether ``share`` lies on the committed polynomial: ``y * G == sum_j x^j * C_j``.

    A share with ``y = 0`` never verifies (``0 * G`` has no encoding); an honest dealer deals it with
    probability 2^-256.
    """
    if share.y == 0:
        return False
    return public_point(share.y) == commitments.expected(share.x)


def combine(shares: Iterable[Share], *, commitments: Commitments) -> int:
    """The committed secret, from the ``t`` shares of lowest ``x`` among ``shares`` (verified ones).

    The result is checked against ``C_0``: verified shares always pass, so a failure means an
    unverified share was passed in.

    Raises
    ------
    NotEnoughSharesError
        If fewer than ``t`` distinct shares are given.
    InvalidShareError
        If two shares have the same x, or the result is not the committed secret (a share was wrong).
    """
    threshold = commitments.threshold
    points = sorted(shares, key=lambda share: share.x)
    xs = [point.x for point in points]
    if len(set(xs)) != len(xs):
        raise InvalidShareError(f"two shares have the same x: {sorted(x for x in set(xs) if xs.count(x) > 1)}")
    if len(points) < threshold:
        raise NotEnoughSharesError(f"{len(points)} shares, the threshold is {threshold}: the secret cannot be rebuilt")
    basis = points[:threshold]
    secret = 0
    for i, point in enumerate(basis):
        numerator, denominator = 1, 1
        for j, other in enumerate(basis):
            if i != j:
                numerator = numerator * -other.x % ORDER
                denominator = denominator * (point.x - other.x) % ORDER
        secret = (secret + point.y * numerator * pow(denominator, -1, ORDER)) % ORDER
    if secret == 0 or public_point(secret) != commitments.secret_point:
        raise InvalidShareError("the shares rebuild a secret the dealer did not commit to: a share was not verified")
    return secret
