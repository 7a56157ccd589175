"""The one contribution rule: which updates count in a partition's aggregate, and that aggregate.

Every honest aggregator and every audit apply this rule to the same inputs, so they exclude the
same contributions and produce the same bytes. Pure: the caller fetches and verifies the content
(an update whose content is *unavailable* is not the rule's business: the caller waits for it, or
the chain excludes it) and hands over what it got, one :class:`Submission` per contributor.

A submission counts in a partition unless

1. its content did not verify (an invalid manifest or blob: ``values`` is None),
2. it claims more samples than the task's ``max_samples`` (the contract refuses such commits too),
3. its slice is not finite, not of the partition's length, or (with ``norm_bound``) changes the
   partition's base values, the global model the round trained from, by more than the bound in L2
   norm (:func:`~fl_chain.aggregation.validation.validate_values`).

The counted submissions are aggregated by the task's strategy in canonical order (by address,
case-insensitively); when none counts, the partition keeps its base values.

With differential privacy (``dp``, :mod:`fl_chain.privacy.dp`) the norm bound is the clip norm, on the
submission's change quantized to the mechanism's grid, and the aggregate is the unweighted mean of the
counted changes plus the round's deterministic noise for the partition's slice
(``noise_key`` and ``offset`` of :meth:`ContributionRule.aggregate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fl_chain.aggregation.base import Contribution, Strategy, canonical_order, check_float_environment
from fl_chain.aggregation.validation import validate_values
from fl_chain.errors import AggregationError, ConfigError
from fl_chain.privacy.dp import DpMechanism, aggregator_noise_units, noisy_mean


@dataclass(frozen=True, eq=False)
class Submission:
    """One contributor's slice of one partition, as its aggregator fetched it.

    Parameters
    ----------
    contributor:
        The contributor's address.
    samples:
        The sample count committed on chain with the update (its FedAvg weight).
    values:
        The verified 1-D float32 slice, or None if the update's content did not verify.
    problem:
        Why ``values`` is None (for logs), if it is.
    """

    contributor: str
    samples: int
    values: np.ndarray | None
    problem: str | None = None


@dataclass(frozen=True)
class Exclusion:
    """A submission that does not count, and why."""

    contributor: str
    reason: str


@dataclass(frozen=True, eq=False)
class PartitionAggregate:
    """The outcome of the rule for one partition.

    Attributes
    ----------
    values:
        A new 1-D float32 array: the strategy's aggregate of the counted submissions, or a copy of
        the base values when none counts.
    counted:
        Addresses of the submissions that count, in canonical order.
    excluded:
        The submissions that do not count, in canonical order, each with its reason.
    """

    values: np.ndarray
    counted: tuple[str, ...]
    excluded: tuple[Exclusion, ...]


@dataclass(frozen=True)
class ContributionRule:
    """Which submissions count in a partition, and how they are combined.

    Build it from a task with :meth:`fl_chain.protocol.task.TaskSpec.contribution_rule`.

    Parameters
    ----------
    strategy:
        The task's aggregation strategy.
    norm_bound:
        Per-partition L2 bound on a submission's change from the base values; None for no bound.
    max_samples:
        Largest sample count a submission may claim; None for no cap.
    dp:
        DP-FedAvg's clip norm and noise multiplier; None for no differential privacy. It needs the
        strategy FedAvg and no ``norm_bound`` (the clip norm is the bound).

    Raises
    ------
    ConfigError
        If ``norm_bound`` is negative or NaN, or ``max_samples`` is not a positive integer.
    """

    strategy: Strategy
    norm_bound: float | None = None
    max_samples: int | None = None
    dp: DpMechanism | None = None

    def __post_init__(self) -> None:
        if self.dp is not None and (self.strategy.name != "fedavg" or self.norm_bound is not None):
            raise ConfigError("differential privacy needs strategy fedavg and no norm_bound (the clip norm bounds)")
        if self.norm_bound is not None and not self.norm_bound >= 0:
            raise ConfigError(f"norm_bound must be a non-negative number, got {self.norm_bound!r}")
        if self.max_samples is not None and (
            isinstance(self.max_samples, bool) or not isinstance(self.max_samples, int) or self.max_samples < 1
        ):
            raise ConfigError(f"max_samples must be a positive integer, got {self.max_samples!r}")

    def exclusion_reason(self, submission: Submission, base: np.ndarray) -> str | None:
        """Why ``submission`` does not count in the partition whose base values are ``base``; None if it counts."""
        if submission.values is None:
            return submission.problem or "content did not verify"
        if self.max_samples is not None and submission.samples > self.max_samples:
            return f"claims {submission.samples} samples, above the task's max_samples {self.max_samples}"
        reason = validate_values(
            submission.values, expected_length=base.size, norm_bound=self.norm_bound, reference=base
        )
        if reason is None and self.dp is not None:
            reason = self.dp.exclusion_reason(submission.values, base)
        return reason

    def aggregate(
        self,
        base: np.ndarray,
        submissions: Sequence[Submission],
        *,
        noise_key: bytes | None = None,
        offset: int = 0,
    ) -> PartitionAggregate:
        """Apply the rule to one partition.

        Parameters
        ----------
        base:
            The partition's slice of the global model the round trained from (1-D float32).
        submissions:
            One per contributor whose update the chain counts in this partition, in any order.
        noise_key:
            With differential privacy: the round's noise key
            (:func:`fl_chain.privacy.dp.noise_key` of its on-chain seed, task and round). Required
            when the rule adds noise, ignored otherwise.
        offset:
            The partition's first coordinate in the model vector (where its noise starts).

        Returns
        -------
        PartitionAggregate
            The same bytes for the same submissions in any order, on every machine.

        Raises
        ------
        AggregationError
            If a contributor appears twice, a counted submission's sample count is out of range, or
            the rule adds noise and ``noise_key`` is missing.
        """
        if self.dp is not None and self.dp.noisy and noise_key is None:
            raise AggregationError("a differentially private aggregate needs the round's noise key")
        counted: list[Contribution] = []
        excluded: list[Exclusion] = []
        for submission in sorted(submissions, key=lambda s: s.contributor.lower()):
            reason = self.exclusion_reason(submission, base)
            if reason is None:
                assert submission.values is not None
                counted.append(Contribution(submission.contributor, submission.samples, submission.values))
            else:
                excluded.append(Exclusion(submission.contributor, reason))
        if not counted:
            values = base.copy()
        elif self.dp is None:
            values = self.strategy.aggregate(counted)
        else:
            values = self._noisy_mean(base, counted, noise_key, offset)
        return PartitionAggregate(
            values=values, counted=tuple(c.contributor for c in counted), excluded=tuple(excluded)
        )

    def _noisy_mean(
        self, base: np.ndarray, counted: list[Contribution], noise_key: bytes | None, offset: int
    ) -> np.ndarray:
        """DP-FedAvg of one partition: the unweighted mean of the quantized changes plus the round's noise."""
        assert self.dp is not None
        check_float_environment()
        quantized = []
        for contribution in canonical_order(counted):
            q = self.dp.quantize(contribution.values, base)
            assert q is not None  # exclusion_reason let it count
            quantized.append(q)
        noise = aggregator_noise_units(noise_key, offset, base.size) if self.dp.noisy and noise_key else None
        return noisy_mean(base, quantized, noise, self.dp.grid)
