#!/usr/bin/env python3
"""Wall time and peak memory of ``flchain simulate`` for 100 nodes (and fewer, to show the trend).

Usage::

    python -m bench.simulate_scale                        # 100 nodes, 3 rounds, P=10, r=3
    python -m bench.simulate_scale --nodes 8,16,32,64,100 # one run per N, each in its own process
    python -m bench.simulate_scale --nodes 100 --partitions 4 --replication 2

Each run is :func:`fl_chain.federation.simulate.run_simulation` exactly as ``flchain simulate`` calls
it: its default chain (anvil where installed, else the embedded py-evm chain; ``--chain``) and
memory storage, N real nodes (real contract, real node runtime, real torch training on their own
shard of the dataset). The script prints and records:

* wall time in total, for setup (deploy, admit, create the task, load every node's data and
  model, join, start) and for each round, and the process's CPU time, which other load on the
  machine does not stretch;
* peak resident memory of the process: ``getrusage(RUSAGE_SELF).ru_maxrss`` and ``VmHWM`` of
  ``/proc/self/status``, plus the RSS after setup, all sampled in the same process;
* rounds finalized, test accuracy per round and at the end, gas per round (every transaction of
  the round: updates, aggregate commits, ``advance``).

When ``--nodes`` lists several counts, each runs in a child process of this script, so that every
peak RSS belongs to one run alone. Results go to ``bench/results/simulate_scale.json``: one entry
per (N, rounds, P, r, dataset, model), replaced when measured again, with the commit it ran at.

Defaults for 100 nodes: P = 10 partitions, replication r = 3 (quorum q = 2).

* r = 3 with q = 2 is the smallest replication where a partition still finalizes with one
  aggregator missing or wrong, and an honest majority decides; r = 2 (q = 2) needs both.
* P x r = 30 aggregation slots per round: 30 of the 100 contributors aggregate one partition each,
  and the keyed permutation the contract draws moves the slots to other nodes every round. Every slot
  costs one ``commitAggregates`` and N partition fetches, so the round's aggregation work is
  P x r x N fetches (3,000 here) instead of N x r x N = 20,000 with P = N.
* Gas per participant falls as P / N falls (``bench/gas.py``: 59k at N = 64, P = 4 against 156k at
  P = N = 64), so P = N / 10 keeps the per-participant gas well under the 100k target.
* The default model (digits mlp, 32 hidden units) has 2,410 parameters: 241 per partition, still
  far more than the partition count.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

from bench import ROOT, child_env, module_command

RESULTS = Path(__file__).resolve().parent / "results" / "simulate_scale.json"
#: Seconds between two samples of the process's resident memory.
RSS_SAMPLE_INTERVAL = 0.5
DEFAULT_PARTITIONS = 10
DEFAULT_REPLICATION = 3


def _status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (0 where there is no procfs)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples VmRSS in a background thread; ``peak_mib`` is the largest sample."""

    def __init__(self, interval: float = RSS_SAMPLE_INTERVAL) -> None:
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _status_kib("VmRSS"))
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, _status_kib("VmRSS"))

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024


def _cpu_seconds() -> float:
    """User plus system CPU time of this process so far (unlike wall time, not stretched by other load)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        status = ["git", "status", "--porcelain", "--untracked-files=no"]
        dirty = subprocess.run(status, cwd=ROOT, capture_output=True, text=True, check=False)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _simulate_args(args: argparse.Namespace, nodes: int) -> argparse.Namespace:
    """The options ``flchain simulate`` would parse, with this benchmark's values."""
    return argparse.Namespace(
        nodes=nodes,
        rounds=args.rounds,
        dataset=args.dataset,
        model=args.model,
        hidden=args.hidden,
        partitions=args.partitions,
        replication=args.replication,
        quorum=args.quorum,
        strategy="fedavg",
        split="iid",
        alpha=0.5,
        epochs=1,
        batch_size=16,
        lr=0.1,
        momentum=0.0,
        seed=args.seed,
    )


def _default_chain() -> str:
    from fl_chain.federation.simulate import default_chain

    return default_chain()


def _run_simulation(simulate: Any, spec: Any, nodes: int, out: Path, chain: str = "auto") -> dict[str, Any]:
    """``run_simulation`` as ``flchain simulate`` calls it (its default chain unless ``chain``, memory storage)."""
    from fl_chain.federation.display import SimulationDisplay

    options = simulate.SimulationOptions(nodes=nodes, out=out, chain=chain, storage="memory")
    return simulate.run_simulation(spec, options, SimulationDisplay())  # type: ignore[no-any-return]


def run_one(args: argparse.Namespace, nodes: int, out: Path) -> dict[str, Any]:
    """One simulation of ``nodes`` nodes in this process; returns the measured figures."""
    from fl_chain.federation import simulate

    spec = simulate.simulate_spec(_simulate_args(args, nodes))
    p = spec.protocol
    print(
        f"N={nodes}: {args.rounds} rounds, {args.dataset}/{args.model}, P={p['partitions']} r={p['replication']} "
        f"q={p['quorum']}; run folder {out}",
        flush=True,
    )
    # Time the setup (build_federation) on its own: wrap it where run_simulation looks it up.
    setup: dict[str, float] = {}
    build = simulate.build_federation

    def timed_build(*a: Any, **k: Any) -> Any:
        started = time.monotonic()
        result = build(*a, **k)
        setup["seconds"] = time.monotonic() - started
        setup["rss_mib"] = _status_kib("VmRSS") / 1024
        return result

    simulate.build_federation = timed_build
    baseline_mib = _status_kib("VmRSS") / 1024
    cpu_before = _cpu_seconds()
    try:
        with RssSampler() as sampler:
            started = time.monotonic()
            summary = _run_simulation(simulate, spec, nodes, out, args.chain)
            wall = time.monotonic() - started
        cpu = _cpu_seconds() - cpu_before
    finally:
        simulate.build_federation = build
    rounds = summary["rounds"]
    finalized = [r for r in rounds if r["status"] == "finalized"]
    round_seconds = [r["wall_seconds"] for r in rounds]
    result = {
        "nodes": nodes,
        "rounds": args.rounds,
        "partitions": p["partitions"],
        "replication": p["replication"],
        "quorum": p["quorum"],
        "dataset": args.dataset,
        "model": args.model,
        "hidden": args.hidden if args.model == "mlp" else None,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "setup_seconds": setup.get("seconds"),
        "round_seconds": round_seconds,
        "mean_round_seconds": sum(round_seconds) / len(round_seconds) if round_seconds else None,
        "teardown_seconds": wall - setup.get("seconds", 0.0) - sum(round_seconds),
        "rounds_finalized": len(finalized),
        "rounds_failed": sum(1 for r in rounds if r["status"] == "failed"),
        "accuracy_per_round": [r["test_accuracy"] for r in rounds],
        "final_accuracy": summary["final_accuracy"],
        "gas_per_round": [r["gas_used"] for r in rounds],
        "gas_per_participant_per_round": [r["gas_used"] / nodes for r in rounds],
        "bytes_moved_per_round": [r["bytes_moved"] for r in rounds],
        "rss_before_mib": baseline_mib,
        "rss_after_setup_mib": setup.get("rss_mib"),
        "peak_rss_sampled_mib": sampler.peak_mib,
        "peak_rss_vmhwm_mib": _status_kib("VmHWM") / 1024,
        "peak_rss_ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "chain": args.chain if args.chain != "auto" else _default_chain(),
        "commit": _commit(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print_run(result)
    return result


def print_run(r: dict[str, Any]) -> None:
    rounds = "  ".join(f"{s:.1f}" for s in r["round_seconds"])
    gas = "  ".join(f"{g:,}" for g in r["gas_per_round"])
    accuracy = r["final_accuracy"]
    print(
        f"N={r['nodes']}: {r['rounds_finalized']}/{r['rounds']} rounds finalized, final accuracy {accuracy:.4f}"
        if accuracy is not None
        else f"N={r['nodes']}: no round finalized"
    )
    print(
        f"  wall {r['wall_seconds']:.1f} s (CPU {r['cpu_seconds']:.1f} s) = setup {r['setup_seconds']:.1f} s "
        f"+ rounds [{rounds}] s + teardown {r['teardown_seconds']:.1f} s"
    )
    print(
        f"  peak RSS {r['peak_rss_vmhwm_mib']:.0f} MiB (VmHWM; ru_maxrss {r['peak_rss_ru_maxrss_mib']:.0f}, "
        "which keeps a parent's peak across exec; "
        f"sampled {r['peak_rss_sampled_mib']:.0f}); after setup {r['rss_after_setup_mib']:.0f} MiB, "
        f"before {r['rss_before_mib']:.0f} MiB"
    )
    print(f"  gas per round [{gas}]", flush=True)


def print_table(runs: list[dict[str, Any]]) -> None:
    print(
        f"\n{'N':>5} {'P':>3} {'r':>2} {'rounds':>6} {'wall s':>8} {'CPU s':>8} {'setup s':>8} {'s/round':>8} "
        f"{'peak MiB':>9} {'accuracy':>9} {'gas/round/N':>12}"
    )
    for r in sorted(runs, key=lambda r: r["nodes"]):
        gas = sum(r["gas_per_participant_per_round"]) / max(len(r["gas_per_participant_per_round"]), 1)
        accuracy = f"{r['final_accuracy']:.4f}" if r["final_accuracy"] is not None else "-"
        print(
            f"{r['nodes']:>5} {r['partitions']:>3} {r['replication']:>2} {r['rounds_finalized']:>3}/{r['rounds']:<2} "
            f"{r['wall_seconds']:>8.1f} {r['cpu_seconds']:>8.1f} {r['setup_seconds']:>8.1f} "
            f"{r['mean_round_seconds']:>8.1f} "
            f"{r['peak_rss_vmhwm_mib']:>9.0f} {accuracy:>9} {gas:>12,.0f}"
        )


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["nodes"], r["rounds"], r["partitions"], r["replication"], r["dataset"], r["model"], r.get("hidden"))


def save(runs: list[dict[str, Any]], path: Path) -> None:
    """Merge ``runs`` into the results file, replacing earlier runs of the same setting."""
    stored: list[dict[str, Any]] = []
    if path.exists():
        try:
            stored = json.loads(path.read_text()).get("runs", [])
        except (json.JSONDecodeError, AttributeError):
            stored = []
    fresh = {_key(r) for r in runs}
    merged = [r for r in stored if _key(r) not in fresh] + runs
    merged.sort(key=_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "simulate_scale", "runs": merged}, indent=2))
    print(f"\nwrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="100", help="node counts N, comma-separated (default 100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS)
    parser.add_argument("--replication", type=int, default=DEFAULT_REPLICATION)
    parser.add_argument("--quorum", type=int, help="default: replication // 2 + 1")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units of the mlp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--chain", default="auto", help="as flchain simulate: auto (anvil if installed), embedded, anvil"
    )
    parser.add_argument("--out", type=Path, help="run folders go under here (default: a temporary directory)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    parser.add_argument(
        "--in-process", action="store_true", help="run every N in this process (peak RSS is then cumulative)"
    )
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    counts = [int(v) for v in args.nodes.split(",") if v]
    if not counts or min(counts) < 1:
        parser.error("--nodes takes positive counts")

    with tempfile.TemporaryDirectory(prefix="flchain-scale-") as tmp:
        base = args.out or Path(tmp)
        if args.child_result is not None:  # one run, for a parent invocation of this script
            (result,) = [run_one(args, n, base / f"n{n}") for n in counts]
            args.child_result.write_text(json.dumps(result))
            return 0
        runs = []
        for n in counts:
            if args.in_process or len(counts) == 1:
                runs.append(run_one(args, n, base / f"n{n}"))
                continue
            child = Path(tmp) / f"result-{n}.json"
            command = module_command(
                "simulate_scale", "--child-result", str(child), "--nodes", str(n), "--out", str(base)
            )
            for name in (
                "rounds",
                "partitions",
                "replication",
                "quorum",
                "dataset",
                "model",
                "hidden",
                "seed",
                "chain",
            ):
                value = getattr(args, name)
                if value is not None:
                    command += [f"--{name}", str(value)]
            code = subprocess.run(command, check=False, env=child_env()).returncode
            if code != 0:
                print(f"N={n}: the run failed (exit {code})", file=sys.stderr)
                continue
            runs.append(json.loads(child.read_text()))
    if runs:
        print_table(runs)
        save(runs, args.output)
    return 0 if len(runs) == len(counts) else 1


if __name__ == "__main__":
    sys.exit(main())
