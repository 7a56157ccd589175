#!/usr/bin/env python3
"""The largest federation this machine runs: simulated nodes (memory store) and real node processes.

Usage::

    python -m bench.largest_federation            # simulated N = 100, 200, 400; processes N = 4, 8, 16, 32, 64
    python -m bench.largest_federation --quick    # simulated N = 8 (1 round), processes N = 2 (1 round)
    python -m bench.largest_federation --simulated 100,200 --processes 4,8 --rounds 2

Two ladders; each stops at its first N that fails or runs past its time limit, and the largest N
that completed every round is the figure. Where a ladder ends without failing, the memory of its two
largest rungs, extrapolated linearly, says about how many nodes the memory available would hold
(``memory_bound_nodes``): on 2 cores the wall time per round, not memory, is what grows first.

* **Simulated nodes**: ``flchain simulate`` in one process (``bench/simulate_scale.py``'s child
  mode: embedded py-evm chain, memory store, real torch training on digits, P = 10, r = 3, q = 2),
  one child process per N, so the peak memory (``ru_maxrss``/``VmHWM``) is that run's alone.
* **Real node processes**: ``fl_chain.federation.localnet.LocalNetwork`` (anvil with a block a second, the
  contract, N ``flchain node`` OS processes, each with its own key, data shard, state directory and
  embedded kubo IPFS peer on 127.0.0.1), the digits MLP task with P = min(N, 8), r = 2, q = 2.
  The memory of every node process and of anvil is sampled each second from
  ``/proc/<pid>/smaps_rollup``: the peak of their summed PSS (what they hold of the machine's
  memory: a shared library's pages count once) and RSS, and the largest node's PSS, USS (pages only
  it holds) and RSS.
  Every process is started by ``LocalNetwork`` and stopped by it, by pid.

Writes ``bench/results/largest_federation.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

from bench import child_env, module_command, save_result
from bench._federation import stop_on_sigterm
from tests.helpers.task_files import task_toml

RESULTS = Path(__file__).resolve().parent / "results" / "largest_federation.json"
FULL_SIMULATED = [100, 200, 400]
FULL_PROCESSES = [4, 8, 16, 32, 64]
#: Seconds one rung of a ladder may take (full mode; quick mode uses QUICK_TIMEOUT).
RUN_TIMEOUT = 900
QUICK_TIMEOUT = 170


def _memory_kib(pid: int) -> dict[str, int]:
    """A process's resident memory in KiB: ``rss``, ``pss`` (shared pages split among their sharers)
    and ``uss`` (pages only it holds); zeros once it is gone."""
    sizes = {"rss": 0, "pss": 0, "uss": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    sizes[key.lower()] = int(rest.split()[0])
                elif key in ("Private_Clean", "Private_Dirty"):
                    sizes["uss"] += int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return sizes


def _available_mib() -> float:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# ------------------------------------------------------------------------------------------------
# Simulated nodes
# ------------------------------------------------------------------------------------------------


def simulated_run(nodes: int, rounds: int, timeout: float) -> dict[str, Any]:
    """One ``simulate_scale.py`` child run of ``nodes`` nodes; its figures, or an error."""
    with tempfile.TemporaryDirectory(prefix="flchain-largest-") as tmp:
        result = Path(tmp) / "result.json"
        partitions = min(10, nodes)
        replication = min(3, nodes)
        command = [
            *module_command("simulate_scale", "--child-result", str(result), "--nodes", str(nodes)),
            "--rounds",
            str(rounds),
            "--partitions",
            str(partitions),
            "--replication",
            str(replication),
            "--out",
            str(Path(tmp) / "runs"),
        ]
        started = time.monotonic()
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env()
        )
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()  # our child, by pid (in-process chain and memory store: nothing else to stop)
            process.communicate()
        except BaseException:
            process.kill()
            process.wait(30)
            raise
            return {
                "nodes": nodes,
                "ok": False,
                "error": f"over the time limit ({timeout:.0f} s)",
                "wall_seconds": time.monotonic() - started,
            }
        if process.returncode != 0 or not result.exists():
            tail = " | ".join(stderr.strip().splitlines()[-3:])
            return {
                "nodes": nodes,
                "ok": False,
                "error": f"exit {process.returncode}: {tail}",
                "wall_seconds": time.monotonic() - started,
            }
        figures = json.loads(result.read_text())
    ok = figures["rounds_finalized"] == rounds
    return {
        "nodes": nodes,
        "ok": ok,
        "rounds": rounds,
        "rounds_finalized": figures["rounds_finalized"],
        "wall_seconds": figures["wall_seconds"],
        "setup_seconds": figures["setup_seconds"],
        "mean_round_seconds": figures["mean_round_seconds"],
        "final_accuracy": figures["final_accuracy"],
        "peak_rss_mib": figures["peak_rss_ru_maxrss_mib"],
        "partitions": figures["partitions"],
        "replication": figures["replication"],
    }


# ------------------------------------------------------------------------------------------------
# Real node processes
# ------------------------------------------------------------------------------------------------


def task_file_text(*, nodes: int, partitions: int, rounds: int, update_duration: int, aggregation_duration: int) -> str:
    """The digits MLP task (32 hidden units, batch 16, lr 0.1) for ``nodes`` node processes, r = q = 2."""
    return task_toml(
        protocol={
            "rounds": rounds,
            "partitions": partitions,
            "replication": 2,
            "quorum": 2,
            "min_contributors": nodes,
            "update_duration": update_duration,
            "aggregation_duration": aggregation_duration,
            "open_admission": False,
        },
        model={"name": "mlp", "hidden": 32, "seed": 7},
        dataset={"name": "digits", "split": "iid", "seed": 0},
        training={"epochs": 1, "batch_size": 16, "lr": 0.1},
    )


class _Sampler:
    """Samples the memory of a set of pids (re-read each time) every ``interval`` seconds: the peak of
    their summed RSS and PSS, and the largest single node's RSS, PSS and USS."""

    def __init__(self, pids: Any, interval: float = 1.0) -> None:
        self.pids = pids
        self.interval = interval
        self.peak_total_kib = 0
        self.peak_total_pss_kib = 0
        self.peak_single_kib = 0
        self.peak_single_pss_kib = 0
        self.peak_single_uss_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            chain_pid, node_pids = self.pids()
            sizes = [_memory_kib(p) for p in node_pids]
            chain = _memory_kib(chain_pid) if chain_pid else {"rss": 0, "pss": 0, "uss": 0}
            self.peak_total_kib = max(self.peak_total_kib, sum(s["rss"] for s in sizes) + chain["rss"])
            self.peak_total_pss_kib = max(self.peak_total_pss_kib, sum(s["pss"] for s in sizes) + chain["pss"])
            for s in sizes:
                self.peak_single_kib = max(self.peak_single_kib, s["rss"])
                self.peak_single_pss_kib = max(self.peak_single_pss_kib, s["pss"])
                self.peak_single_uss_kib = max(self.peak_single_uss_kib, s["uss"])
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def process_run(nodes: int, rounds: int, timeout: float) -> dict[str, Any]:
    """A LocalNetwork of ``nodes`` node processes on anvil; completed rounds and peak memory."""
    from fl_chain.chain.coordinator import RoundStatus, TaskStatus
    from fl_chain.federation.localnet import LocalNetwork

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flchain-largest-net-") as tmp:
        task_file = Path(tmp) / "task.toml"
        # Generous phases: starting N processes on 2 shared cores is slow; rounds end by completion.
        task_file.write_text(
            task_file_text(
                rounds=rounds,
                partitions=min(nodes, 8),
                nodes=nodes,
                update_duration=120 + 10 * nodes,
                aggregation_duration=120 + 5 * nodes,
            )
        )
        network = None
        try:
            network = LocalNetwork(
                Path(tmp) / "net",
                nodes=nodes,
                task_file=task_file,
                chain="anvil",
                linger=0.0,
                report=lambda message: None,
            )

            def pids() -> tuple[int | None, list[int]]:
                chain_process = getattr(network.chain.process, "process", None)
                chain_pid = chain_process.pid if chain_process is not None else None
                return chain_pid, [n.process.pid for n in network.nodes if n.process is not None and n.running]

            with _Sampler(pids) as sampler:
                network.start()
                joined = time.monotonic() - started
                status = network.follow(timeout=max(10.0, timeout - (time.monotonic() - started)))
                finalized = sum(
                    network.coordinator.get_round(network.task_id, r).status == RoundStatus.FINALIZED
                    for r in range(rounds)
                )
        except Exception as exc:  # noqa: BLE001 - a failed rung is a result
            return {
                "nodes": nodes,
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "wall_seconds": time.monotonic() - started,
            }
        finally:
            if network is not None:
                network.close()  # stops the node processes and anvil it started, by pid
    return {
        "nodes": nodes,
        "ok": status == TaskStatus.COMPLETED and finalized == rounds,
        "rounds": rounds,
        "rounds_finalized": finalized,
        "status": status.name.lower(),
        "wall_seconds": time.monotonic() - started,
        "start_and_join_seconds": joined,
        "peak_total_rss_mib": sampler.peak_total_kib / 1024,
        "peak_total_pss_mib": sampler.peak_total_pss_kib / 1024,
        "peak_node_rss_mib": sampler.peak_single_kib / 1024,
        "peak_node_pss_mib": sampler.peak_single_pss_kib / 1024,
        "peak_node_uss_mib": sampler.peak_single_uss_kib / 1024,
    }


# ------------------------------------------------------------------------------------------------


#: A rung is not started when its memory, extrapolated linearly from the previous rung, would pass
#: this share of the memory available: other work on the machine must not be pushed out.
MEMORY_SHARE = 0.8


def peak_mib(rung: dict[str, Any]) -> float | None:
    """The rung's memory: one process's peak RSS, or the node processes' and chain's summed PSS (a
    shared library's pages count once over all its sharers, as in the machine's memory)."""
    return rung.get("peak_rss_mib", rung.get("peak_total_pss_mib", rung.get("peak_total_rss_mib")))


def memory_bound_nodes(passed: list[dict[str, Any]], available_mib: float) -> int | None:
    """Nodes that ``MEMORY_SHARE`` of ``available_mib`` would hold, extrapolating the two largest passed rungs."""
    measured = sorted((r["nodes"], peak_mib(r)) for r in passed if peak_mib(r))
    if len(measured) < 2 or math.isnan(available_mib):  # NaN: /proc/meminfo unreadable
        return None
    (n1, m1), (n2, m2) = measured[-2:]
    slope = (m2 - m1) / (n2 - n1)  # type: ignore[operator]
    if slope <= 0:
        return None
    return int(n2 + (MEMORY_SHARE * available_mib - m2) / slope)  # type: ignore[operator]


def _ladder(kind: str, counts: list[int], run: Any, progress: Any) -> dict[str, Any]:
    rungs: list[dict[str, Any]] = []
    for n in counts:
        previous = rungs[-1] if rungs else None
        if previous is not None and peak_mib(previous):
            predicted = peak_mib(previous) * n / previous["nodes"]  # type: ignore[operator]
            available = _available_mib()
            if predicted > MEMORY_SHARE * available:
                rungs.append(
                    {
                        "nodes": n,
                        "ok": False,
                        "skipped": True,
                        "wall_seconds": 0.0,
                        "error": f"not run: about {predicted:.0f} MiB predicted, {available:.0f} MiB available",
                    }
                )
                break
        if progress:
            progress(f"largest_federation: {kind} N={n}")
        rung = run(n)
        rungs.append(rung)
        if not rung["ok"]:
            break
    passed = [r for r in rungs if r["ok"]]
    best = max(passed, key=lambda r: r["nodes"]) if passed else None
    return {
        "rungs": rungs,
        "largest_nodes": best["nodes"] if best else None,
        "largest": best,
        "memory_bound_nodes": memory_bound_nodes(passed, _available_mib()),
        "stopped_by": None if len(passed) == len(rungs) else rungs[-1].get("error", "a round did not finalize"),
        "ladder_exhausted": len(passed) == len(counts),
    }


def measure(
    *,
    quick: bool = False,
    simulated: list[int] | None = None,
    processes: list[int] | None = None,
    rounds: int | None = None,
    timeout: float | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    simulated = simulated if simulated is not None else ([8] if quick else FULL_SIMULATED)
    processes = processes if processes is not None else ([2] if quick else FULL_PROCESSES)
    rounds = rounds or (1 if quick else 2)
    timeout = timeout or (QUICK_TIMEOUT if quick else RUN_TIMEOUT)
    return {
        "benchmark": "largest_federation",
        "quick": quick,
        "rounds": rounds,
        "timeout_seconds": timeout,
        "memory_available_mib_at_start": _available_mib(),
        "simulated": _ladder("simulated", simulated, lambda n: simulated_run(n, rounds, timeout), progress),
        "processes": _ladder("processes", processes, lambda n: process_run(n, rounds, timeout), progress),
    }


def format_table(result: dict[str, Any]) -> str:
    lines = ["| kind | N | ok | rounds | wall s | peak memory | note |", "|---|---|---|---|---|---|---|"]
    for kind in ("simulated", "processes"):
        for r in result[kind]["rungs"]:
            if kind == "simulated":
                memory = f"{r['peak_rss_mib']:.0f} MiB (one process)" if "peak_rss_mib" in r else "-"
            else:
                memory = (
                    f"{r['peak_total_pss_mib']:.0f} MiB total PSS ({r['peak_total_rss_mib']:.0f} RSS); per node "
                    f"{r['peak_node_pss_mib']:.0f} PSS, {r['peak_node_uss_mib']:.0f} USS, "
                    f"{r['peak_node_rss_mib']:.0f} RSS"
                    if "peak_total_pss_mib" in r
                    else f"{r['peak_total_rss_mib']:.0f} MiB total, {r['peak_node_rss_mib']:.0f} MiB/node"
                    if "peak_total_rss_mib" in r
                    else "-"
                )
            rounds = f"{r.get('rounds_finalized', 0)}/{result['rounds']}"
            lines.append(
                f"| {kind} | {r['nodes']} | {'yes' if r['ok'] else 'no'} | {rounds} | "
                f"{r['wall_seconds']:.0f} | {memory} | {r.get('error', '')[:80]} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--simulated", help="comma-separated N for simulated nodes ('' for none)")
    parser.add_argument("--processes", help="comma-separated N for node processes ('' for none)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--timeout", type=float, help="seconds per rung")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    stop_on_sigterm()
    result = measure(
        quick=args.quick,
        simulated=[int(v) for v in args.simulated.split(",") if v] if args.simulated is not None else None,
        processes=[int(v) for v in args.processes.split(",") if v] if args.processes is not None else None,
        rounds=args.rounds,
        timeout=args.timeout,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(format_table(result))
    save_result(result, args.output)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
