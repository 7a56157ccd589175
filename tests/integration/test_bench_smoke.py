"""Smoke test of the benchmark harness (bench/): tiny sizes, well under a minute.

Checks that ``bench/run_all.py`` drives benchmarks through their ``measure`` functions and builds a
report with machine details and target verdicts (also when resuming a stopped run), that the
bench-side instrumentation of an in-process federation accounts for a round (time split, gas, bytes
against the all-reduce bound), and the largest-federation memory extrapolation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import run_all
from bench._federation import CATEGORIES, FederationJob, run_federation
from bench.largest_federation import MEMORY_SHARE, memory_bound_nodes


def test_run_all_quick_gas_and_aggregation_reports_machine_and_verdicts(tmp_path: Path) -> None:
    # Prepare: a run that measured aggregation only, as a run stopped part-way leaves it
    stopped = run_all.run(quick=True, only=["aggregation"])
    saved = run_all.write_report(stopped, tmp_path, readme=False).with_suffix(".json")

    # Execute: resume it with gas added
    report = run_all.run(quick=True, only=["gas", "aggregation"], previous=run_all.load_previous(saved, quick=True))
    text = run_all.markdown(report)

    # Assert
    assert list(report["benchmarks"]) == ["gas", "aggregation"]  # in benchmark order, not run order
    assert report["benchmarks"]["aggregation"] == json.loads(saved.read_text())["benchmarks"]["aggregation"]
    assert [e["benchmarks"] for e in report["earlier_runs"]] == [["aggregation"]]
    assert "Resumed: aggregation measured in an earlier run" in text
    assert all("error" not in r for r in report["benchmarks"].values())
    assert report["machine"]["cores"] and report["machine"]["python"]
    flat = [t for t in report["targets"] if t["target"].startswith("gas per participant per round flat")]
    assert flat and flat[0]["verdict"] == "MET"  # only digests reach the chain
    assert "## Targets" in text and "MET" in text


def test_run_all_judges_the_performance_targets_from_measured_figures() -> None:
    # Prepare: figures as the benchmarks return them, each on one side of its goal
    def breakdown(parameters: int, fetch: float) -> dict[str, object]:
        return {
            "backend": "anvil-kubo",
            "chain": "anvil",
            "nodes": 16,
            "parameters": parameters,
            "mean_split_seconds_all_nodes": {"fetch": fetch},
            "mean_download_bytes_per_node": 4e6,
        }

    results = {
        "storage_throughput": {"rows": [{"get_mb_s": 40.0}, {"get_mb_s": 64.0}]},
        "round_breakdown": {"jobs": [breakdown(10_000, 0.9), breakdown(10_000_000, 1.6)]},  # bound 64e6/64e6 = 1 s
        "flower_compare": {
            "block_time": 0.2,
            "rows": [
                {
                    "pair": "inprocess",
                    "nodes": 8,
                    "parameters_requested": 1e6,
                    "ratio": 1.4,
                    "cpu_ratio": 1.6,
                    "fl_chain": {"mean_round_seconds": 1.4, "backend": "anvil+memory"},
                    "flower": {"mean_round_seconds": 1.0},
                },
                {
                    "pair": "processes",
                    "nodes": 8,
                    "parameters_requested": 1e6,
                    "ratio": 1.3,
                    "fl_chain": {"mean_round_seconds": 1.3, "backend": "anvil"},
                    "flower": {"mean_round_seconds": 1.0},
                },
            ],
        },
        "simulate_scale": {
            "runs": [
                {
                    "nodes": 1000,
                    "rounds": 3,
                    "rounds_finalized": 3,
                    "wall_seconds": 319.0,
                    "peak_rss_ru_maxrss_mib": 5000.0,
                }
            ]
        },
        "gas": {
            "settings": [
                {"participants": 16, "partitions": 16, "gas_per_participant_per_round": 99_000.0, "model_sizes": {}}
            ]
        },
    }

    # Execute
    verdicts = {t["target"]: t["verdict"] for t in run_all.targets(results, quick=False)}

    # Assert
    def verdict(start: str) -> str:
        (found,) = [v for name, v in verdicts.items() if name.startswith(start)]
        return found

    assert verdict("round wall time fl-chain / Flower, inprocess") == "MISSED"  # wall 1.4 met, CPU 1.6 not
    assert verdict("round wall time fl-chain / Flower, processes") == "MET"  # 1.3 <= 1.0 + 2 x 0.2
    assert verdict("fetch phase per round, kubo, N=16 P=N, 10,000 ") == "MET"  # 0.9 < 1 s
    assert verdict("fetch phase per round, kubo, N=16 P=N, 10,000,000 ") == "MISSED"  # 1.6 > 1.5 x 1 s
    assert verdict("flchain simulate, 1,000 nodes") == "MISSED"  # 5000 MiB > 4 GiB
    assert verdict("gas per participant per round, P=N=16") == "MET"


def test_run_all_resume_refuses_a_report_of_the_other_mode_or_not_a_report(tmp_path: Path) -> None:
    # Prepare
    quick_report = tmp_path / "quick.json"
    quick_report.write_text(json.dumps({"quick": True, "machine": {}, "benchmarks": {}}))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[1, 2")

    # Execute / Assert
    with pytest.raises(ValueError, match="quick-mode report: resume it with --quick"):
        run_all.load_previous(quick_report, quick=False)
    with pytest.raises(ValueError, match="is not a JSON report of bench/run_all.py"):
        run_all.load_previous(garbage, quick=True)
    with pytest.raises(ValueError, match="cannot read"):
        run_all.load_previous(tmp_path / "missing.json", quick=True)


def test_instrumented_federation_of_two_nodes_splits_rounds_and_counts_bytes(tmp_path: Path) -> None:
    # Execute
    figures = run_federation(FederationJob(nodes=2, parameters=2_000, rounds=2, trainer="synthetic"), tmp_path)

    # Assert
    assert figures["status"] == "completed"
    assert [r["outcome"] for r in figures["rounds"]] == ["finalized", "finalized"]
    steady = figures["rounds"][1]
    split = steady["split_seconds_all_nodes"]
    assert set(split) == set(CATEGORIES)
    # commit and aggregate come from the nodes' phase hooks, chain_read from the chain connection
    assert split["commit"] > 0 and split["aggregate"] > 0 and split["chain_read"] > 0
    assert sum(split.values()) <= 1.01 * steady["wall_seconds"], "time counted twice"
    assert steady["gas"] > 0
    # P = N = 2, r = 2: each node fetches the other's update (M/2 per partition, two partitions);
    # it aggregated both partitions itself, so it gathers nothing: about M = bound (2(N-1)/N M = M).
    assert 0.9 < figures["download_over_bound"] < 1.2


def test_largest_federation_memory_bound_extrapolates_the_two_largest_rungs() -> None:
    # Prepare: 500 MiB per node process above a 0 MiB base
    rungs = [
        {"nodes": 4, "ok": True, "peak_total_rss_mib": 2500.0},
        {"nodes": 8, "ok": True, "peak_total_rss_mib": 4000.0},
        {"nodes": 16, "ok": True, "peak_total_rss_mib": 8000.0},
    ]

    # Execute
    bound = memory_bound_nodes(rungs, available_mib=20_000.0)

    # Assert
    assert bound == int(16 + (MEMORY_SHARE * 20_000.0 - 8000.0) / 500.0)
    assert memory_bound_nodes(rungs[:1], available_mib=20_000.0) is None  # one rung: no slope
    assert memory_bound_nodes(rungs, available_mib=float("nan")) is None


def test_p2pfl_compare_without_its_venv_is_not_measured_and_says_how_to_install(tmp_path: Path) -> None:
    # Prepare
    from bench import p2pfl_compare

    venv = tmp_path / "no-such-venv"

    # Execute
    result = p2pfl_compare.measure(nodes=2, parameters=2_000, rounds=2, venv=venv, sides=["p2pfl"])
    table = p2pfl_compare.format_table(result)

    # Assert
    assert result["p2pfl"]["not_measured"].startswith(f"no p2pfl venv at {venv}")
    assert result["verdict"] == "not measured"
    assert "not measured" in table and f'{venv}/bin/pip install "p2pfl[flax,dp]==0.4.4"' in table


@pytest.mark.skipif(
    not os.environ.get("FLCHAIN_TEST_P2PFL"),
    reason="runs p2pfl from its own venv (bench/p2pfl_compare.py): set FLCHAIN_TEST_P2PFL=1 to include it",
)
def test_p2pfl_compare_two_p2pfl_nodes_train_on_loopback_and_count_bytes(tmp_path: Path) -> None:
    # Prepare
    from bench import p2pfl_compare

    if problem := p2pfl_compare.venv_problem(p2pfl_compare.DEFAULT_VENV):
        pytest.skip(problem)
    job = p2pfl_compare.export_job(2, 2_000, 2, tmp_path)

    # Execute
    figures = p2pfl_compare.p2pfl_run(2, 2, p2pfl_compare.DEFAULT_VENV, tmp_path, timeout=120)

    # Assert
    assert figures["sockets"]["listening"] and figures["sockets"]["outside_loopback"] == []
    assert len(figures["round_seconds"]) == 2 and figures["mean_round_seconds"] > 0
    # each node gets the other's model (or a partial aggregate holding it) once per round, at least
    assert figures["mean_received_bytes_per_node"] >= job["model_bytes"]
    assert figures["accuracy_after_rounds"][-1] > figures["accuracy_after_rounds"][0]


def test_privacy_accuracy_picks_the_smallest_noise_within_each_budget() -> None:
    from bench.privacy_accuracy import DELTA, noise_for
    from fl_chain.privacy.accountant import epsilon

    for budget in (1.0, 3.0, 8.0):
        z = noise_for(budget, rounds=10)
        assert epsilon(z, DELTA, 10) <= budget < epsilon(z - 2e-3, DELTA, 10)
    assert noise_for(float("inf"), rounds=10) == 0.0
