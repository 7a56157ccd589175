"""User-level differential privacy (DP-FedAvg, McMahan et al. 2018) with byte-identical noise.

Every honest aggregator of a partition must commit the same bytes, so the Gaussian noise cannot
come from numpy's float distributions (their ``log``/``exp``/``cos`` are CPU-dispatched SIMD code
whose last ulp may differ between machines, and ``Generator`` streams may change between numpy
versions). This module computes the mechanism with integers only, and turns the result into
floats with correctly rounded IEEE operations afterwards.

The mechanism, per round (z = noise multiplier, C = clip norm, n = counted contributions)
-----------------------------------------------------------------------------------------
1. **Grid.** ``g = fl(z * C) / 1024`` (``fl(C) / 1024`` when z = 0): the noise has standard
   deviation :data:`NOISE_SIGMA_UNITS` = 1024 grid units, i.e. z * C on the sum of updates.
2. **Quantized change.** An aggregator reads a contributor's partition slice ``v`` (float32) and
   the global model's slice ``b`` and computes ``q = rint((float64(v) - float64(b)) / g)``
   (:func:`quantize_change`): integers, the same on every machine (a float64 subtraction, a
   division and an exact rounding).
3. **Clipping.** A contributor clips its *whole* change to C before splitting it into partitions
   (:func:`clip_update`): it shrinks its change until the integer vector ``q`` the aggregators will
   compute from its published float32 values has ``sum(q**2) <= K2`` over the whole model, with
   ``K2 = floor((C / g)**2)`` (:meth:`DpMechanism.bound_squared`, exact rational arithmetic).
   An aggregator sees only its partition and enforces the same bound there
   (:meth:`DpMechanism.exclusion_reason`): a slice with ``sum(q**2) > K2`` is excluded alike by every
   honest aggregator. The partition check is a robustness bound, not the privacy argument: a
   dishonest contributor could spend C in every partition, but its own update needs no protection;
   every honest contributor's whole change is within C.
4. **Sum and noise.** ``S = sum(q_i)`` over the counted contributions (int64, exact), plus integer
   noise ``k`` drawn per coordinate from the discrete Gaussian N_Z(0, 1024**2) (below).
5. **Release.** ``float32(float64(b) + float64(S + k) * g / n)``: the unweighted average (every
   contributor weighs 1, as in user-level DP-FedAvg) with noise of standard deviation z * C / n.
   Everything after the integer ``S + k`` is post-processing of public values (``b``, ``g``, ``n``),
   so its float rounding cannot weaken the guarantee (unlike float noise, Mironov 2012).

Privacy. Neighbouring rounds differ by one user's change being replaced by zero ("zero-out"
adjacency, Kairouz et al. 2021; n and the contributor set are public on chain). The integer sum has
L2 sensitivity ``sqrt(K2) <= C / g`` grid units, and the noise is N_Z(0, sigma**2) per coordinate
with ``sigma = 1024 = z * C / g`` (up to the rounding of ``fl(z * C)``, a relative 2**-53). By
Canonne, Kamath and Steinke 2020 ("The Discrete Gaussian for Differential Privacy", Theorem 4 and
Proposition 5), the discrete Gaussian of an integer query satisfies the same Rényi divergence bound
as the continuous Gaussian: ``D_alpha <= alpha * Delta**2 / (2 sigma**2) = alpha / (2 z**2)``. So the
accountant's ``GaussianDpEvent(z)`` is exact for this mechanism, not an approximation. Quantizing to
the grid costs utility, not privacy: it adds at most g/2 per coordinate and contribution, 1/2048 of
the noise's standard deviation on the sum.

The sampler. Coordinate ``i`` of a round's noise uses AES-256-CTR block ``i`` (16 bytes: a uniform
128-bit integer U) under a key from HKDF-SHA256 of the round's on-chain seed, the task and the round
(:func:`noise_key`); ``k`` is the smallest ``j`` with ``U < T_j``, where ``T_j = floor(2**128 * CDF(j))``
is a table of the discrete Gaussian's CDF over ``|j| <= 14 * sigma``, computed once with Python's
``decimal`` module (its arithmetic is specified digit for digit and its ``exp`` is correctly rounded:
the table is the same integers everywhere). Indexing by the global coordinate means a partition's
slice of the noise is the same whatever the partitioning. The sampled law differs from the exact
discrete Gaussian by at most ``29 * 1024 * 2**-128 + 2**-140 < 2**-113`` in total variation per
coordinate (the CDF's rounding and the cut tails): for 10**9 coordinates and 10**4 rounds that adds
below 2**-65 to delta. AES in counter mode stands in for uniform randomness (a computational
assumption, as for any PRG-based DP implementation).

What the noise does not hide. The round seed is public to whoever reads the chain, so anyone with the
chain can recompute and subtract the noise, as the aggregators do; without secure aggregation the
aggregators see every update anyway. DP here protects the released models against everyone who does
not hold the chain's round seeds. :func:`contributor_noise_units` is the variant for secure
aggregation, where each contributor adds its own secret share of the noise.
"""

from __future__ import annotations

import decimal
import functools
import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from fl_chain.errors import AggregationError, ConfigError

#: Standard deviation of the aggregator noise in grid units: the grid is z * C / 1024.
NOISE_SIGMA_UNITS = 1024
#: Tail cut of the noise table, in standard deviations (the mass beyond is below 2**-140).
TAIL_SIGMAS = 14
#: Smallest and largest noise multiplier (0 means clipping and unweighted averaging without noise).
MIN_NOISE_MULTIPLIER = 0.01
MAX_NOISE_MULTIPLIER = 100.0
#: Digits of the decimal arithmetic that builds the CDF table (2**-128 is about 3e-39).
_DECIMAL_DIGITS = 60
#: Coordinates per chunk of the exact sum of squares (each square < 2**40, a chunk sum < 2**60).
_CHUNK = 1 << 20
_HKDF_SALT = b"fl-chain/dp-noise/v1"


@dataclass(frozen=True)
class DpMechanism:
    """The DP-FedAvg settings of a task: noise multiplier z and clip norm C.

    Raises
    ------
    ConfigError
        If z is not 0 or in [:data:`MIN_NOISE_MULTIPLIER`, :data:`MAX_NOISE_MULTIPLIER`], or C is
        not a positive finite number.
    """

    noise_multiplier: float
    clip_norm: float

    def __post_init__(self) -> None:
        z, c = self.noise_multiplier, self.clip_norm
        if (
            isinstance(z, bool)
            or not isinstance(z, (int, float))
            or not (z == 0 or MIN_NOISE_MULTIPLIER <= z <= MAX_NOISE_MULTIPLIER)
        ):
            raise ConfigError(
                f"dp_noise_multiplier must be 0 (no noise) or between {MIN_NOISE_MULTIPLIER:g} and "
                f"{MAX_NOISE_MULTIPLIER:g}, got {z!r}"
            )
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not (0 < c < math.inf):
            raise ConfigError(f"dp_clip_norm must be a positive finite number, got {c!r}")
        object.__setattr__(self, "noise_multiplier", float(z))
        object.__setattr__(self, "clip_norm", float(c))

    @property
    def grid(self) -> float:
        """The grid step g of quantized changes: ``fl(z * C) / 1024`` (``fl(C) / 1024`` when z = 0)."""
        scale = self.noise_multiplier * self.clip_norm if self.noise_multiplier > 0 else self.clip_norm
        return scale / NOISE_SIGMA_UNITS

    @functools.cached_property
    def bound_squared(self) -> int:
        """``floor((C / g)**2)``: the largest ``sum(q**2)`` of a clipped change, in grid units squared."""
        ratio = Fraction(self.clip_norm) / Fraction(self.grid)
        return math.floor(ratio * ratio)

    @property
    def noisy(self) -> bool:
        """Whether noise is added (z > 0)."""
        return self.noise_multiplier > 0

    def quantize(self, values: np.ndarray, base: np.ndarray) -> np.ndarray | None:
        """:func:`quantize_change` on this mechanism's grid."""
        return quantize_change(values, base, self.grid)

    def exclusion_reason(self, values: np.ndarray, base: np.ndarray) -> str | None:
        """Why a finite float32 slice of the right length must be excluded under the clip norm; None if it counts."""
        q = self.quantize(values, base)
        if q is None or squared_norm_units(q) > self.bound_squared:
            size = "too large" if q is None else f"{math.sqrt(squared_norm_units(q)) * self.grid:.6g}"
            return f"change norm {size} in this partition > dp_clip_norm {self.clip_norm:g}"
        return None


def quantize_change(values: np.ndarray, base: np.ndarray, grid: float) -> np.ndarray | None:
    """``rint((float64(values) - float64(base)) / grid)`` as int64; None if a value is beyond ``2**52`` units.

    Each step is a correctly rounded IEEE operation or an exact rounding, so the integers are the
    same on every machine.
    """
    change = values.astype(np.float64)
    change -= base
    change /= grid
    np.rint(change, out=change)
    if change.size and not float(np.abs(change).max()) <= 2.0**52:
        return None
    return change.astype(np.int64)


def squared_norm_units(q: np.ndarray) -> int:
    """``sum(q**2)`` of a quantized change, exactly (Python integers beyond int64)."""
    if q.size and int(np.abs(q).max()) >= 1 << 20:
        return sum(int(x) * int(x) for x in q.tolist())
    total = 0
    for start in range(0, q.size, _CHUNK):
        chunk = q[start : start + _CHUNK]
        total += int(np.dot(chunk, chunk))  # int64 dot: each square < 2**40, a chunk < 2**60
    return total


def clip_update(trained: np.ndarray, global_model: np.ndarray, mechanism: DpMechanism) -> np.ndarray:
    """The float32 vector a contributor publishes: its change from ``global_model`` clipped to C.

    The change is scaled down to L2 norm C (if larger), added to the global model and rounded to
    float32, and shrunk further until the aggregators' quantization of the published vector
    (:func:`quantize_change`) has ``sum(q**2) <= K2`` over the whole vector, so that every partition
    passes every honest aggregator's check and the whole change is within the privacy bound. In the
    pathological case where float32 cannot represent a small enough change, it publishes the
    global model itself (a zero change).
    """
    if trained.shape != global_model.shape:
        raise AggregationError(f"update shape {trained.shape} != global model shape {global_model.shape}")
    base = global_model.astype(np.float64)
    change = trained.astype(np.float64) - base
    if not np.isfinite(change).all():
        return global_model.copy()
    norm = float(np.sqrt(np.dot(change, change)))
    scale = 1.0 if norm <= mechanism.clip_norm else mechanism.clip_norm / norm
    for _ in range(64):
        published = (base + change * scale).astype(np.float32)
        q = mechanism.quantize(published, global_model)
        if q is not None and squared_norm_units(q) <= mechanism.bound_squared:
            return published
        scale *= 0.999
    return global_model.copy()


def noisy_mean(
    base: np.ndarray, quantized: Sequence[np.ndarray], noise_units: np.ndarray | None, grid: float
) -> np.ndarray:
    """``float32(float64(base) + float64(sum(quantized) + noise) * grid / n)``: the released slice.

    The integer sum is exact (int64) and independent of order; the float steps are one multiplication,
    one division, one addition and one rounding to float32, each correctly rounded.
    """
    if not quantized:
        raise AggregationError("no contributions to average")
    total = np.zeros(base.size, dtype=np.int64)
    for q in quantized:
        total += q
    if noise_units is not None:
        total += noise_units
    if total.size and int(np.abs(total).max()) >= 1 << 53:
        raise AggregationError("quantized sum beyond 2**53 grid units: lower the noise multiplier's range")
    result = total.astype(np.float64)
    result *= grid
    result /= float(len(quantized))
    result += base
    return result.astype(np.float32)


# -- noise ------------------------------------------------------------------------------------------


def noise_key(seed: bytes, task_id: int, round_: int) -> bytes:
    """The AES-256 key of a round's noise: HKDF-SHA256 of the round's on-chain seed, the task and the round."""
    if len(seed) != 32:
        raise ConfigError(f"a round seed is 32 bytes, got {len(seed)}")
    info = b"fl-chain/dp-noise" + task_id.to_bytes(32, "big") + round_.to_bytes(32, "big")
    return _hkdf_sha256(seed, salt=_HKDF_SALT, info=info)


def _hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) with a 32-byte output: one extract, one expand block."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def aggregator_noise_units(key: bytes, offset: int, length: int) -> np.ndarray:
    """Noise of coordinates ``[offset, offset + length)`` in grid units: N_Z(0, 1024**2) each, int64.

    The same integers for the same key on every machine, and a slice of a longer range is the same
    as the range computed alone.
    """
    return _discrete_gaussian(key, offset, length, Fraction(NOISE_SIGMA_UNITS**2))


def contributor_noise_units(key: bytes, offset: int, length: int, *, contributors: int) -> np.ndarray:
    """One contributor's share of the noise, for secure aggregation: N_Z(0, 1024**2 / n) per coordinate.

    Under secure aggregation each of the ``n = contributors`` contributors adds this to its quantized
    change (in the grid units of :attr:`DpMechanism.grid`) with a key only it knows, so no one learns
    the total noise. The sum of n such shares has variance 1024**2, the aggregator noise's; it is not
    exactly a discrete Gaussian, but close to one in Rényi divergence while ``1024**2 / n`` is well
    above 1 (Kairouz, Liu and Steinke 2021, "The Distributed Discrete Gaussian Mechanism for
    Federated Learning with Secure Aggregation", Theorem 1), which holds up to n of about 10**5. A
    dropped contributor's share is missing: the remaining noise is that of n - 1 shares.
    """
    if isinstance(contributors, bool) or not isinstance(contributors, int) or contributors < 1:
        raise ConfigError(f"contributors must be a positive integer, got {contributors!r}")
    return _discrete_gaussian(key, offset, length, Fraction(NOISE_SIGMA_UNITS**2, contributors))


def _discrete_gaussian(key: bytes, offset: int, length: int, variance: Fraction) -> np.ndarray:
    if len(key) != 32:
        raise ConfigError(f"a noise key is 32 bytes, got {len(key)}")
    if offset < 0 or length < 0 or offset + length > 1 << 64:
        raise ConfigError(f"noise range [{offset}, {offset + length}) is out of range")
    if length == 0:
        return np.zeros(0, dtype=np.int64)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(key), modes.CTR(offset.to_bytes(16, "big"))).encryptor()
    words = np.frombuffer(encryptor.update(bytes(16 * length)) + encryptor.finalize(), dtype=">u8")
    high, low = words[0::2].astype(np.uint64), words[1::2].astype(np.uint64)
    table = _cdf_table(variance)
    # First index j with T_j > U: by the high word, then the low word where high words tie.
    first = np.searchsorted(table.high, high, side="left")
    after = np.searchsorted(table.high, high, side="right")
    index = after.copy()
    for i in np.flatnonzero(first != after):  # a high word equal to some T_j's: probability ~2**-50
        u = (int(high[i]) << 64) | int(low[i])
        j = int(first[i])
        while j < int(after[i]) and table.thresholds[j] <= u:
            j += 1
        index[i] = j
    index = np.minimum(index, table.high.size - 1)  # U beyond the last threshold: the top of the tail
    return index.astype(np.int64) - table.reach


@dataclass(frozen=True, eq=False)
class _CdfTable:
    """``T_j = floor(2**128 * P(K <= j - reach))`` for j = 0 .. 2 * reach, split into 64-bit words."""

    reach: int
    thresholds: tuple[int, ...]
    high: np.ndarray


@functools.lru_cache(maxsize=8)
def _cdf_table(variance: Fraction) -> _CdfTable:
    """The CDF table of N_Z(0, variance) cut at 14 standard deviations, computed in decimal arithmetic."""
    reach = math.ceil(TAIL_SIGMAS * math.sqrt(variance))
    with decimal.localcontext() as context:
        context.prec = _DECIMAL_DIGITS
        context.rounding = decimal.ROUND_HALF_EVEN
        half = decimal.Decimal(2 * variance.numerator)
        denominator = decimal.Decimal(variance.denominator)
        # exp(-j**2 / (2 * variance)) for j = 0 .. reach; each exp is correctly rounded.
        weights = [(-(decimal.Decimal(j * j) * denominator) / half).exp() for j in range(reach + 1)]
        total = weights[0] + 2 * sum(weights[1:], decimal.Decimal(0))
        scale = decimal.Decimal(2**128) / total
        thresholds = []
        cumulative = decimal.Decimal(0)
        for j in range(-reach, reach + 1):
            cumulative += weights[abs(j)]
            thresholds.append(min(int((cumulative * scale).to_integral_value(decimal.ROUND_FLOOR)), 2**128 - 1))
    high = np.array([t >> 64 for t in thresholds], dtype=np.uint64)
    return _CdfTable(reach=reach, thresholds=tuple(thresholds), high=high)


__all__ = [
    "MAX_NOISE_MULTIPLIER",
    "MIN_NOISE_MULTIPLIER",
    "NOISE_SIGMA_UNITS",
    "DpMechanism",
    "aggregator_noise_units",
    "clip_update",
    "contributor_noise_units",
    "noise_key",
    "noisy_mean",
    "quantize_change",
    "squared_norm_units",
]
