"""Differential privacy: the deterministic noise, clipping, the DP contribution rule, the accountant, [privacy]."""

from __future__ import annotations

import hashlib
import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from dp_accounting import dp_event, privacy_accountant, rdp

from fl_chain.aggregation import ContributionRule, FedAvg, Submission
from fl_chain.chain import dev_account
from fl_chain.errors import AggregationError, ConfigError
from fl_chain.privacy import dp
from fl_chain.privacy.accountant import affordable_rounds, epsilon
from fl_chain.protocol.task import TaskSpec
from tests.helpers.cli_runner import InProcessCli, assert_one_line_error
from tests.helpers.task_files import task_sections, write_task_file

SEED = bytes(range(32))
KEY = dp.noise_key(SEED, 1, 0)
MECHANISM = dp.DpMechanism(1.0, 1.0)
PROTOCOL = {"rounds": 5, "partitions": 2, "replication": 2, "quorum": 2, "min_contributors": 2}
DP = {"dp_noise_multiplier": 1.0, "dp_clip_norm": 1.0, "dp_delta": 1e-5}


def _library_epsilon(z: float, delta: float, rounds: int) -> float:
    accountant = rdp.RdpAccountant(neighboring_relation=privacy_accountant.NeighboringRelation.REPLACE_SPECIAL)
    accountant.compose(dp_event.GaussianDpEvent(z), rounds)
    return float(accountant.get_epsilon(delta))


# -- accountant ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("z", "delta", "rounds"), [(1.0, 1e-5, 1), (1.1, 1e-5, 10), (4.0, 1e-6, 50)])
def test_accountant_epsilon_equals_dp_accounting_for_the_same_mechanism_and_rounds(
    z: float, delta: float, rounds: int
) -> None:
    assert epsilon(z, delta, rounds) == pytest.approx(_library_epsilon(z, delta, rounds), rel=1e-12)


def test_accountant_no_round_costs_nothing_and_no_noise_is_infinite() -> None:
    assert epsilon(1.0, 1e-5, 0) == 0.0
    assert epsilon(0.0, 1e-5, 3) == float("inf")


def test_affordable_rounds_is_the_largest_count_within_the_budget() -> None:
    rounds = affordable_rounds(2.0, 1e-5, 8.0)
    assert epsilon(2.0, 1e-5, rounds) <= 8.0 < epsilon(2.0, 1e-5, rounds + 1)
    assert affordable_rounds(2.0, 1e-5, 8.0, limit=3) == 3
    assert affordable_rounds(0.5, 1e-5, 1.0) == 0


# -- noise --------------------------------------------------------------------------------------------


def test_noise_is_byte_identical_across_computations_and_partition_boundaries() -> None:
    whole = dp.aggregator_noise_units(KEY, 0, 10_000)
    again = dp.aggregator_noise_units(dp.noise_key(SEED, 1, 0), 0, 10_000)
    assert whole.tobytes() == again.tobytes()
    for start, stop in [(0, 1), (1, 17), (4999, 5001), (3333, 10_000)]:
        assert dp.aggregator_noise_units(KEY, start, stop - start).tobytes() == whole[start:stop].tobytes()
    # Pinned bytes: another machine, numpy or Python must draw the same integers.
    assert hashlib.sha256(whole.astype("<i8").tobytes()).hexdigest()[:16] == _PINNED_NOISE_SHA256


#: sha256 prefix of the little-endian int64 noise of coordinates [0, 10000) under KEY.
_PINNED_NOISE_SHA256 = "65630f1d8d070ae4"


def test_noise_differs_per_round_and_task() -> None:
    first = dp.aggregator_noise_units(KEY, 0, 64)
    assert first.tobytes() != dp.aggregator_noise_units(dp.noise_key(SEED, 1, 1), 0, 64).tobytes()
    assert first.tobytes() != dp.aggregator_noise_units(dp.noise_key(SEED, 2, 0), 0, 64).tobytes()


def test_noise_table_is_the_discrete_gaussian_with_standard_deviation_1024() -> None:
    table = dp._cdf_table(Fraction(dp.NOISE_SIGMA_UNITS**2))
    thresholds = (0, *table.thresholds)
    values = range(-table.reach, table.reach + 1)
    masses = [Fraction(b - a, 2**128) for a, b in itertools.pairwise(thresholds)]
    assert abs(sum(masses) - 1) < Fraction(1, 2**100)
    mean = sum(m * k for m, k in zip(masses, values))
    variance = sum(m * k * k for m, k in zip(masses, values))
    assert abs(mean) < 1e-9
    assert float(variance) == pytest.approx(1024.0**2, rel=1e-12)


def test_noise_has_mean_zero_and_the_target_standard_deviation() -> None:
    # 10**6 draws: the sample std's standard error is 1024 / sqrt(2 * 10**6) ~ 0.72, the mean's ~1.02.
    draws = dp.aggregator_noise_units(dp.noise_key(SEED, 7, 3), 0, 1_000_000)
    assert abs(draws.mean()) < 6 * 1.03
    assert abs(draws.std() - 1024) < 6 * 0.73
    # On the average of n = 4 contributions with z = C = 1: std z * C / n.
    base = np.zeros(200_000, dtype=np.float32)
    noisy = dp.noisy_mean(base, [np.zeros(base.size, dtype=np.int64)] * 4, draws[: base.size], MECHANISM.grid)
    assert abs(float(noisy.std()) - 0.25) < 6 * 0.25 / np.sqrt(2 * base.size)


def test_contributor_noise_shares_sum_to_the_aggregator_variance() -> None:
    shares = [dp.contributor_noise_units(bytes([i + 1]) * 32, 0, 200_000, contributors=8) for i in range(8)]
    total = np.sum(shares, axis=0)
    assert abs(shares[0].std() - 1024 / np.sqrt(8)) < 6 * 1024 / np.sqrt(8) / np.sqrt(4e5)
    assert abs(total.std() - 1024) < 6 * 1024 / np.sqrt(4e5)


# -- clipping -----------------------------------------------------------------------------------------


def test_clip_update_bounds_the_whole_change_and_each_partition_passes_the_aggregators_check() -> None:
    rng = np.random.default_rng(0)
    global_model = rng.normal(size=1000).astype(np.float32)
    trained = global_model + rng.normal(scale=0.5, size=1000).astype(np.float32)  # change norm ~16

    published = dp.clip_update(trained, global_model, MECHANISM)

    change = published.astype(np.float64) - global_model
    assert np.linalg.norm(change) <= MECHANISM.clip_norm * (1 + 1e-3)
    q = MECHANISM.quantize(published, global_model)
    assert q is not None and dp.squared_norm_units(q) <= MECHANISM.bound_squared
    for lo, hi in [(0, 500), (500, 1000)]:
        assert MECHANISM.exclusion_reason(published[lo:hi], global_model[lo:hi]) is None
    small = global_model + np.float32(1e-3)
    assert dp.clip_update(small, global_model, MECHANISM).tobytes() == small.tobytes()  # within C: unchanged


# -- the DP contribution rule -------------------------------------------------------------------------

BASE = np.linspace(-1, 1, 40, dtype=np.float32)
RULE = ContributionRule(strategy=FedAvg(), max_samples=1000, dp=MECHANISM)


def _honest(count: int = 4) -> list[Submission]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(count):
        trained = BASE + rng.normal(scale=0.1, size=BASE.size).astype(np.float32)
        out.append(Submission(f"0x{i + 1:040x}", 10 * (i + 1), dp.clip_update(trained, BASE, MECHANISM)))
    return out


def test_dp_rule_averages_unweighted_with_noise_and_any_order_gives_the_same_bytes() -> None:
    submissions = _honest()
    result = RULE.aggregate(BASE, submissions, noise_key=KEY, offset=100)
    reversed_ = RULE.aggregate(BASE, submissions[::-1], noise_key=KEY, offset=100)
    assert result.values.tobytes() == reversed_.values.tobytes()
    assert len(result.counted) == 4
    quantized = [MECHANISM.quantize(s.values, BASE) for s in submissions]
    noise = dp.aggregator_noise_units(KEY, 100, BASE.size)
    expected = (BASE + (np.sum(quantized, axis=0) + noise) * MECHANISM.grid / 4).astype(np.float32)
    np.testing.assert_allclose(result.values, expected, atol=1e-6)  # unweighted: sample counts play no part


def test_dp_rule_refuses_to_aggregate_without_the_round_noise_key() -> None:
    with pytest.raises(AggregationError, match="noise key"):
        RULE.aggregate(BASE, _honest())


def test_attack_partition_change_above_the_clip_norm_is_excluded_alike_by_every_aggregator() -> None:
    # Prepare: an update whose change in this partition has norm 3 > C = 1.
    direction = np.ones(BASE.size, dtype=np.float32) / np.sqrt(BASE.size)
    oversized = Submission("0x" + "f" * 40, 10, (BASE + 3 * direction).astype(np.float32))
    honest = _honest()

    # Execute: two aggregators see the submissions in different orders.
    first = RULE.aggregate(BASE, [oversized, *honest], noise_key=KEY)
    second = RULE.aggregate(BASE, [*honest[::-1], oversized], noise_key=KEY)

    # Assert
    assert [e.contributor for e in first.excluded] == [oversized.contributor]
    assert "dp_clip_norm" in first.excluded[0].reason
    assert first.values.tobytes() == second.values.tobytes()
    assert first.values.tobytes() == RULE.aggregate(BASE, honest, noise_key=KEY).values.tobytes()


def test_attack_aggregator_that_omits_the_noise_commits_a_digest_that_disagrees_with_the_quorum() -> None:
    submissions = _honest()
    honest = [RULE.aggregate(BASE, submissions, noise_key=KEY).values for _ in range(2)]
    quantized = [MECHANISM.quantize(s.values, BASE) for s in submissions]
    noiseless = dp.noisy_mean(BASE, quantized, None, MECHANISM.grid)  # the lazy aggregator's aggregate
    wrong_seed = RULE.aggregate(BASE, submissions, noise_key=dp.noise_key(bytes(32), 1, 0)).values

    assert hashlib.sha256(honest[0]).digest() == hashlib.sha256(honest[1]).digest()
    assert hashlib.sha256(noiseless).digest() != hashlib.sha256(honest[0]).digest()
    assert hashlib.sha256(wrong_seed).digest() != hashlib.sha256(honest[0]).digest()


# -- [privacy] options ----------------------------------------------------------------------------------


def _spec(privacy: dict[str, object], **strategy: object) -> TaskSpec:
    return TaskSpec.from_dict(
        task_sections(protocol=PROTOCOL, strategy={"name": "fedavg", **strategy}, privacy=privacy)
    )


def test_privacy_options_are_in_the_manifest_and_caps_rounds_by_the_budget() -> None:
    plain = TaskSpec.from_dict(task_sections(protocol=PROTOCOL))
    private = _spec({**DP, "dp_noise_multiplier": 2.0, "dp_epsilon_budget": 5.0})
    assert b'"privacy"' not in plain.manifest_bytes(bytes(32))  # tasks without [privacy] keep their digest
    assert b'"dp_noise_multiplier":2.0' in private.manifest_bytes(bytes(32))
    affordable = affordable_rounds(2.0, 1e-5, 5.0)
    assert 0 < affordable < PROTOCOL["rounds"]
    assert private.chain_config(bytes(32)).rounds == affordable
    assert private.rounds_cap_note() is not None and f"rounds capped at {affordable}" in private.rounds_cap_note()
    assert private.contribution_rule().dp == dp.DpMechanism(2.0, 1.0)
    assert private.contribution_rule().norm_bound is None


@pytest.mark.parametrize(
    ("privacy", "strategy", "fragment"),
    [
        ({**DP, "dp_clip_norm": 0}, {}, "dp_clip_norm must be a positive"),
        ({**DP, "dp_noise_multiplier": -1}, {}, "dp_noise_multiplier must be 0"),
        ({**DP, "dp_delta": 1.5}, {}, "dp_delta must be a number in (0, 1)"),
        ({**DP, "dp_epsilon_budget": -2}, {}, "dp_epsilon_budget must be a positive"),
        ({**DP, "dp_noise_multiplier": 0, "dp_epsilon_budget": 3}, {}, "needs noise"),
        ({"dp_noise_multiplier": 1.0}, {}, "needs privacy.dp_clip_norm, privacy.dp_delta"),
        ({**DP, "dp_sigma": 1}, {}, "unknown [privacy] key"),
        (DP, {"name": "median"}, "needs strategy fedavg"),
        (DP, {"name": "trimmed_mean"}, "needs strategy fedavg"),
        (DP, {"norm_bound": 5.0}, "remove strategy.norm_bound"),
        ({"secure_aggregation": "yes"}, {}, "secure_aggregation must be true or false"),
        ({"secure_aggregation": True}, {"name": "median"}, "cannot run strategy median"),
        ({"secure_aggregation": True}, {"norm_bound": 5.0}, "cannot measure a masked update"),
        ({"secure_aggregation": True}, {}, "needs privacy.secagg_threshold"),
        (
            {**DP, "secure_aggregation": True, "secagg_threshold": 2, "secagg_clip": 2.0},
            {},
            "remove privacy.secagg_clip",
        ),
        ({**DP, "dp_noise_multiplier": 0.2, "dp_epsilon_budget": 0.5}, {}, "does not afford one round"),
    ],
)
def test_bad_or_incompatible_privacy_options_get_one_line_errors(
    privacy: dict[str, object], strategy: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        _spec(privacy, **strategy).chain_config(bytes(32))
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.fixture()
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> InProcessCli:
    return InProcessCli(capsys, monkeypatch)


def test_task_create_and_simulate_refuse_bad_privacy_options_in_one_line(tmp_path: Path, run_cli: InProcessCli) -> None:
    key = tmp_path / "operator.key"
    key.write_text(dev_account(0).key.hex())
    rpc = ("--rpc", "http://127.0.0.1:9", "--key", str(key))  # refused before any chain access
    write_task_file(tmp_path / "median.toml", protocol=PROTOCOL, strategy={"name": "median"}, privacy=DP)
    assert_one_line_error(run_cli("task", "create", *rpc, "median.toml", cwd=tmp_path), "needs strategy fedavg")
    secure_dp = {**DP, "secure_aggregation": True, "secagg_threshold": 2, "secagg_clip": 2.0}
    write_task_file(tmp_path / "secure.toml", protocol=PROTOCOL, privacy=secure_dp)
    assert_one_line_error(run_cli("task", "create", *rpc, "secure.toml", cwd=tmp_path), "remove privacy.secagg_clip")
    write_task_file(tmp_path / "broke.toml", protocol=PROTOCOL, privacy={**DP, "dp_epsilon_budget": 0.01})
    assert_one_line_error(run_cli("task", "create", *rpc, "broke.toml", cwd=tmp_path), "does not afford one round")

    simulate = ("simulate", "--nodes", "2", "--rounds", "1", "--chain", "embedded", "--quiet")
    assert_one_line_error(
        run_cli(*simulate, "--dp-noise-multiplier", "1", "--dp-clip-norm", "-1", cwd=tmp_path), "dp_clip_norm"
    )
    assert_one_line_error(
        run_cli(*simulate, "--dp-clip-norm", "1", "--dp-noise-multiplier", "1", "--strategy", "median", cwd=tmp_path),
        "needs strategy fedavg",
    )
