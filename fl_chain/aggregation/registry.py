"""Strategies by name, as task files name them."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from fl_chain.aggregation.base import Strategy
from fl_chain.aggregation.fedavg import FedAvg
from fl_chain.aggregation.median import CoordinateMedian
from fl_chain.aggregation.trimmed_mean import TrimmedMean
from fl_chain.errors import ConfigError

#: Every strategy by its task-file name.
STRATEGIES: Mapping[str, type[Strategy]] = MappingProxyType(
    {cls.name: cls for cls in (FedAvg, CoordinateMedian, TrimmedMean)}
)


def get_strategy(name: str, **options: Any) -> Strategy:
    """The strategy called ``name``, built with ``options``.

    Raises
    ------
    ConfigError
        If the name is unknown, an option is unknown, or an option's value is invalid;
        the one-line message lists what is valid.
    """
    if not isinstance(name, str) or name not in STRATEGIES:
        raise ConfigError(f"unknown aggregation strategy {name!r}; use one of {', '.join(STRATEGIES)}")
    cls = STRATEGIES[name]
    accepted = list(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) if accepted else "none"
        raise ConfigError(f"aggregation strategy {name!r} has no option {unknown[0]!r}; its options: {valid}")
    return cls(**options)
