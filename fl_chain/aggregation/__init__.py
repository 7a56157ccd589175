"""Deterministic, coordinate-wise aggregation of model updates, one partition at a time.

Honest aggregators produce byte-identical float32 output for the same contributions in any
order, on any machine: see :mod:`fl_chain.aggregation.base` for the rules and
:class:`FedAvg` for the canonical formula.
"""

from fl_chain.aggregation.base import AggregationError, Contribution, Strategy
from fl_chain.aggregation.contribution import ContributionRule, Exclusion, PartitionAggregate, Submission
from fl_chain.aggregation.fedavg import FedAvg
from fl_chain.aggregation.median import CoordinateMedian
from fl_chain.aggregation.reference import reference_fedavg
from fl_chain.aggregation.registry import STRATEGIES, get_strategy
from fl_chain.aggregation.trimmed_mean import TrimmedMean
from fl_chain.aggregation.validation import l2_norm, validate_values

__all__ = [
    "STRATEGIES",
    "AggregationError",
    "Contribution",
    "ContributionRule",
    "CoordinateMedian",
    "Exclusion",
    "FedAvg",
    "PartitionAggregate",
    "Strategy",
    "Submission",
    "TrimmedMean",
    "get_strategy",
    "l2_norm",
    "reference_fedavg",
    "validate_values",
]
