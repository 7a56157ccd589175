"""Aggregation strategies: the canonical FedAvg formula, byte-identical results, robust rules, validation."""

from __future__ import annotations

import hashlib
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fl_chain import aggregation
from fl_chain.aggregation import (
    STRATEGIES,
    AggregationError,
    Contribution,
    CoordinateMedian,
    FedAvg,
    TrimmedMean,
    get_strategy,
    l2_norm,
    reference_fedavg,
    validate_values,
)
from fl_chain.aggregation.base import MAX_SAMPLES
from fl_chain.errors import ConfigError
from fl_chain.protocol.partitioning import partition_bounds
from tests.helpers.names import ruff_sorted

REPO = Path(__file__).resolve().parents[2]
FINITE_FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
SAMPLE_COUNTS = st.one_of(st.integers(1, 1000), st.integers(1, MAX_SAMPLES))


def _address(index: int) -> str:
    return f"0x{index:040x}"


def _contributions(rows: np.ndarray, samples: list[int] | None = None) -> list[Contribution]:
    samples = samples or [1] * len(rows)
    return [Contribution(_address(i), samples[i], row) for i, row in enumerate(np.asarray(rows, dtype=np.float32))]


def _bits(array: np.ndarray) -> bytes:
    assert array.dtype == np.float32
    return array.tobytes()


def _extreme_float32(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Finite float32 values of every magnitude, from subnormal to near the largest."""
    mantissas = rng.uniform(-1.0, 1.0, shape)
    exponents = rng.integers(-149, 128, shape)
    return np.ldexp(mantissas, exponents).astype(np.float32)


@st.composite
def contribution_sets(draw: st.DrawFn, max_contributors: int = 7, max_length: int = 24) -> list[Contribution]:
    """Distinct contributors with equal-length slices of any finite float32 values (subnormals included)."""
    count = draw(st.integers(1, max_contributors))
    length = draw(st.integers(1, max_length))
    values = draw(arrays(np.float32, (count, length), elements=FINITE_FLOAT32))
    samples = draw(st.lists(SAMPLE_COUNTS, min_size=count, max_size=count))
    addresses = draw(st.lists(st.integers(0, 2**160 - 1), min_size=count, max_size=count, unique=True))
    return [Contribution(f"0x{a:040x}", s, v) for a, s, v in zip(addresses, samples, values)]


def _plain_python_fedavg(contributions: list[Contribution]) -> np.ndarray:
    """The canonical formula with Python floats, one coordinate at a time (a third implementation)."""
    ordered = sorted(contributions, key=lambda c: c.contributor.lower())
    total = float(sum(c.samples for c in ordered))
    result = []
    for j in range(ordered[0].values.size):
        acc = 0.0
        for c in ordered:
            acc = acc + float(c.samples) * float(c.values[j])
        result.append(struct.unpack("<f", struct.pack("<f", acc / total))[0])  # round to float32
    return np.array(result, dtype=np.float32)


# -- FedAvg: the canonical formula ------------------------------------------------------------------


def test_fedavg_equals_float64_weighted_mean_within_float32_rounding() -> None:
    """The aggregate is the float64 weighted mean, off by at most one float32 rounding."""
    # Prepare
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((6, 1000)).astype(np.float32)
    samples = [int(s) for s in rng.integers(1, 5000, 6)]
    # Execute
    result = FedAvg().aggregate(_contributions(rows, samples))
    # Assert
    expected = np.average(rows.astype(np.float64), axis=0, weights=np.array(samples, dtype=np.float64))
    assert result.dtype == np.float32 and result.shape == (1000,)
    assert np.all(np.abs(result.astype(np.float64) - expected) <= np.spacing(np.abs(result)).astype(np.float64))


def test_fedavg_equals_reference_fedavg_bit_for_bit() -> None:
    """FedAvg and the separately written reference agree on every bit, extreme magnitudes included."""
    # Prepare
    rng = np.random.default_rng(2)
    rows = _extreme_float32(rng, (9, 5000))
    samples = [int(s) for s in rng.integers(1, MAX_SAMPLES, 9, dtype=np.uint64)]
    contributions = _contributions(rows, samples)
    # Execute
    result = FedAvg().aggregate(contributions)
    reference = reference_fedavg([(c.contributor, c.samples, c.values) for c in contributions])
    # Assert
    assert _bits(result) == _bits(reference)


@settings(max_examples=200, deadline=None)
@given(contributions=contribution_sets(max_length=6))
def test_fedavg_follows_the_canonical_formula_in_plain_python(contributions: list[Contribution]) -> None:
    """A coordinate-by-coordinate Python-float rendering of the formula gives the same bits."""
    # Execute
    result = FedAvg().aggregate(contributions)
    # Assert
    assert _bits(result) == _bits(_plain_python_fedavg(contributions))


def test_fedavg_accumulates_in_lowercase_address_order() -> None:
    """Where float64 order matters, FedAvg adds in lowercase-address order: 1e30 - 1e30 + 1, not 1 + 1e30 - 1e30."""
    # Prepare: raw string order would put "0xCC.." (uppercase) first, lowercase order puts it last.
    contributions = [
        Contribution("0x" + "CC" * 20, 1, np.array([1.0], dtype=np.float32)),
        Contribution("0x" + "aa" * 20, 1, np.array([1e30], dtype=np.float32)),
        Contribution("0x" + "bb" * 20, 1, np.array([-1e30], dtype=np.float32)),
    ]
    # Execute
    result = FedAvg().aggregate(contributions)
    # Assert
    assert _bits(result) == _bits(np.array([np.float32(1.0 / 3.0)], dtype=np.float32))


# -- determinism ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STRATEGIES))
@settings(max_examples=150, deadline=None)
@given(contributions=contribution_sets(), data=st.data())
def test_input_order_and_address_case_do_not_change_a_byte(
    name: str, contributions: list[Contribution], data: st.DataObject
) -> None:
    """Any permutation of the contributions, with addresses in any letter case, gives the same bytes."""
    # Prepare
    order = data.draw(st.permutations(range(len(contributions))))
    upper = data.draw(st.lists(st.booleans(), min_size=len(contributions), max_size=len(contributions)))
    shuffled = [
        Contribution(c.contributor.upper() if up else c.contributor, c.samples, c.values)
        for c, up in zip((contributions[i] for i in order), upper)
    ]
    strategy = get_strategy(name)
    # Execute
    first, second = strategy.aggregate(contributions), strategy.aggregate(shuffled)
    # Assert
    assert _bits(first) == _bits(second)


@pytest.mark.parametrize("name", list(STRATEGIES))
@settings(max_examples=100, deadline=None)
@given(contributions=contribution_sets(max_length=40), data=st.data())
def test_aggregating_partitions_and_concatenating_equals_aggregating_the_whole_vector(
    name: str, contributions: list[Contribution], data: st.DataObject
) -> None:
    """Per-partition aggregation over any P contiguous slices reproduces the whole-vector bytes."""
    # Prepare
    strategy = get_strategy(name)
    dimension = contributions[0].values.size
    partitions = data.draw(st.integers(1, dimension))
    # Execute
    whole = strategy.aggregate(contributions)
    parts = [
        strategy.aggregate(
            [Contribution(c.contributor, c.samples, c.values[b.offset : b.offset + b.length]) for c in contributions]
        )
        for b in partition_bounds(dimension, partitions)
    ]
    # Assert
    assert _bits(np.concatenate(parts)) == _bits(whole)


def cross_process_digests(order: str) -> str:
    """sha256 of each strategy's aggregate of fixed data (all magnitudes, signed zeros), contributions in ``order``."""
    rng = np.random.default_rng(20240601)
    rows = _extreme_float32(rng, (9, 100_003))
    rows[rng.random(rows.shape) < 0.3] = 0.0
    rows[rng.random(rows.shape) < 0.3] *= -1  # signed zeros: sort algorithms may order them differently
    samples = [int(s) for s in rng.integers(1, 2**40, 9)]
    indices = rng.permutation(9) if order == "shuffled" else range(9)
    contributions = [Contribution(_address(i), samples[i], rows[i]) for i in indices]
    lines = []
    for name in STRATEGIES:
        digest = hashlib.sha256(get_strategy(name).aggregate(contributions).tobytes()).hexdigest()
        lines.append(f"{name} {digest}")
    reference = reference_fedavg([(_address(i), samples[i], rows[i]) for i in range(9)])
    lines.append(f"reference {hashlib.sha256(reference.tobytes()).hexdigest()}")
    return "\n".join(lines)


def _without_numpy_simd_dispatch() -> dict[str, str]:
    """Environment making numpy use only its baseline code paths, like an older CPU would."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # pragma: no cover - numpy internals moved
        return {}
    enabled = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    return {"NPY_DISABLE_CPU_FEATURES": " ".join(enabled)} if enabled else {}


def test_results_are_byte_identical_across_processes_and_cpu_code_paths() -> None:
    """Two Python processes, different input orders and numpy SIMD paths, print the same digests."""
    # Prepare
    script = (
        "import sys; from tests.unit.test_aggregation import cross_process_digests; "
        "print(cross_process_digests(sys.argv[1]))"
    )
    environments = [
        {**os.environ, "PYTHONHASHSEED": "1"},
        {**os.environ, "PYTHONHASHSEED": "2", **_without_numpy_simd_dispatch()},
    ]
    # Execute
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script, order],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.strip()
        for order, env in zip(("canonical", "shuffled"), environments)
    ]
    # Assert
    assert outputs[0] == outputs[1] == cross_process_digests("canonical")
    digests = dict(line.split() for line in outputs[0].splitlines())
    assert digests["fedavg"] == digests["reference"]


def test_aggregation_refuses_to_run_when_subnormals_are_flushed() -> None:
    """With flush-to-zero set (torch.set_flush_denormal), aggregation raises instead of diverging."""
    # Prepare
    torch = pytest.importorskip("torch")
    contributions = _contributions(np.ones((2, 3)))
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    # Execute / Assert
    try:
        with pytest.raises(AggregationError, match="floating-point environment"):
            FedAvg().aggregate(contributions)
    finally:
        torch.set_flush_denormal(False)
    assert _bits(FedAvg().aggregate(contributions)) == _bits(np.ones(3, dtype=np.float32))


# -- median and trimmed mean ------------------------------------------------------------------------


def test_median_of_odd_count_is_the_middle_value() -> None:
    """Three contributors: each coordinate takes its middle value; sample counts are ignored."""
    # Prepare
    rows = [[1.0, -5.0, 3.0], [2.0, 0.0, 1.0], [3.0, 5.0, 2.0]]
    # Execute
    result = CoordinateMedian().aggregate(_contributions(np.array(rows), [1000, 1, 1]))
    # Assert
    assert result.tolist() == [2.0, 0.0, 2.0]


def test_median_of_even_count_is_the_mean_of_the_two_middle_values() -> None:
    """Four contributors: (b + c) / 2 computed in float64 and rounded once to float32."""
    # Prepare
    rows = np.array([[1.0, 0.1], [2.0, 0.2], [4.0, 0.3], [100.0, 0.4]], dtype=np.float32)
    # Execute
    result = CoordinateMedian().aggregate(_contributions(rows))
    # Assert
    expected_second = np.float32((np.float64(np.float32(0.2)) + np.float64(np.float32(0.3))) / 2)
    assert _bits(result) == _bits(np.array([3.0, expected_second], dtype=np.float32))


def test_median_ignores_one_huge_outlier() -> None:
    """One contributor sending +-3e38 shifts the median of five values by one rank, not by 3e38."""
    # Prepare
    rows = np.array([[1.0, 2.0], [1.1, 2.1], [0.9, 1.9], [1.05, 2.05], [3e38, -3e38]], dtype=np.float32)
    # Execute
    result = CoordinateMedian().aggregate(_contributions(rows))
    # Assert
    assert _bits(result) == _bits(np.array([1.05, 2.0], dtype=np.float32))


def test_median_and_trimmed_mean_treat_negative_zero_as_zero() -> None:
    """-0.0 and +0.0 sort as the same bits, so the output is +0.0 whatever the arrival order."""
    # Prepare
    rows = np.array([[0.0], [-0.0], [0.0]], dtype=np.float32)
    # Execute
    results = [s.aggregate(_contributions(rows)) for s in (CoordinateMedian(), TrimmedMean(trim_fraction=0.34))]
    # Assert
    assert all(_bits(r) == _bits(np.zeros(1, dtype=np.float32)) for r in results)


def test_trimmed_mean_drops_floor_of_fraction_times_count_at_each_end() -> None:
    """Ten values, trim_fraction 0.25: k = 2 smallest and 2 largest are dropped, the six others averaged."""
    # Prepare
    column = np.array([-1000.0, -50.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 70.0, 9000.0], dtype=np.float32)
    strategy = TrimmedMean(trim_fraction=0.25)
    # Execute
    result = strategy.aggregate(_contributions(column[::-1].reshape(10, 1)))
    # Assert
    assert strategy.trimmed_count(10) == 2
    assert result.tolist() == [3.5]


def test_trimmed_mean_count_uses_the_fraction_as_written() -> None:
    """0.29 of 100 trims 29 (0.29 * 100 is 28.999999999999996 in binary floating point)."""
    # Execute / Assert
    assert TrimmedMean(trim_fraction=0.29).trimmed_count(100) == 29


def test_trimmed_mean_with_zero_fraction_is_the_plain_mean() -> None:
    """trim_fraction 0 keeps every value: the unweighted mean, sample counts ignored."""
    # Prepare
    rows = np.array([[1.0], [2.0], [6.0]], dtype=np.float32)
    # Execute
    result = TrimmedMean(trim_fraction=0).aggregate(_contributions(rows, [1, 50, 7]))
    # Assert
    assert result.tolist() == [3.0]


def test_trimmed_mean_ignores_one_huge_outlier() -> None:
    """With k = 1 of 5, a single 3e38 contribution is trimmed away entirely."""
    # Prepare
    rows = np.array([[1.0], [2.0], [3.0], [4.0], [3e38]], dtype=np.float32)
    # Execute
    result = TrimmedMean(trim_fraction=0.2).aggregate(_contributions(rows))
    # Assert
    assert result.tolist() == [3.0]


# -- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_validation_rejects_non_finite_values(bad: float) -> None:
    """NaN and infinities anywhere in the slice are rejected."""
    # Prepare
    values = np.ones(10, dtype=np.float32)
    values[7] = bad
    # Execute / Assert
    assert validate_values(values, expected_length=10) == "non-finite values"


def test_validation_rejects_wrong_length() -> None:
    """A slice of the wrong length is rejected with both lengths."""
    assert validate_values(np.ones(9, dtype=np.float32), expected_length=10) == "length 9 != 10"


def test_validation_rejects_wrong_dtype_and_shape() -> None:
    """Only 1-D float32 slices are valid."""
    assert validate_values(np.ones(10, dtype=np.float64), expected_length=10) == "dtype float64 is not float32"
    assert validate_values(np.ones((2, 5), dtype=np.float32), expected_length=10) == "shape (2, 5) is not 1-D"


def test_validation_rejects_norm_above_bound() -> None:
    """A slice whose L2 norm exceeds the bound is rejected with the norm and the bound."""
    # Prepare
    values = np.zeros(10, dtype=np.float32)
    values[:2] = [72.0, 96.0]
    # Execute / Assert
    assert validate_values(values, expected_length=10, norm_bound=100) == "norm 120 > bound 100"


def test_validation_accepts_valid_values_and_norm_equal_to_bound() -> None:
    """A finite slice of the right length passes; a norm exactly at the bound passes."""
    # Prepare
    values = np.zeros(10, dtype=np.float32)
    values[:2] = [3.0, 4.0]
    # Execute / Assert
    assert validate_values(values, expected_length=10) is None
    assert validate_values(values, expected_length=10, norm_bound=5.0) is None


@settings(max_examples=200, deadline=None)
@given(values=arrays(np.float32, st.integers(0, 300), elements=FINITE_FLOAT32))
def test_l2_norm_is_the_correctly_rounded_norm(values: np.ndarray) -> None:
    """l2_norm equals sqrt(math.fsum of exact float64 squares) for any finite float32 values."""
    assert l2_norm(values) == math.sqrt(math.fsum(float(v) * float(v) for v in values))


@settings(max_examples=200, deadline=None)
@given(values=arrays(np.float32, st.integers(1, 300), elements=FINITE_FLOAT32), data=st.data())
def test_norm_bound_decision_is_exact_next_to_the_bound(values: np.ndarray, data: st.DataObject) -> None:
    """Bounds one ulp or a hair away from the exact norm give exactly the exact decision (norm <= bound passes)."""
    # Prepare
    norm = l2_norm(values)
    near = [norm, math.nextafter(norm, 0), math.nextafter(norm, math.inf), norm * (1 - 1e-7), norm * (1 + 1e-7)]
    bound = data.draw(st.sampled_from(near))
    # Execute
    reason = validate_values(values, expected_length=values.size, norm_bound=bound)
    # Assert
    assert (reason is None) == (norm <= bound)


# -- registry ---------------------------------------------------------------------------------------


def test_get_strategy_builds_each_strategy_with_its_options() -> None:
    """Every registered name builds its class; options reach the constructor."""
    # Execute
    built = {name: get_strategy(name) for name in STRATEGIES}
    trimmed = get_strategy("trimmed_mean", trim_fraction=0.2)
    # Assert
    assert {name: type(s) for name, s in built.items()} == {
        "fedavg": FedAvg,
        "median": CoordinateMedian,
        "trimmed_mean": TrimmedMean,
    }
    assert all(s.name == name for name, s in built.items())
    assert isinstance(trimmed, TrimmedMean) and trimmed.trim_fraction == 0.2


def test_get_strategy_unknown_name_lists_valid_names() -> None:
    """An unknown name raises ConfigError naming every valid strategy."""
    expected = r"unknown aggregation strategy 'krum'; use one of fedavg, median, trimmed_mean"
    with pytest.raises(ConfigError, match=expected):
        get_strategy("krum")


def test_get_strategy_unknown_option_lists_valid_options() -> None:
    """An option the strategy does not take raises ConfigError naming its options."""
    with pytest.raises(ConfigError, match=r"'fedavg' has no option 'trim_fraction'; its options: none"):
        get_strategy("fedavg", trim_fraction=0.1)
    with pytest.raises(ConfigError, match=r"'trimmed_mean' has no option 'k'; its options: trim_fraction"):
        get_strategy("trimmed_mean", k=1)


@pytest.mark.parametrize("bad", [0.5, -0.1, float("nan"), "0.1", True])
def test_get_strategy_rejects_invalid_trim_fraction(bad: object) -> None:
    """trim_fraction outside [0, 0.5) or not a number raises ConfigError."""
    with pytest.raises(ConfigError, match="trim_fraction"):
        get_strategy("trimmed_mean", trim_fraction=bad)


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_aggregating_nothing_raises(name: str) -> None:
    """No contributions: AggregationError."""
    with pytest.raises(AggregationError, match="no contributions"):
        get_strategy(name).aggregate([])


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_mismatched_lengths_raise(name: str) -> None:
    """Slices of different lengths: AggregationError naming the contributor."""
    # Prepare
    contributions = [
        Contribution(_address(1), 1, np.ones(10, dtype=np.float32)),
        Contribution(_address(2), 1, np.ones(9, dtype=np.float32)),
    ]
    # Execute / Assert
    with pytest.raises(AggregationError, match=f"{_address(2)}: length 9 != 10"):
        get_strategy(name).aggregate(contributions)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_duplicate_contributor_raises_whatever_the_letter_case(name: str) -> None:
    """The same address twice, even in different case: AggregationError."""
    # Prepare
    values = np.ones(3, dtype=np.float32)
    contributions = [Contribution("0xABCdef", 1, values), Contribution("0xabcDEF", 2, values)]
    # Execute / Assert
    with pytest.raises(AggregationError, match="appears more than once"):
        get_strategy(name).aggregate(contributions)


def test_non_finite_contribution_raises() -> None:
    """Aggregating unvalidated NaN values raises instead of producing machine-dependent NaN bits."""
    with pytest.raises(AggregationError, match="non-finite"):
        FedAvg().aggregate(_contributions(np.array([[1.0], [np.nan]])))


@pytest.mark.parametrize(
    ("samples", "values"),
    [(0, np.ones(2, np.float32)), (2**64, np.ones(2, np.float32)), (1, np.ones(2)), (1, np.ones((1, 2), np.float32))],
    ids=["zero-samples", "samples-above-uint64", "float64-values", "2-D-values"],
)
def test_contribution_rejects_bad_fields(samples: int, values: np.ndarray) -> None:
    """Sample counts outside the contract's range and non-1-D-float32 values are rejected."""
    with pytest.raises(AggregationError):
        Contribution(_address(1), samples, values)


# -- public surface ---------------------------------------------------------------------------------


def test_public_names_are_sorted_and_importable() -> None:
    """__all__ is sorted as ruff sorts it (constants, classes, functions; each alphabetically) and every
    name in it exists."""

    assert aggregation.__all__ == ruff_sorted(aggregation.__all__)
    assert all(hasattr(aggregation, name) for name in aggregation.__all__)


def test_validation_with_reference_bounds_the_change_not_the_vector() -> None:
    """With a reference (the global slice) the bound applies to values - reference: a sign-flipped
    slice with an ordinary norm is rejected, a small honest step away from it passes."""
    # Prepare
    reference = np.zeros(10, dtype=np.float32)
    reference[:2] = [3.0, 4.0]
    flipped = -reference
    step = reference + np.float32(0.1)
    # Execute / Assert
    assert validate_values(flipped, expected_length=10, norm_bound=6.0) is None
    assert (
        validate_values(flipped, expected_length=10, norm_bound=6.0, reference=reference) == "change norm 10 > bound 6"
    )
    assert validate_values(step, expected_length=10, norm_bound=1.0, reference=reference) is None


def test_validation_with_reference_rejects_a_change_that_overflows_float32() -> None:
    """Finite values whose difference from the reference is not finite in float32 exceed any bound."""
    # Prepare
    reference = np.full(4, -3e38, dtype=np.float32)
    values = np.full(4, 3e38, dtype=np.float32)
    # Execute
    reason = validate_values(values, expected_length=4, norm_bound=1e30, reference=reference)
    # Assert
    assert reason is not None and "overflows" in reason
