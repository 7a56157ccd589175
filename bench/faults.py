#!/usr/bin/env python3
"""Faults over many seeded runs: rounds finalized and retried, hangs, wrong global models, clean stops.

Usage::

    python -m bench.faults --jobs 2           # 100 seeds (0..99), anvil, two runs at a time
    python -m bench.faults --runs 10 --jobs 2 --chain ganache
    python -m bench.faults --seeds 7,8        # just these seeds

Each run (``tests.helpers.faults.run_faults``) is a local network of N node processes with kubo
peers, N = 4 for even seeds and 5 for odd ones, on logistic regression over digits: P = N, r = 2,
q = 2, 3 rounds, 30 s update and 15 s aggregation deadlines (and 15 s more for fallback
aggregation; a healthy phase ends as soon as everyone committed), 0.2 s blocks. From the seed it
stops 1..floor((N-1)/2) nodes at random phases (training, uploading, committed, aggregating,
waiting), each with SIGKILL (a crash; about half restarted after 0.5..8 s), SIGTERM or SIGINT (an
operator's stop: the node must exit 143 / 130 by itself, then it is restarted after 0.5..8 s).
After the task it recomputes every finalized round's global model from the blobs in IPFS and the
commits on chain and compares it byte for byte with the global the federation finalized.

Prints one line per run, a table and totals; writes ``bench/results/faults.json`` after every run
(so an interrupted benchmark keeps what it measured). Hangs, wrong global models and failed stops
(a SIGTERM / SIGINT the node did not answer with a clean exit) must be 0.
``touch WORKDIR/STOP`` ends a benchmark after the runs in progress (later seeds are recorded as
skipped and left out of the totals); ``--resume`` then keeps the runs already in the results file
(same chain and configuration) and runs only the seeds it lacks, so 100 runs can be measured in
several sittings (each run records the commit it ran); ``--summarize FILE`` prints the table of a
results file again.
With 0.2 s blocks and nodes stopped once all have the final model, one run takes 21 to 127 s (mean
43 s) with ``--jobs 2`` on 2 cores, the longest where a node stays down and rounds wait out their
deadlines (2026-12-02: 100 runs in 41.5 min; docs/protocol.md has the figures); it took 1.3 to 4
minutes before. bench/results/faults.json has the latest run's records.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.helpers.faults import PHASES, STOP_SIGNALS, FaultConfig, run_faults

RESULTS = Path(__file__).resolve().parent / "results" / "faults.json"


def config_for(seed: int, base: FaultConfig) -> FaultConfig:
    """N = 4 for even seeds, 5 for odd ones."""
    return replace(base, nodes=4 + seed % 2)


#: Create this file in the work directory to end the benchmark after the runs in progress.
STOP_FILE = "STOP"


def skipped(seed: int) -> dict[str, Any]:
    """The record of a seed not run because the benchmark was stopped."""
    return {
        "seed": seed, "nodes": 4 + seed % 2, "skipped": True, "status": "skipped", "completed": False,
        "hung": False, "rounds_finalized": 0, "rounds_failed": 0, "failures": [], "wrong_models": 0,
        "unverified_rounds": 0, "verified_rounds": 0, "kills": [], "restarts": 0, "stuck_nodes": [],
        "unexpected_exits": [], "exit_codes": [], "error": None, "seconds": 0.0, "task_seconds": None,
    }  # fmt: skip


def current_commit() -> str:
    """The repository's HEAD (short), with ``+dirty`` when tracked files differ from it."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(repo)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True)
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD"], check=False, capture_output=True).returncode
    return (head.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def one_run(seed: int, base: FaultConfig, workdir: str, keep: bool) -> dict[str, Any]:
    """Run seed ``seed`` in a fresh directory (in a worker process); returns the result as a dict."""
    import shutil

    if (Path(workdir) / STOP_FILE).exists():
        return skipped(seed)
    root = Path(workdir) / f"seed-{seed}"
    result = run_faults(seed, root, config_for(seed, base))
    data = result.as_dict()
    if not keep and result.ok:
        shutil.rmtree(root, ignore_errors=True)
    else:
        data["directory"] = str(root)
    return data


def totals(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums over the runs that ran (stopped seeds left out)."""
    runs = [r for r in runs if not r.get("skipped")]
    kills = [k for r in runs for k in r["kills"] if k["at"] is not None]
    return {
        "runs": len(runs),
        "completed": sum(r["completed"] for r in runs),
        "rounds_finalized": sum(r["rounds_finalized"] for r in runs),
        "rounds_retried": sum(r["rounds_failed"] for r in runs),
        "retry_reasons": dict(Counter(f for r in runs for f in r["failures"])),
        "hangs": sum(r["hung"] for r in runs),
        "wrong_global_models": sum(r["wrong_models"] for r in runs),
        "unverified_rounds": sum(r["unverified_rounds"] for r in runs),
        "verified_rounds": sum(r["verified_rounds"] for r in runs),
        "excluded_updates": sum(r.get("excluded_updates", 0) for r in runs),
        "kills": len(kills),
        "kills_per_phase": {p: sum(k["phase"] == p for k in kills) for p in PHASES},
        "stops_per_signal": {
            name: {p: sum(k["phase"] == p and k.get("signal", "SIGKILL") == name for k in kills) for p in PHASES}
            for name in STOP_SIGNALS
        },
        # A SIGTERM / SIGINT not answered by a clean exit, or a node the final shutdown had to SIGKILL.
        "failed_stops": sum(len(r.get("failed_stops", [])) + len(r.get("forced_stops", [])) for r in runs),
        "stop_seconds_max": max((k["stop_seconds"] for k in kills if k.get("stop_seconds") is not None), default=None),
        "planned_kills_not_fired": sum(1 for r in runs for k in r["kills"] if k["at"] is None),
        "restarts": sum(r["restarts"] for r in runs),
        "stuck_nodes": sum(len(r["stuck_nodes"]) for r in runs),
        "unexpected_exits": sum(len(r["unexpected_exits"]) for r in runs),
        "errors": sum(r["error"] is not None for r in runs),
        "mean_run_seconds": round(sum(r["seconds"] for r in runs) / len(runs), 1) if runs else None,
    }


def line(r: dict[str, Any]) -> str:
    kills = (
        ",".join(
            f"{k['node']}@r{k['round']}:{k['phase']}:{k.get('signal', 'SIGKILL')[3:]}"
            + (f"={k['exit_status']}" if k.get("exit_status") is not None else "")
            + ("+R" if k["restarted_at"] is not None else "")
            for k in r["kills"]
            if k["at"] is not None
        )
        or "-"
    )
    codes = ",".join("-" if c is None else str(c) for c in r["exit_codes"])
    return (
        f"{r['seed']:>4} {r['nodes']:>2} {r['status']:>10} {r['rounds_finalized']:>4} {r['rounds_failed']:>4} "
        f"{'YES' if r['hung'] else 'no':>4} {r['wrong_models']:>5} {r['unverified_rounds']:>5} "
        f"{r['seconds']:>6.0f}  {codes:<12} {kills}" + (f"  ERROR {r['error']}" if r["error"] else "")
    )


HEADER = (
    f"{'seed':>4} {'N':>2} {'status':>10} {'fin':>4} {'retr':>4} {'hang':>4} {'wrong':>5} {'unver':>5} {'sec':>6}  "
    f"{'exit codes':<12} stops (node@round:phase:signal[=exit status], +R restarted)"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="number of seeds, 0..runs-1 (default 100)")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (overrides --runs)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time (default 1)")
    parser.add_argument("--chain", default="anvil", choices=("anvil", "ganache"), help="chain process (default anvil)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--update-duration", type=int, default=FaultConfig.update_duration)
    parser.add_argument("--aggregation-duration", type=int, default=FaultConfig.aggregation_duration)
    parser.add_argument("--workdir", default=None, help="where runs live (default a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the directories of runs that passed")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    parser.add_argument("--summarize", type=Path, default=None, help="print the table of a results file and exit")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in --output (same chain and configuration); run only the seeds it lacks",
    )
    args = parser.parse_args(argv)
    if args.summarize is not None:
        return summarize(args.summarize)
    seeds = (
        [int(s) for s in args.seeds.split(",") if s]
        if args.seeds
        else list(range(args.first_seed, args.first_seed + args.runs))
    )
    base = FaultConfig(
        chain=args.chain,
        rounds=args.rounds,
        update_duration=args.update_duration,
        aggregation_duration=args.aggregation_duration,
    )
    config = json.loads(json.dumps({**base.__dict__, "nodes": "4 for even seeds, 5 for odd"}))
    runs: list[dict[str, Any]] = []
    earlier_seconds = 0.0
    if args.resume and args.output.exists():
        earlier = json.loads(args.output.read_text())
        if earlier.get("chain") != args.chain or earlier.get("config") != config:
            parser.error(f"--resume: {args.output} was measured on another chain or configuration; give --output")
        runs = [r for r in earlier["runs"] if not r.get("skipped") and r["seed"] in seeds]
        earlier_seconds = float(earlier.get("seconds", 0.0))
    done = {r["seed"] for r in runs}
    todo = [seed for seed in seeds if seed not in done]
    commit = current_commit()
    workdir = args.workdir or tempfile.mkdtemp(prefix="flchain-faults-")
    print(
        f"{len(todo)} runs ({len(done)} kept from {args.output}), {args.jobs} at a time, on {args.chain}, "
        f"commit {commit}; run directories under {workdir}",
        file=sys.stderr,
    )
    print(HEADER, flush=True)

    started = time.perf_counter()

    def save() -> None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            json.dumps(
                {
                    "chain": args.chain,
                    "config": config,
                    "seeds": seeds,
                    "seconds": round(earlier_seconds + time.perf_counter() - started, 1),
                    "totals": totals(runs),
                    "runs": sorted(runs, key=lambda r: r["seed"]),
                },
                indent=1,
                default=str,
            )
        )

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context, max_tasks_per_child=1) as pool:
        futures = [pool.submit(one_run, seed, base, workdir, args.keep) for seed in todo]
        try:
            for future in as_completed(futures):
                data = {**future.result(), "commit": commit}
                runs.append(data)
                if not data.get("skipped"):
                    print(line(data), flush=True)
                save()
        except KeyboardInterrupt:
            # Runs in progress end in their own finally (every process stopped by pid); the rest are dropped.
            print("interrupted; reporting the runs that finished", file=sys.stderr)
            pool.shutdown(wait=True, cancel_futures=True)
    save()
    print_summary(runs, earlier_seconds + time.perf_counter() - started, args.output)
    summary = totals(runs)
    bad = summary["hangs"] + summary["wrong_global_models"] + summary["errors"] + summary["failed_stops"]
    return 1 if bad else 0


def summarize(path: Path) -> int:
    """Print the table and totals of an existing results file."""
    data = json.loads(path.read_text())
    print(HEADER)
    for run in data["runs"]:
        if not run.get("skipped"):
            print(line(run))
    print_summary(data["runs"], float(data["seconds"]), None)
    return 0


def print_summary(runs: list[dict[str, Any]], elapsed: float, output: Path | None) -> None:
    """The totals block."""
    summary = totals(runs)
    print()
    print(f"runs                     {summary['runs']} ({summary['completed']} completed) in {elapsed / 60:.1f} min")
    commits = Counter(r.get("commit", "unrecorded") for r in runs if not r.get("skipped"))
    print(f"commits                  {dict(commits)}")
    print(
        f"rounds finalized         {summary['rounds_finalized']} "
        f"({summary['verified_rounds']} recomputed from IPFS and equal)"
    )
    print(f"rounds retried           {summary['rounds_retried']} {summary['retry_reasons']}")
    print(f"hangs                    {summary['hangs']}")
    print(f"wrong global models      {summary['wrong_global_models']}")
    print(f"rounds not verifiable    {summary['unverified_rounds']}")
    print(
        f"kills                    {summary['kills']} ({summary['planned_kills_not_fired']} planned kills never fired)"
    )
    print(f"kills per phase          {summary['kills_per_phase']}")
    for name, per_phase in summary.get("stops_per_signal", {}).items():
        print(f"  {name:<22} {per_phase}")
    print(
        f"failed stops             {summary.get('failed_stops', 0)} "
        f"(slowest clean stop {summary.get('stop_seconds_max')} s)"
    )
    print(f"restarts                 {summary['restarts']}")
    print(
        f"stuck nodes              {summary['stuck_nodes']}   unexpected exits {summary['unexpected_exits']}   "
        f"errors {summary['errors']}"
    )
    if output is not None:
        print(f"\nwrote {output}")


if __name__ == "__main__":
    sys.exit(main())
