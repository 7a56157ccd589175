"""The privacy accountant of DP-FedAvg: epsilon at a task's delta after k rounds, and rounds within a budget.

Each finalized round releases the model once through the Gaussian mechanism of
:mod:`fl_chain.privacy.dp` with noise multiplier z (its discrete Gaussian has the continuous
Gaussian's Rényi divergence bound, so the event is exactly ``GaussianDpEvent(z)``). Every member
takes part in every round (no subsampling, no amplification), so k rounds are that event composed k
times. Neighbouring datasets replace one user's update by the zero update (``REPLACE_SPECIAL``,
"zero-out"; the contributor set is public on chain). Epsilon comes from the Rényi DP accountant of
Google's maintained ``dp-accounting`` package; it is imported only when needed (it takes seconds).

A round that failed because too few contributed released nothing and costs nothing. A round that
failed in aggregation, or a disputed round, may have published some of its noisy partitions before it
failed; the figures here count finalized rounds only (see docs/privacy.md).
"""

from __future__ import annotations

import functools
import math

from fl_chain.errors import ConfigError

#: Largest number of rounds :func:`affordable_rounds` looks at.
MAX_ROUNDS = 1_000_000


def _check(noise_multiplier: float, delta: float) -> None:
    if not noise_multiplier >= 0:
        raise ConfigError(f"noise multiplier must be non-negative, got {noise_multiplier!r}")
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")


@functools.lru_cache(maxsize=1024)
def epsilon(noise_multiplier: float, delta: float, rounds: int) -> float:
    """Epsilon at ``delta`` after ``rounds`` releases with noise multiplier z; ``inf`` if z = 0, 0 for no round.

    Raises
    ------
    ConfigError
        If z is negative, delta is not in (0, 1) or rounds is negative.
    """
    _check(noise_multiplier, delta)
    if rounds < 0:
        raise ConfigError(f"rounds must be non-negative, got {rounds}")
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    try:
        from dp_accounting import dp_event, privacy_accountant, rdp
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ConfigError("differential privacy needs the dp-accounting package: pip install dp-accounting") from None
    accountant = rdp.RdpAccountant(neighboring_relation=privacy_accountant.NeighboringRelation.REPLACE_SPECIAL)
    accountant.compose(dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(noise_multiplier), rounds))
    return float(accountant.get_epsilon(delta))


def affordable_rounds(noise_multiplier: float, delta: float, budget: float, *, limit: int = MAX_ROUNDS) -> int:
    """The largest k <= ``limit`` with ``epsilon(z, delta, k) <= budget`` (0 if not even one round fits).

    Raises
    ------
    ConfigError
        If the budget is not positive, or as :func:`epsilon`.
    """
    _check(noise_multiplier, delta)
    if not 0 < budget < math.inf:
        raise ConfigError(f"epsilon budget must be a positive finite number, got {budget!r}")
    if epsilon(noise_multiplier, delta, 1) > budget:
        return 0
    if epsilon(noise_multiplier, delta, limit) <= budget:
        return limit
    low, high = 1, limit  # epsilon(low) <= budget < epsilon(high); epsilon grows with the rounds
    while high - low > 1:
        middle = (low + high) // 2
        if epsilon(noise_multiplier, delta, middle) <= budget:
            low = middle
        else:
            high = middle
    return low


__all__ = ["MAX_ROUNDS", "affordable_rounds", "epsilon"]
