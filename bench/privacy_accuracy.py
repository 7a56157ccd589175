#!/usr/bin/env python3
"""Accuracy against epsilon: ``flchain simulate`` with differential privacy at several budgets.

Usage::

    python -m bench.privacy_accuracy                         # digits, 8 nodes, 10 rounds, eps 1, 3, 8, inf
    python -m bench.privacy_accuracy --dataset fashion_mnist --model cnn --rounds 5
    python -m bench.privacy_accuracy --nodes 8 --epsilons 1,8 --clip-norm 0.5 --quick

For each epsilon the noise multiplier z is the smallest (to 1e-3) whose epsilon after all the job's
rounds, at delta (1e-5), is within the budget (``fl_chain.privacy.accountant``, Google's
dp-accounting RDP accountant); ``inf`` is the same job with clipping and unweighted averaging but no
noise (z = 0), and ``none`` the job without differential privacy. Each run is
:func:`fl_chain.federation.simulate.run_simulation` as ``flchain simulate --dp-noise-multiplier z
--dp-clip-norm C`` calls it (its default chain, memory storage, real contract, real training).

User-level DP-FedAvg adds noise of standard deviation z·C/n to every coordinate of the average of n
clipped updates: with n = 8 sites the noise is large against the signal at any small epsilon, which
is what this benchmark shows; the guarantee per site needs many sites for a useful model.

Writes ``bench/results/privacy_accuracy.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import save_result
from fl_chain.cli import build_parser
from fl_chain.federation.display import SimulationDisplay
from fl_chain.federation.simulate import SimulationOptions, run_simulation, simulate_spec
from fl_chain.privacy.accountant import epsilon

RESULTS = Path(__file__).resolve().parent / "results" / "privacy_accuracy.json"
DELTA = 1e-5


def noise_for(budget: float, rounds: int, delta: float = DELTA) -> float:
    """Smallest noise multiplier (to 1e-3) whose epsilon after ``rounds`` rounds is at most ``budget``."""
    if math.isinf(budget):
        return 0.0
    low, high = 0.0, 1.0
    while epsilon(high, delta, rounds) > budget:
        low, high = high, high * 2
    while high - low > 1e-3:
        middle = (low + high) / 2
        low, high = (low, middle) if epsilon(middle, delta, rounds) <= budget else (middle, high)
    return high


def run_one(args: argparse.Namespace, setting: str, out: Path) -> dict[str, Any]:
    """One simulation: ``setting`` is an epsilon (``inf`` for no noise) or ``none`` (no DP)."""
    argv = [
        "simulate",
        *("--nodes", str(args.nodes), "--rounds", str(args.rounds), "--dataset", args.dataset),
        *(("--model", args.model) if args.model else ()),
    ]
    z = None
    if setting != "none":
        z = noise_for(float(setting), args.rounds)
        argv += ["--dp-noise-multiplier", f"{z:g}", "--dp-clip-norm", f"{args.clip_norm:g}"]
        argv += ["--dp-delta", f"{DELTA:g}"]
    parsed = build_parser().parse_args(argv)
    started = time.monotonic()
    summary = run_simulation(
        simulate_spec(parsed), SimulationOptions(nodes=args.nodes, out=out), SimulationDisplay(quiet=True)
    )
    finalized = [r for r in summary["rounds"] if r["status"] == "finalized"]
    privacy = summary.get("privacy") or {}
    return {
        "setting": setting,
        "noise_multiplier": z,
        "epsilon": privacy.get("epsilon"),
        "rounds_finalized": len(finalized),
        "final_accuracy": summary["final_accuracy"],
        "accuracy_per_round": [r["test_accuracy"] for r in finalized],
        "seconds": time.monotonic() - started,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="flchain-privacy-accuracy-") as tmp:
        for setting in ["none", *args.epsilons.split(",")]:
            run = run_one(args, setting, Path(tmp) / setting)
            runs.append(run)
            z = "-" if run["noise_multiplier"] is None else f"{run['noise_multiplier']:.3f}"
            eps = "-" if run["epsilon"] is None else f"{run['epsilon']:.3g}"
            print(
                f"{setting:>5}: z {z:>6}, eps {eps:>6}, {run['rounds_finalized']}/{args.rounds} rounds, "
                f"accuracy {run['final_accuracy']:.4f} ({run['seconds']:.0f} s)",
                flush=True,
            )
    return {
        "benchmark": "privacy_accuracy",
        "dataset": args.dataset,
        "model": args.model,
        "nodes": args.nodes,
        "rounds": args.rounds,
        "clip_norm": args.clip_norm,
        "delta": DELTA,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", help="as flchain simulate --model (default: the dataset's)")
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epsilons", default="1,3,8,inf", help="comma-separated budgets at delta 1e-5")
    parser.add_argument("--clip-norm", type=float, default=1.0, help="C: each site's update is clipped to it")
    parser.add_argument("--quick", action="store_true", help="4 nodes, 2 rounds, eps 8 and inf")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.rounds, args.epsilons = 4, 2, "8,inf"
    result = measure(args)
    save_result(result, args.output)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
