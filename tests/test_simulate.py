"""`flchain simulate`: the real contract and runtime in one process, with a complete run folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def test_simulate_writes_summary_metrics_and_final_model(tmp_path: Path) -> None:
    """4 nodes, 2 rounds: every round finalized with accuracy, CIDs and gas; the final model saved."""
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "fl_chain.cli", "simulate", "--nodes", "4", "--rounds", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["rounds"]] == ["finalized", "finalized"]
    assert all(0.0 < r["test_accuracy"] <= 1.0 and r["global_model_cid"].startswith("bafy") for r in summary["rounds"])
    assert all(0 < r["gas_used"] < 2_000_000 and r["bytes_moved"] > 0 for r in summary["rounds"])
    assert summary["final_accuracy"] == summary["rounds"][-1]["test_accuracy"]
    assert (out / "metrics.csv").read_text().count("\n") == 3
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = np.load(out / "final-model.npy")
    node_final = np.load(out / "nodes" / "node-3" / "task-1" / "final-model.npy")
    assert final.tobytes() == node_final.tobytes()
    assert list((out / "logs").glob("*/task-1/round-1.log"))


def test_simulate_bad_option_is_one_line_error(tmp_path: Path) -> None:
    """An unknown dataset is named in one line with the valid ones, exit 2, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "fl_chain.cli", "simulate", "--dataset", "imagenet", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "imagenet" in result.stderr and "digits" in result.stderr
    assert "Traceback" not in result.stderr
