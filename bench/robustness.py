#!/usr/bin/env python3
"""Accuracy under model poisoning: FedAvg, coordinate-wise median and trimmed mean, 1 of 8 nodes poisoned.

Usage::

    python -m bench.robustness                          # the defaults below, about 15 minutes
    python -m bench.robustness --rounds 5 --strategies fedavg median
    python -m bench.robustness --split dirichlet --alpha 0.5 --trim-fraction 0.25

Every run is a full in-process federation (embedded chain, memory storage, the real contract and
node runtime, as ``flchain simulate`` runs it): 8 nodes, scikit-learn digits, an MLP (32 hidden
units), IID shards, 10 rounds, P = 8 partitions, r = 2, q = 2, 1 local epoch per round. For each
strategy there is a clean run and a poisoned run in which node 3 publishes, every round,

    base - 10 * (trained - base)        (attack "flip10")

instead of its trained model: its local update (trained minus the global model ``base`` it
started from) with the sign flipped and scaled by 10. It is finite, the right length and well
formed, so validation keeps it; under FedAvg it outweighs the seven honest updates (the global
step becomes about -3/8 of the honest one, so the model walks away from the optimum). ``scale100``
(the trained model times 100) is also available.

The trimmed mean drops ``floor(trim_fraction * n)`` values at each end of every coordinate: the
default ``trim_fraction`` of the strategy (0.1) trims nothing with n = 8, so this benchmark uses
0.125 (one value per end) unless ``--trim-fraction`` says otherwise.

Prints a table (strategy, clean and poisoned final test accuracy, their difference in percentage
points, the largest loss in any one round, and whether the issue's target holds: robust strategies
within 2 pp of their clean run, plain FedAvg not) and writes ``bench/results/robustness.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fl_chain.chain.coordinator import Coordinator, RoundStatus, TaskStatus
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.protocol.blob import BlobHeader, BlobKind, blob_size, decode_partition
from fl_chain.protocol.cid import cid_from_digest
from fl_chain.protocol.partitioning import join_partitions, partition_bounds
from fl_chain.protocol.task import TaskSpec
from fl_chain.storage.base import Storage
from fl_chain.training.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results" / "robustness.json"
NODES = 8
POISONED = 3
#: Percentage points a robust strategy may lose to the attack (the issue's target).
TARGET_PP = 2.0
STRATEGIES = ("fedavg", "median", "trimmed_mean")

#: ``(trained, base) -> published``: what the poisoned node publishes instead of ``trained``.
Attack = Callable[[np.ndarray, np.ndarray], np.ndarray]
ATTACKS: dict[str, tuple[str, Attack]] = {
    "flip10": (
        "base - 10 * (trained - base): the local update sign-flipped and scaled by 10",
        lambda trained, base: base - np.float32(10) * (trained - base),
    ),
    "scale100": ("100 * trained: the trained model scaled by 100", lambda trained, base: np.float32(100) * trained),
}


class PoisonedTrainer:
    """Trains like ``inner``; returns ``attack(trained, base)`` as the update."""

    def __init__(self, inner: Trainer, attack: Attack) -> None:
        self.inner = inner
        self.attack = attack

    def initial_vector(self) -> np.ndarray:
        return self.inner.initial_vector()

    def train(self, vector: np.ndarray, *, seed: int) -> tuple[np.ndarray, int, dict[str, float]]:
        trained, samples, metrics = self.inner.train(vector, seed=seed)
        return np.ascontiguousarray(self.attack(trained, vector), dtype=np.float32), samples, metrics

    def evaluate(self, vector: np.ndarray) -> dict[str, float]:
        return self.inner.evaluate(vector)


def task_spec(args: argparse.Namespace, strategy: str) -> TaskSpec:
    """The benchmark task (as ``flchain simulate`` would build it) with ``strategy``."""
    options: dict[str, Any] = {"trim_fraction": args.trim_fraction} if strategy == "trimmed_mean" else {}
    if args.norm_bound is not None:
        options["norm_bound"] = args.norm_bound
    return TaskSpec.from_dict(
        {
            "protocol": {
                "rounds": args.rounds,
                "partitions": NODES,
                "replication": 2,
                "quorum": 2,
                "min_contributors": 2,
                "update_duration": 3600,
                "aggregation_duration": 3600,
            },
            "model": {"name": "mlp", "hidden": 32, "seed": args.seed},
            "dataset": {"name": "digits", "split": args.split, "alpha": args.alpha, "seed": args.seed},
            "training": {"epochs": 1, "batch_size": 16, "lr": 0.1},
            "strategy": {"name": strategy, **options},
        },
        origin="robustness benchmark",
    )


def global_model(storage: Storage, coordinator: Coordinator, task_id: int, round_: int, dimension: int) -> np.ndarray:
    """A finalized round's global model: its final partitions, fetched and verified."""
    config, _ = coordinator.get_task(task_id)
    parts = []
    for b, digest in zip(
        partition_bounds(dimension, config.partitions), coordinator.get_final_digests(task_id, round_)
    ):
        expected = BlobHeader(BlobKind.AGGREGATE, task_id, round_, b.index, config.partitions, b.offset, b.length)
        blob = storage.get(cid_from_digest(digest), timeout=60, max_size=blob_size(b.length))  # type: ignore[arg-type]
        parts.append(decode_partition(blob, expected)[1])
    return join_partitions(parts)


def run(args: argparse.Namespace, strategy: str, attack: str | None) -> dict[str, Any]:
    """One federation to completion; test accuracy of every round's global model."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="robustness-") as state_root:
        chain, coordinator, task_id, nodes = build_federation(
            task_spec(args, strategy), nodes=NODES, state_root=state_root
        )
        if attack is not None:
            nodes[POISONED].trainer = PoisonedTrainer(nodes[POISONED].trainer, ATTACKS[attack][1])
        status = InProcessFederation(chain, coordinator, task_id, nodes).run()
        if status != TaskStatus.COMPLETED:
            raise RuntimeError(f"{strategy}: the task ended {status.name}")
        honest = nodes[0]
        dimension = honest.trainer.initial_vector().size
        _, task = coordinator.get_task(task_id)
        accuracy = []
        for round_ in range(task.current_round + 1):
            if coordinator.get_round(task_id, round_).status != RoundStatus.FINALIZED:
                continue
            vector = global_model(honest.storage, coordinator, task_id, round_, dimension)
            accuracy.append(honest.trainer.evaluate(vector)["test_accuracy"])
    return {
        "strategy": strategy,
        "attack": attack,
        "rounds_finalized": len(accuracy),
        "rounds_played": task.current_round + 1,
        "final_accuracy": accuracy[-1],
        "accuracy_per_round": accuracy,
        "seconds": time.monotonic() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--attack", choices=sorted(ATTACKS), default="flip10")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--split", choices=("iid", "dirichlet"), default="iid")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (with --split dirichlet)")
    parser.add_argument(
        "--trim-fraction", type=float, default=0.125, help="trimmed_mean's trim_fraction (default 0.125)"
    )
    parser.add_argument("--seed", type=int, default=0, help="model and dataset shard seed")
    parser.add_argument(
        "--norm-bound",
        type=float,
        default=None,
        help="[strategy] norm_bound for every run (per-partition bound on an update's change); "
        "then every strategy, FedAvg included, should stay within the target",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = parser.parse_args(argv)

    started = time.monotonic()
    rows = []
    for strategy in args.strategies:
        figures = {}
        for attack in (None, args.attack):
            label = "clean" if attack is None else f"poisoned ({attack})"
            print(f"... {strategy} {label}", file=sys.stderr, flush=True)
            figures[label.split()[0]] = run(args, strategy, attack)
        clean, poisoned = figures["clean"]["final_accuracy"], figures["poisoned"]["final_accuracy"]
        difference = 100 * (poisoned - clean)
        robust = abs(difference) <= TARGET_PP
        pairs = zip(figures["clean"]["accuracy_per_round"], figures["poisoned"]["accuracy_per_round"])
        worst = max(100 * (c - p) for c, p in pairs)
        rows.append(
            {
                "strategy": strategy,
                "options": {"trim_fraction": args.trim_fraction} if strategy == "trimmed_mean" else {},
                "clean_final_accuracy": clean,
                "poisoned_final_accuracy": poisoned,
                "difference_pp": difference,
                "largest_per_round_loss_pp": worst,
                "within_target": robust,
                "norm_bound": args.norm_bound,
                "target_met": (not robust) if strategy == "fedavg" and args.norm_bound is None else robust,
                "clean": figures["clean"],
                "poisoned": figures["poisoned"],
            }
        )

    setting = (
        f"{NODES} nodes, digits, MLP(32), {args.split}{f' alpha={args.alpha}' if args.split == 'dirichlet' else ''}, "
        f"{args.rounds} rounds, P={NODES} r=2 q=2; node {POISONED} poisoned: {ATTACKS[args.attack][0]}"
    )
    print(f"\n{setting}\n")
    print(f"{'strategy':<24} {'clean':>8} {'poisoned':>9} {'diff (pp)':>10} {'worst round (pp)':>17}  target")
    for row in rows:
        name = row["strategy"] + (f" ({args.trim_fraction:g})" if row["strategy"] == "trimmed_mean" else "")
        name += f" +bound {args.norm_bound:g}" if args.norm_bound is not None else ""
        plain_fedavg = row["strategy"] == "fedavg" and args.norm_bound is None
        want = f"not within {TARGET_PP:g} pp" if plain_fedavg else f"within {TARGET_PP:g} pp"
        verdict = "met" if row["target_met"] else "MISSED"
        print(
            f"{name:<24} {row['clean_final_accuracy']:>8.4f} {row['poisoned_final_accuracy']:>9.4f} "
            f"{row['difference_pp']:>+10.2f} {-row['largest_per_round_loss_pp']:>+17.2f}  {want}: {verdict}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()}, {platform.python_version()}, {os.cpu_count()} cores",
                "setting": setting,
                "nodes": NODES,
                "poisoned_node": POISONED,
                "attack": args.attack,
                "attack_description": ATTACKS[args.attack][0],
                "rounds": args.rounds,
                "split": args.split,
                "alpha": args.alpha if args.split == "dirichlet" else None,
                "seed": args.seed,
                "target_pp": TARGET_PP,
                "seconds": time.monotonic() - started,
                "strategies": rows,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
