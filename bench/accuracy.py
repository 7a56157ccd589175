"""Accuracy of fl-chain federations against centralized training, as ``flchain simulate`` runs them.

Each job is a full simulation (embedded chain, memory storage, the real contract and node runtime)
with ``--compare``, which also replays the same clients with central FedAvg (the global models must
be byte-identical) and trains one model on the pooled data for as many epochs; then the same clients
run under Flower's own round loop (``flwr.server.Server`` with FedAvg, in-process, see
``bench/flower_compare.py``), whose accuracy is reported beside fl-chain's:

* ``quickstart``: the README's quick start (``flchain simulate --nodes 4 --rounds 5 --dataset
  digits``) with simulate's default training options: time to accuracy;
* ``breast_cancer``: the same defaults on scikit-learn's breast cancer data;
* ``digits``: scikit-learn digits, an MLP, 8 nodes, Dirichlet(0.5) label skew, 20 rounds;
* ``fashion``: Fashion-MNIST (Debian's dataset-fashion-mnist, 60k/10k), a small CNN, 8 nodes
  (IID), 10 rounds.

Prints one line per job and writes ``bench/results/accuracy.json`` (and each run folder under
``bench/results/accuracy-runs/``). Run: ``.venv/bin/python -m bench.accuracy [--jobs quickstart digits ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from bench.flower_compare import flower_inprocess
from fl_chain.cli import build_parser
from fl_chain.federation.display import SimulationDisplay
from fl_chain.federation.simulate import SimulationOptions, run_simulation, simulate_spec

RESULTS = Path(__file__).resolve().parent / "results"

#: ``flchain simulate`` arguments of each job.
JOBS: dict[str, list[str]] = {
    # The README's quick start, with simulate's default training options (time to accuracy).
    "quickstart": ["--nodes", "4", "--rounds", "5", "--dataset", "digits"],
    # The same defaults on the other built-in tabular dataset.
    "breast_cancer": ["--nodes", "4", "--rounds", "5", "--dataset", "breast_cancer"],
    "digits": [
        "--nodes",
        "8",
        "--rounds",
        "20",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--hidden",
        "32",
        "--split",
        "dirichlet",
        "--alpha",
        "0.5",
        "--partitions",
        "8",
        "--replication",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "0.1",
    ],
    "fashion": [
        "--nodes",
        "8",
        "--rounds",
        "10",
        "--dataset",
        "fashion_mnist",
        "--model",
        "cnn",
        "--split",
        "iid",
        "--partitions",
        "8",
        "--replication",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
    ],
}


#: ``measure(quick=True)``: the digits job at 4 nodes and 2 rounds (later options override earlier ones).
QUICK_OVERRIDES = ["--nodes", "4", "--rounds", "2", "--partitions", "4"]


def run_job(
    name: str, *, verbose: bool, out: Path | None = None, overrides: list[str] | None = None
) -> dict[str, object]:
    """Run one job with --compare; returns its figures."""
    argv = [*JOBS[name], *(overrides or [])]
    args = build_parser().parse_args(["simulate", *argv])
    out = out or RESULTS / "accuracy-runs" / name
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    summary = run_simulation(
        simulate_spec(args),
        SimulationOptions(nodes=args.nodes, out=out, compare=True),
        SimulationDisplay(quiet=not verbose),
    )
    wall = time.monotonic() - started
    flower = flower_inprocess(args.nodes, 0, args.rounds, spec=simulate_spec(args))
    reference = summary["reference"]
    finalized = [r for r in summary["rounds"] if r["status"] == "finalized"]
    return {
        "job": name,
        "command": "flchain simulate --compare " + " ".join(argv),
        "rounds_finalized": len(finalized),
        "final_accuracy": summary["final_accuracy"],
        "pooled_accuracy": summary["pooled"]["test_accuracy"],
        "pooled_epochs": summary["pooled"]["epochs"],
        "central_fedavg_identical": reference.get("final_identical"),
        "central_fedavg_rounds_identical": f"{reference.get('rounds_identical')}/{reference.get('rounds_compared')}",
        "federation_seconds": summary["wall_seconds"],
        "seconds_per_round": summary["wall_seconds"] / max(len(summary["rounds"]), 1),
        "total_seconds_with_baselines": wall,
        "accuracy_per_round": [r["test_accuracy"] for r in finalized],
        "flower_accuracy": flower["accuracy_per_round"][-1],
        "flower_accuracy_per_round": flower["accuracy_per_round"],
    }


def measure(*, quick: bool = False, jobs: list[str] | None = None) -> dict[str, object]:
    """Figures of each job; ``quick``: digits only at 4 nodes, 2 rounds, run folder in a temporary directory."""
    import tempfile

    if quick:
        with tempfile.TemporaryDirectory(prefix="flchain-accuracy-") as tmp:
            figures = run_job("digits", verbose=False, out=Path(tmp) / "digits", overrides=QUICK_OVERRIDES)
        return {"benchmark": "accuracy", "quick": True, "jobs": [figures]}
    return {"benchmark": "accuracy", "quick": False, "jobs": [run_job(name, verbose=False) for name in jobs or JOBS]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", nargs="+", choices=sorted(JOBS), default=list(JOBS))
    parser.add_argument("--verbose", action="store_true", help="show each simulation's progress and table")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.jobs:
        print(f"{name}: flchain simulate --compare {' '.join(JOBS[name])}", flush=True)
        figures = run_job(name, verbose=args.verbose)
        results.append(figures)
        print(
            f"  final accuracy {figures['final_accuracy']:.4f} after {figures['rounds_finalized']} rounds; "
            f"Flower FedAvg {figures['flower_accuracy']:.4f}; "
            f"pooled centralized {figures['pooled_accuracy']:.4f} ({figures['pooled_epochs']} epochs); "
            f"central FedAvg byte-identical: {figures['central_fedavg_identical']} "
            f"({figures['central_fedavg_rounds_identical']} rounds); "
            f"federation wall time {figures['federation_seconds']:.0f} s ({figures['seconds_per_round']:.1f} s/round)",
            flush=True,
        )
    # Jobs not run this time keep their last figures.
    path = RESULTS / "accuracy.json"
    previous = json.loads(path.read_text()).get("jobs", []) if path.exists() else []
    kept = [job for job in previous if job["job"] not in {r["job"] for r in results}]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} cores",
        "jobs": kept + results,
    }
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / 'accuracy.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
