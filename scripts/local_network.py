#!/usr/bin/env python3
"""Run a local federation: a chain process, the contract, and N `flchain node` OS processes.

Usage:
  python scripts/local_network.py --nodes 4 [--chain ganache|anvil] [--task-file examples/digits-mlp.toml]
                                  [--out runs/localnet-<time>] [--timeout 900]

It starts ganache (or anvil) on 127.0.0.1, deploys FLCoordinator, admits N development accounts,
creates the task, starts N nodes (each with its own key, data shard, state directory and embedded
kubo IPFS peer), starts the task once all joined, prints every round as it ends, then a summary,
and stops everything it started. Node output: OUT/node-<i>/stdout.log; logs: OUT/node-<i>/logs/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fl_chain.chain.coordinator import RoundStatus, TaskStatus
from fl_chain.cli.stopping import Interrupted, stop_on_signals
from fl_chain.errors import FLChainError
from fl_chain.federation.localnet import LocalNetwork


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--chain", default="ganache", choices=["ganache", "anvil"])
    parser.add_argument(
        "--task-file", default=str(Path(__file__).resolve().parents[1] / "examples" / "digits-mlp.toml")
    )
    parser.add_argument("--out", default=f"runs/localnet-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before giving up on the task")
    args = parser.parse_args(argv)

    def report(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    stop_on_signals()  # Ctrl-C and SIGTERM stop every process this script started, then exit 130 / 143
    try:
        with LocalNetwork(args.out, nodes=args.nodes, task_file=args.task_file, chain=args.chain, report=report) as net:
            net.start()
            status = net.follow(timeout=args.timeout)
            codes = net.wait_nodes(timeout=60)
            finalized = failed = 0
            for round_ in range(net.coordinator.get_task(net.task_id)[1].current_round + 1):
                info = net.coordinator.get_round(net.task_id, round_)
                finalized += info.status == RoundStatus.FINALIZED
                failed += info.status == RoundStatus.FAILED
            report(
                f"summary: task {net.task_id} {status.name.lower()}; {finalized} rounds finalized, {failed} retried; "
                f"node exit codes {codes}; run folder {args.out}"
            )
            return 0 if status == TaskStatus.COMPLETED else 1
    except FLChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"interrupted by {stop.signal_name}; stopped every process this script started", file=sys.stderr)
        return stop.exit_status


if __name__ == "__main__":
    sys.exit(main())
