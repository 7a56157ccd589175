#!/usr/bin/env python3
"""Throughput and latency of ``flchain serve`` under bounded load on 127.0.0.1.

Usage::

    python -m bench.serve            # 10,000 requests per setting: ONNX (onnxruntime) and npz (torch)
    python -m bench.serve --quick    # 200 requests per setting, ONNX only

The model is a real one: a ``flchain simulate`` run (2 nodes, embedded chain, digits MLP) exported
with ``flchain model export``'s code. Each runtime's server is ``flchain serve`` in its own process
(``tests/helpers/serving.py``), started and stopped here by pid. For every batch size (1 and 32 rows)
and concurrency (1, 8 and 32 clients, each a thread with one keep-alive connection) a fixed number of
``POST /predict`` requests is sent; a setting also stops at its time cap, so the run always ends by
itself. Every answer must be 200. Client and server share this machine's cores, so the figures are
what one machine serving itself measures, not a server's ceiling.

Writes ``bench/results/serve.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import save_result
from bench._federation import stop_on_sigterm

RESULTS = Path(__file__).resolve().parent / "results" / "serve.json"
BATCHES = (1, 32)
CONCURRENCY = (1, 8, 32)


def prepare_models(folder: Path, runtimes: list[str]) -> tuple[dict[str, Path], np.ndarray]:
    """A simulate run's final model exported for each runtime, and test rows to send."""
    from fl_chain.federation.run_folder import read_final_model
    from fl_chain.training.export import task_model
    from fl_chain.training.global_model import export_global_model
    from tests.helpers.serving import simulate_run

    model = read_final_model(simulate_run(folder / "run", rounds=1))
    paths = {}
    for runtime in runtimes:
        fmt = "onnx" if runtime == "onnxruntime" else "npz"
        export_global_model(model, fmt, folder / f"model.{fmt}")
        paths[runtime] = folder / f"model.{fmt}"
    rows = task_model(model.spec, model.vector).test.features.astype(np.float32)
    return paths, rows


def load(port: int, rows: np.ndarray, *, batch: int, concurrency: int, requests: int, cap: float) -> dict[str, Any]:
    """``requests`` POST /predict of ``batch`` rows from ``concurrency`` threads (or until ``cap`` seconds)."""
    from tests.helpers.serving import Client

    bodies = [json.dumps({"inputs": rows[i : i + batch].tolist()}).encode() for i in range(0, len(rows) - batch, batch)]
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    sent = 0
    deadline = time.monotonic() + cap

    def worker(index: int) -> None:
        nonlocal sent
        client = Client(port)
        mine: list[float] = []
        while time.monotonic() < deadline:
            with lock:
                if sent >= requests:
                    break
                sent += 1
                body = bodies[sent % len(bodies)]
            started = time.perf_counter()
            reply = client.request("POST", "/predict", body)
            mine.append(time.perf_counter() - started)
            if reply.status != 200:
                with lock:
                    failures.append(reply.status)
        client.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    done = np.array(latencies)
    return {
        "batch": batch,
        "concurrency": concurrency,
        "requests": len(latencies),
        "failures": len(failures),
        "seconds": seconds,
        "requests_per_s": len(latencies) / seconds,
        "rows_per_s": len(latencies) * batch / seconds,
        "p50_ms": float(np.percentile(done, 50) * 1000) if len(done) else None,
        "p99_ms": float(np.percentile(done, 99) * 1000) if len(done) else None,
        "capped": len(latencies) < requests,
    }


def measure(*, quick: bool, requests: int | None = None, cap: float | None = None, progress=print) -> dict[str, Any]:
    from tests.helpers.serving import ServeProcess

    runtimes = ["onnxruntime"] if quick else ["onnxruntime", "torch"]
    requests = requests or (200 if quick else 10_000)
    cap = cap or (30.0 if quick else 300.0)
    result: dict[str, Any] = {"quick": quick, "requests_per_setting": requests, "cap_seconds": cap, "settings": []}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp)
        progress("simulating and exporting the model ...")
        models, rows = prepare_models(folder, runtimes)
        for runtime, path in models.items():
            server = ServeProcess(path, "--max-batch", str(max(BATCHES)), log=folder / f"{runtime}.log")
            try:
                server.wait_ready()
                for batch in BATCHES:
                    for concurrency in CONCURRENCY:
                        row = {"runtime": runtime, **load(server.port, rows, batch=batch, concurrency=concurrency,
                                                          requests=requests, cap=cap)}  # fmt: skip
                        progress(format_row(row))
                        result["settings"].append(row)
            finally:
                server.stop()
    return result


def format_row(row: dict[str, Any]) -> str:
    capped = " (time cap)" if row["capped"] else ""
    failed = f", {row['failures']} FAILED" if row["failures"] else ""
    return (
        f"{row['runtime']:<11} batch {row['batch']:>2} x{row['concurrency']:>2} clients: {row['requests']:>5} requests "
        f"in {row['seconds']:.1f} s, {row['requests_per_s']:.0f} req/s ({row['rows_per_s']:.0f} rows/s), "
        f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms{capped}{failed}"
    )


def format_table(result: dict[str, Any]) -> str:
    """The settings as a markdown table (bench/README.md, docs/benchmarks.md)."""
    lines = [
        "| runtime | batch | clients | requests | req/s | rows/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["settings"]:
        capped = " (time cap)" if row["capped"] else ""
        failed = f", {row['failures']} failed" if row["failures"] else ""
        lines.append(
            f"| {row['runtime']} | {row['batch']} | {row['concurrency']} | {row['requests']:,}{capped}{failed} | "
            f"{row['requests_per_s']:.0f} | {row['rows_per_s']:,.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 requests per setting, ONNX only")
    parser.add_argument("--requests", type=int, help="requests per setting")
    parser.add_argument("--cap", type=float, help="seconds per setting at most")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    stop_on_sigterm()
    result = measure(
        quick=args.quick, requests=args.requests, cap=args.cap, progress=lambda m: print(m, file=sys.stderr, flush=True)
    )
    label = "quick: " if args.quick else ""
    print(f"{label}flchain serve on 127.0.0.1, {result['requests_per_setting']} requests per setting")
    for row in result["settings"]:
        print(format_row(row))
    save_result(result, args.output)
    return 0 if all(row["failures"] == 0 for row in result["settings"]) else 1


if __name__ == "__main__":
    sys.exit(main())
