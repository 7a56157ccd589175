#!/usr/bin/env python3
"""Bytes each node downloads and uploads per round, against the all-reduce bound 2(N-1)/N·M.

Usage::

    python -m bench.bytes_per_node            # N in {4, 8, 16}, 1e6 parameters, memory store;
                                              # plus kubo peers at N = 8 as a cross-check
    python -m bench.bytes_per_node --quick    # N = 4, 1e4 parameters, memory store

A bandwidth-optimal all-reduce (reduce-scatter + all-gather) moves 2(N-1)/N·M bytes in and out of
every node per round, M = model bytes (4·D, float32). fl-chain's round is a reduce-scatter
(aggregators fetch their partitions from every contributor) and an all-gather (every node fetches
the final partitions it did not aggregate itself), so with P = N partitions it needs, per node,

* r·(N-1)/N·M to aggregate (r partitions of M/N from N-1 others), plus
* (N-r)/N·M to gather the global model (the partitions it did not aggregate), plus manifests and
  the small blob headers,

that is 2(N-1)/N·M at r = 1 (the bound) and (3N-4)/N·M at r = 2 (about 1.5x for large N): the
replication that lets a partition finalize with a faulty aggregator costs one more copy of the
model per node. BAFFLE-style full averaging (P = 1, r = N: every node aggregates every update)
downloads (N-1)·M, N/2 times the bound, when all r = N aggregators aggregate; in these in-process
runs nodes act one at a time and a node that finds the partition already final (q = N//2 + 1
identical digests) skips it, so the measured mean is lower and the per-node maximum higher
(an aggregator that did not aggregate the previous round also gathers the global model).

Settings: P = N with r = 1 (q = 1) and r = 2 (q = 2), and P = 1, r = N, q = N//2 + 1. Every job is an
in-process federation (``bench/_federation.py``) whose storage peers are wrapped to count the bytes
of every blob a node receives that it neither stored nor fetched before (the rule of
``KuboStorage.bytes_received``); uploads are attributed to the node that stored the blob first
(with kubo, bitswap may serve a block from any holder, so per-node uploads are an attribution; the
mean equals the mean download). The trainer is the synthetic numpy one (bytes do not depend on the
values), labelled so in the results. Round 0 is left out (it has no global model to gather).

Writes ``bench/results/bytes_per_node.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench import save_result
from bench._federation import FederationJob, stop_on_sigterm
from bench.round_breakdown import run_job_in_child

RESULTS = Path(__file__).resolve().parent / "results" / "bytes_per_node.json"
#: Target: mean bytes per node per round at most this multiple of the all-reduce bound, with P = N.
TARGET_RATIO = 1.1


def settings(n: int) -> list[dict[str, Any]]:
    """(label, P, r, q) of the three settings at ``n`` nodes."""
    return [
        {"setting": "P=N r=1", "partitions": n, "replication": 1, "quorum": 1},
        {"setting": "P=N r=2", "partitions": n, "replication": 2, "quorum": 2},
        {"setting": "BAFFLE P=1 r=N", "partitions": 1, "replication": n, "quorum": n // 2 + 1},
    ]


def expected_ratio(n: int, partitions: int, replication: int) -> float:
    """Model payload each node should download, over the bound (headers and manifests not counted)."""
    if partitions == 1:
        return (n - 1) / (2 * (n - 1) / n)
    aggregate = replication * (n - 1) / n
    gather = (n - replication) / n
    return (aggregate + gather) / (2 * (n - 1) / n)


def measure(
    *,
    quick: bool = False,
    nodes: list[int] | None = None,
    parameters: int | None = None,
    kubo_nodes: list[int] | None = None,
    rounds: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    nodes = nodes or ([4] if quick else [4, 8, 16])
    parameters = parameters or (10_000 if quick else 1_000_000)
    kubo_nodes = kubo_nodes if kubo_nodes is not None else ([] if quick else [8])
    rounds = rounds or (2 if quick else 3)
    rows = []
    for storage, counts in (("memory", nodes), ("kubo", kubo_nodes)):
        for n in counts:
            for s in settings(n):
                if storage == "kubo" and s["partitions"] == 1:
                    continue  # the cross-check covers the P = N settings
                if progress:
                    progress(f"bytes_per_node: {storage} N={n} {s['setting']}")
                job = FederationJob(
                    nodes=n,
                    parameters=parameters,
                    rounds=rounds,
                    partitions=s["partitions"],
                    replication=s["replication"],
                    quorum=s["quorum"],
                    chain="embedded" if storage == "memory" else "anvil",
                    storage=storage,
                    trainer="synthetic",
                )
                figures = run_job_in_child(job)
                row = {**s, "storage": storage, "nodes": n, "parameters": parameters}
                if "error" in figures:
                    rows.append({**row, "error": figures["error"]})
                    continue
                steady = [r for r in figures["rounds"] if r["round"] in figures["steady_rounds"]]
                uploads = [u for r in steady for u in r["upload_bytes_per_node_by_origin"]]
                bound = figures["allreduce_bound_bytes"]
                rows.append(
                    {
                        **row,
                        "trainer": figures["trainer"],
                        "model_bytes": figures["model_bytes"],
                        "allreduce_bound_bytes": bound,
                        "mean_download_bytes": figures["mean_download_bytes_per_node"],
                        "max_download_bytes": figures["max_download_bytes_per_node"],
                        "mean_upload_bytes": sum(uploads) / len(uploads) if uploads else None,
                        "max_upload_bytes": max(uploads) if uploads else None,
                        "download_over_bound": figures["download_over_bound"],
                        "max_download_over_bound": figures["max_download_bytes_per_node"] / bound,
                        "max_upload_over_bound": (max(uploads) / bound) if uploads else None,
                        "expected_payload_over_bound": expected_ratio(n, s["partitions"], s["replication"]),
                        "rounds_measured": figures["steady_rounds"],
                    }
                )
    return {"benchmark": "bytes_per_node", "quick": quick, "target_ratio": TARGET_RATIO, "rows": rows}


def format_table(result: dict[str, Any]) -> str:
    head = [
        "storage",
        "N",
        "setting",
        "M (MB)",
        "bound (MB)",
        "down mean (MB)",
        "down/bound",
        "max down/bound",
        "max up/bound",
        "expected",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['storage']} | {r['nodes']} | {r['setting']} | error: {r['error'][:80]} |")
            continue
        lines.append(
            f"| {r['storage']} | {r['nodes']} | {r['setting']} | {r['model_bytes'] / 1e6:.3f} | "
            f"{r['allreduce_bound_bytes'] / 1e6:.3f} | {r['mean_download_bytes'] / 1e6:.3f} | "
            f"{r['download_over_bound']:.3f} | {r['max_download_over_bound']:.3f} | "
            f"{r['max_upload_over_bound']:.3f} | {r['expected_payload_over_bound']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--nodes", help="comma-separated N (memory store)")
    parser.add_argument("--kubo-nodes", help="comma-separated N for the kubo cross-check ('' for none)")
    parser.add_argument("--parameters", type=float)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    stop_on_sigterm()
    result = measure(
        quick=args.quick,
        nodes=[int(v) for v in args.nodes.split(",")] if args.nodes else None,
        kubo_nodes=[int(v) for v in args.kubo_nodes.split(",") if v] if args.kubo_nodes is not None else None,
        parameters=int(args.parameters) if args.parameters else None,
        rounds=args.rounds,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(format_table(result))
    save_result(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
