"""Smoke test of the benchmark harness (bench/): tiny sizes, well under a minute.

Checks that ``bench/run_all.py`` drives benchmarks through their ``measure`` functions and builds a
report with machine details and target verdicts, and that the bench-side instrumentation of an
in-process federation accounts for a round (time split, gas, bytes against the all-reduce bound).
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))


def test_run_all_quick_gas_and_aggregation_reports_machine_and_verdicts(tmp_path: Path) -> None:
    # Prepare
    import run_all

    # Execute
    report = run_all.run(quick=True, only=["gas", "aggregation"])
    text = run_all.markdown(report)

    # Assert
    assert set(report["benchmarks"]) == {"gas", "aggregation"}
    assert all("error" not in r for r in report["benchmarks"].values())
    assert report["machine"]["cores"] and report["machine"]["python"]
    flat = [t for t in report["targets"] if t["target"].startswith("gas per participant per round flat")]
    assert flat and flat[0]["verdict"] == "MET"  # only digests reach the chain
    assert "## Targets" in text and "MET" in text


def test_instrumented_federation_of_two_nodes_splits_rounds_and_counts_bytes(tmp_path: Path) -> None:
    # Prepare
    from _federation import CATEGORIES, FederationJob, run_federation

    # Execute
    figures = run_federation(FederationJob(nodes=2, parameters=2_000, rounds=2, trainer="synthetic"), tmp_path)

    # Assert
    assert figures["status"] == "completed"
    assert [r["outcome"] for r in figures["rounds"]] == ["finalized", "finalized"]
    steady = figures["rounds"][1]
    assert steady["split_seconds_all_nodes"]["commit"] > 0
    assert set(steady["split_seconds_all_nodes"]) == set(CATEGORIES)
    assert steady["gas"] > 0
    # P = N = 2, r = 2: each node fetches the other's update (M/2 per partition, two partitions);
    # it aggregated both partitions itself, so it gathers nothing: about M = bound (2(N-1)/N M = M).
    assert 0.9 < figures["download_over_bound"] < 1.2
