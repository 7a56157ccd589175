#!/usr/bin/env python3
"""Where a round's time goes: local training, put, commit, fetch, aggregate, finalize wait.

Usage::

    python -m bench.round_breakdown                  # N in {4, 8, 16} x about 1e4, 1e6, 1e7 parameters,
                                                     # embedded chain + memory store and anvil + kubo peers
    python -m bench.round_breakdown --quick          # N = 4, 1e4 parameters, both backends, 2 rounds
    python -m bench.round_breakdown --nodes 8 --parameters 1000000 --backends embedded-memory

Each job is an in-process federation built by ``fl_chain.federation.inprocess.build_federation`` and run by
``InProcessFederation`` exactly as ``flchain simulate`` runs it (real contract, real node runtime),
instrumented from the outside (``bench/_federation.py``): the storage peer, the trainer, the
coordinator and the strategy of each node are wrapped and every call is timed. The model is the
digits MLP with its hidden layer sized to the requested parameter count (64·h + h + 10·h + 10), and
training is real torch training (one epoch, batch 16, on the node's IID shard); ``--trainer
synthetic`` swaps in a labelled numpy stand-in. P = N partitions, r = 2, q = 2.

Per round the script reports the seconds of all nodes together in each category (nodes run one
step at a time in one thread, so these add up to the round's wall time; ``other`` is the rest:
blob encoding/decoding and header checks, state files, the runner's own chain reads), the chain
reads made by the nodes, and ``finalize wait``: mean over nodes of the time from a node's last
commit of the round to the round's end. Round 0 (no global model to fetch) is left out of the
means. Each job runs in its own child process so that its peak memory is its own.

Writes ``bench/results/round_breakdown.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import child_env, module_command, save_result
from bench._federation import CATEGORIES, FederationJob, run_federation, stop_on_sigterm

RESULTS = Path(__file__).resolve().parent / "results" / "round_breakdown.json"
BACKENDS = {
    "embedded-memory": ("embedded", "memory"),
    "anvil-memory": ("anvil", "memory"),
    "anvil-kubo": ("anvil", "kubo"),
}
#: Run unless ``--backends`` says otherwise (anvil-memory: ``flchain simulate --chain anvil``).
DEFAULT_BACKENDS = ["embedded-memory", "anvil-kubo"]
FULL = {"nodes": [4, 8, 16], "parameters": [10_000, 1_000_000, 10_000_000], "rounds": 3}
QUICK = {"nodes": [4], "parameters": [10_000], "rounds": 2}
#: Seconds one job may take before it is stopped and recorded as timed out.
JOB_TIMEOUT = 1800


def run_job_in_child(job: FederationJob, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
    """Run ``job`` in a child process of this script (its own peak memory); returns its figures or an error."""
    with tempfile.TemporaryDirectory(prefix="flchain-breakdown-") as tmp:
        result = Path(tmp) / "result.json"
        command = module_command(
            "round_breakdown", "--child-job", json.dumps(asdict(job)), "--child-result", str(result)
        )
        started = time.monotonic()
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env()
        )
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.terminate()  # our own child, by its pid: SIGTERM lets it close its chain and kubo peers
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
            return {**asdict(job), "error": f"timed out after {timeout:.0f} s"}
        except BaseException:
            process.terminate()  # we are being stopped: stop the child too (it cleans up on SIGTERM)
            process.wait(30)
            raise
        if process.returncode != 0 or not result.exists():
            tail = "\n".join(stderr.strip().splitlines()[-5:])
            return {**asdict(job), "error": f"exit {process.returncode}: {tail}"}
        figures = json.loads(result.read_text())
        figures["job_seconds"] = time.monotonic() - started
        return figures  # type: ignore[no-any-return]


def measure(
    *,
    quick: bool = False,
    nodes: list[int] | None = None,
    parameters: list[int] | None = None,
    backends: list[str] | None = None,
    rounds: int | None = None,
    trainer: str = "mlp",
    progress: Any = None,
) -> dict[str, Any]:
    """Run every (backend, N, model size) job; returns ``{"jobs": [...], ...}``."""
    sizes = QUICK if quick else FULL
    nodes = nodes or sizes["nodes"]
    parameters = parameters or sizes["parameters"]
    backends = backends or DEFAULT_BACKENDS
    rounds = rounds or sizes["rounds"]
    jobs = []
    for backend in backends:
        chain, storage = BACKENDS[backend]
        for d in parameters:
            for n in nodes:
                job = FederationJob(nodes=n, parameters=d, rounds=rounds, chain=chain, storage=storage, trainer=trainer)
                if progress:
                    progress(f"round_breakdown: {backend} N={n} D={d:.0e}")
                jobs.append({"backend": backend, **run_job_in_child(job)})
    return {
        "benchmark": "round_breakdown",
        "quick": quick,
        "trainer": trainer,
        "categories": list(CATEGORIES),
        "jobs": jobs,
    }


def format_table(result: dict[str, Any]) -> str:
    """Markdown table: mean seconds per steady round, all nodes together."""
    head = ["backend", "N", "params", "round s", *CATEGORIES, "other", "final. wait", "gas/N"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for job in result["jobs"]:
        if "error" in job:
            lines.append(
                f"| {job['backend']} | {job['nodes']} | {job['parameters']:.0e} | error: {job['error'][:80]} |"
            )
            continue
        split = job["mean_split_seconds_all_nodes"]
        cells = [
            job["backend"],
            str(job["nodes"]),
            f"{job['parameters']:,}",
            f"{job['mean_round_seconds']:.2f}",
            *(f"{split[c]:.2f}" for c in CATEGORIES),
            f"{job['mean_other_seconds']:.2f}",
            f"{job['mean_finalize_wait_seconds']:.2f}",
            f"{job['mean_gas_per_participant']:,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 4, 1e4 parameters, 2 rounds")
    parser.add_argument("--nodes", help="comma-separated N")
    parser.add_argument("--parameters", help="comma-separated model sizes")
    parser.add_argument("--backends", help=f"comma-separated, from {', '.join(BACKENDS)}")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--trainer", choices=("mlp", "synthetic"), default="mlp")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child-job", help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stop_on_sigterm()
    if args.child_job:
        figures = run_federation(FederationJob(**json.loads(args.child_job)))
        args.child_result.write_text(json.dumps(figures))
        return 0
    result = measure(
        quick=args.quick,
        nodes=[int(v) for v in args.nodes.split(",")] if args.nodes else None,
        parameters=[int(float(v)) for v in args.parameters.split(",")] if args.parameters else None,
        backends=args.backends.split(",") if args.backends else None,
        rounds=args.rounds,
        trainer=args.trainer,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(format_table(result))
    save_result(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
