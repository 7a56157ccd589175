"""The contribution rule alone: which submissions count in a partition, and the aggregate they make."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fl_chain.aggregation import (
    AggregationError,
    Contribution,
    ContributionRule,
    CoordinateMedian,
    FedAvg,
    Submission,
    TrimmedMean,
    l2_norm,
    reference_fedavg,
)
from fl_chain.errors import ConfigError
from fl_chain.protocol.task import DEFAULT_NORM_BOUND, TaskSpec

BASE = np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32)


def _address(index: int) -> str:
    return f"0x{index:040x}"


def _submission(index: int, change: list[float], samples: int = 10) -> Submission:
    """Contributor ``index``'s slice: :data:`BASE` plus ``change``."""
    return Submission(_address(index), samples, BASE + np.asarray(change, dtype=np.float32))


def _honest() -> list[Submission]:
    return [
        _submission(1, [0.1, 0.0, -0.1, 0.2], samples=10),
        _submission(2, [0.3, -0.2, 0.0, 0.1], samples=30),
        _submission(3, [-0.2, 0.1, 0.1, 0.0], samples=20),
    ]


def _task(strategy: dict[str, object], **protocol: object) -> TaskSpec:
    return TaskSpec.from_dict(
        {
            "protocol": {"partitions": 2, **protocol},
            "model": {"name": "logreg"},
            "dataset": {"name": "digits"},
            "strategy": strategy,
        }
    )


def test_fedavg_rule_with_only_valid_submissions_equals_reference_fedavg() -> None:
    # Prepare
    rule = ContributionRule(strategy=FedAvg(), norm_bound=1.0, max_samples=100)
    submissions = _honest()

    # Execute
    result = rule.aggregate(BASE, submissions)

    # Assert
    expected = reference_fedavg([(s.contributor, s.samples, s.values) for s in submissions])
    assert result.values.tobytes() == expected.tobytes()
    assert result.counted == tuple(_address(i) for i in (1, 2, 3))
    assert result.excluded == ()


@pytest.mark.parametrize(
    "bad, reason",
    [
        (Submission(_address(9), 10, None, "invalid manifest: bad magic"), "invalid manifest: bad magic"),
        (Submission(_address(9), 10, None), "content did not verify"),
        (Submission(_address(9), 10, np.array([np.nan, 0, 0, 0], dtype=np.float32)), "non-finite values"),
        (Submission(_address(9), 10, np.array([np.inf, 0, 0, 0], dtype=np.float32)), "non-finite values"),
        (Submission(_address(9), 10, np.zeros(3, dtype=np.float32)), "length 3 != 4"),
        (Submission(_address(9), 10, np.zeros(4, dtype=np.float64)), "dtype float64 is not float32"),
    ],
    ids=["invalid-manifest", "unverified-content", "nan", "inf", "short", "float64"],
)
def test_invalid_submission_is_excluded_with_its_reason_and_the_rest_aggregated(bad: Submission, reason: str) -> None:
    # Prepare
    rule = ContributionRule(strategy=FedAvg())

    # Execute
    result = rule.aggregate(BASE, [*_honest(), bad])

    # Assert
    assert [(e.contributor, e.reason) for e in result.excluded] == [(_address(9), reason)]
    assert result.values.tobytes() == rule.aggregate(BASE, _honest()).values.tobytes()


def test_norm_bound_excludes_a_change_from_the_base_above_the_bound_and_keeps_one_at_the_bound() -> None:
    # Prepare: a change of norm exactly 5 (3-4-5, exact in float32) and one just above it.
    at_bound = _submission(4, [3.0, 4.0, 0.0, 0.0])
    above = _submission(5, [3.0, 4.0, 0.125, 0.0])
    assert l2_norm(at_bound.values - BASE) == 5.0 < l2_norm(above.values - BASE)
    rule = ContributionRule(strategy=FedAvg(), norm_bound=5.0)

    # Execute
    result = rule.aggregate(BASE, [*_honest(), at_bound, above])

    # Assert
    assert _address(4) in result.counted
    assert [e.contributor for e in result.excluded] == [_address(5)]
    assert result.excluded[0].reason.startswith("change norm ")


def test_norm_bound_applies_to_the_change_not_to_the_published_values() -> None:
    """A slice near a large base is within a tight bound; the same values with a zero base are not."""
    # Prepare
    rule = ContributionRule(strategy=FedAvg(), norm_bound=0.5)
    submission = _submission(1, [0.1, 0.1, 0.1, 0.1])

    # Execute
    near = rule.exclusion_reason(submission, BASE)
    far = rule.exclusion_reason(submission, np.zeros_like(BASE))

    # Assert
    assert near is None
    assert far is not None and "change norm" in far


def test_sample_cap_excludes_a_submission_claiming_more_than_max_samples() -> None:
    # Prepare
    rule = ContributionRule(strategy=FedAvg(), max_samples=30)
    inflated = _submission(4, [0.0, 0.0, 0.0, 0.0], samples=31)

    # Execute
    result = rule.aggregate(BASE, [*_honest(), inflated])

    # Assert: 30 samples (contributor 2) is at the cap and counts.
    assert result.counted == tuple(_address(i) for i in (1, 2, 3))
    assert [(e.contributor, e.reason) for e in result.excluded] == [
        (_address(4), "claims 31 samples, above the task's max_samples 30")
    ]
    assert result.values.tobytes() == rule.aggregate(BASE, _honest()).values.tobytes()


def test_no_counted_submission_keeps_the_base_values_in_a_new_array() -> None:
    # Prepare
    rule = ContributionRule(strategy=FedAvg(), norm_bound=0.01)

    # Execute
    result = rule.aggregate(BASE, _honest())

    # Assert
    assert result.counted == ()
    assert len(result.excluded) == 3
    assert result.values.tobytes() == BASE.tobytes()
    assert result.values is not BASE


@pytest.mark.parametrize(
    "strategy, expected",
    [
        (CoordinateMedian(), lambda rows, weights: np.median(rows, axis=0)),
        (TrimmedMean(trim_fraction=0.34), lambda rows, weights: np.sort(rows, axis=0)[1]),
        (FedAvg(), lambda rows, weights: (rows * weights[:, None]).sum(axis=0) / weights.sum()),
    ],
    ids=["median", "trimmed_mean", "fedavg"],
)
def test_each_strategy_aggregates_only_the_counted_submissions(strategy, expected) -> None:  # type: ignore[no-untyped-def]
    # Prepare: an outlier far from the base, excluded by the bound before the strategy sees it.
    rule = ContributionRule(strategy=strategy, norm_bound=1.0)
    outlier = _submission(9, [50.0, 50.0, 50.0, 50.0])
    honest = _honest()
    rows = np.stack([s.values for s in honest]).astype(np.float64)
    weights = np.array([s.samples for s in honest], dtype=np.float64)

    # Execute
    result = rule.aggregate(BASE, [outlier, *honest])

    # Assert
    assert [e.contributor for e in result.excluded] == [_address(9)]
    honest_only = strategy.aggregate([Contribution(s.contributor, s.samples, s.values) for s in honest])
    assert result.values.tobytes() == honest_only.tobytes()
    np.testing.assert_allclose(result.values, expected(rows, weights).astype(np.float32), rtol=1e-6)


def test_median_rule_differs_from_fedavg_rule_on_a_skewed_partition() -> None:
    """The strategy matters: an auditor using FedAvg for a median task computes other bytes."""
    # Prepare
    skewed = [*_honest(), _submission(4, [0.9, 0.9, 0.9, 0.9], samples=1000)]

    # Execute
    median = ContributionRule(strategy=CoordinateMedian()).aggregate(BASE, skewed)
    fedavg = ContributionRule(strategy=FedAvg()).aggregate(BASE, skewed)

    # Assert
    assert median.counted == fedavg.counted
    assert median.values.tobytes() != fedavg.values.tobytes()


@pytest.mark.parametrize("strategy", [FedAvg(), CoordinateMedian(), TrimmedMean(trim_fraction=0.25)], ids=repr)
def test_the_result_is_the_same_bytes_in_every_order(strategy) -> None:  # type: ignore[no-untyped-def]
    # Prepare
    rule = ContributionRule(strategy=strategy, norm_bound=1.0, max_samples=100)
    submissions = [
        *_honest(),
        _submission(4, [0.05, -0.05, 0.05, -0.05], samples=7),
        _submission(5, [9.0, 9.0, 9.0, 9.0]),  # beyond the bound
        Submission(_address(6), 5, None, "invalid blob"),
        _submission(7, [0.0, 0.0, 0.0, 0.0], samples=101),  # beyond the cap
    ]

    # Execute
    results = [rule.aggregate(BASE, list(order)) for order in itertools.permutations(submissions)]

    # Assert
    first = results[0]
    assert all(r.values.tobytes() == first.values.tobytes() for r in results)
    assert all(r.counted == first.counted and r.excluded == first.excluded for r in results)
    assert first.counted == tuple(_address(i) for i in (1, 2, 3, 4))
    assert [e.contributor for e in first.excluded] == [_address(i) for i in (5, 6, 7)]


def test_a_contributor_counted_twice_is_an_aggregation_error() -> None:
    rule = ContributionRule(strategy=FedAvg())
    with pytest.raises(AggregationError, match="more than once"):
        rule.aggregate(BASE, [_submission(1, [0, 0, 0, 0]), _submission(1, [0.1, 0, 0, 0])])


@pytest.mark.parametrize(
    "options, match",
    [
        ({"norm_bound": -1.0}, "norm_bound"),
        ({"norm_bound": float("nan")}, "norm_bound"),
        ({"max_samples": 0}, "max_samples"),
        ({"max_samples": True}, "max_samples"),
    ],
    ids=["negative-bound", "nan-bound", "zero-cap", "bool-cap"],
)
def test_unusable_rule_parameters_are_a_config_error(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ContributionRule(strategy=FedAvg(), **options)  # type: ignore[arg-type]


def test_task_spec_builds_the_rule_from_strategy_norm_bound_and_max_samples() -> None:
    # Execute
    rule = _task({"name": "trimmed_mean", "trim_fraction": 0.2, "norm_bound": 3.5}, max_samples=500).contribution_rule()
    default = _task({"name": "median"}).contribution_rule()

    # Assert
    assert isinstance(rule.strategy, TrimmedMean) and rule.strategy.trim_fraction == 0.2
    assert (rule.norm_bound, rule.max_samples) == (3.5, 500)
    assert isinstance(default.strategy, CoordinateMedian)
    assert (default.norm_bound, default.max_samples) == (DEFAULT_NORM_BOUND, 1_000_000)
