#!/usr/bin/env python3
"""Aggregation throughput per core: FedAvg, coordinate median and trimmed mean against a plain numpy sum.

Usage: python -m bench.aggregation [--contributors 8] [--length 1000000] [--repeats 7]

Each strategy aggregates ``contributors`` float32 slices of ``length`` values (one partition) in one
thread. Throughput is the bytes of contributions processed (contributors x length x 4) divided by the
median wall time. The baseline is ``np.sum(np.stack(values), axis=0)`` on the same data: a plain,
unweighted float32 sum with no canonical order, checks or float64 accumulation. The validation row
rows run ``validate_values`` over every contribution: with a bound far above the norm (finite check and
a fast float64 estimate decide) and below it (the exact L2 norm is computed for the decision and reason).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # per-core figures; numpy ufuncs are single-threaded anyway

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from fl_chain.aggregation import (
    Contribution,
    CoordinateMedian,
    FedAvg,
    TrimmedMean,
    reference_fedavg,
    validate_values,
)


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm up: page in buffers, first-call dispatch
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(
    *, contributors: int = 8, length: int = 1_000_000, repeats: int = 7, quick: bool = False
) -> dict[str, object]:
    """Median seconds and GB/s of every case; ``quick``: 8 x 100,000 values, 3 repeats."""
    if quick:
        length, repeats = 100_000, 3
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(length).astype(np.float32) for _ in range(contributors)]
    contributions = [Contribution(f"0x{i:040x}", int(rng.integers(1, 10_000)), v) for i, v in enumerate(values)]
    updates = [(c.contributor, c.samples, c.values) for c in contributions]
    trimmed = TrimmedMean(trim_fraction=0.125)
    cases: list[tuple[str, str, Callable[[], object]]] = [
        ("baseline", "np.sum(np.stack(...), axis=0)  [baseline]", lambda: np.sum(np.stack(values), axis=0)),
        ("fedavg", "FedAvg", lambda: FedAvg().aggregate(contributions)),
        ("reference_fedavg", "reference_fedavg", lambda: reference_fedavg(updates)),
        ("median", "CoordinateMedian", lambda: CoordinateMedian().aggregate(contributions)),
        (
            "trimmed_mean",
            f"TrimmedMean(trim_fraction=0.125), k={trimmed.trimmed_count(contributors)}",
            lambda: trimmed.aggregate(contributions),
        ),
        (
            "validate_within",
            "validate_values, norm well within bound",
            lambda: [validate_values(v, expected_length=length, norm_bound=1e6) for v in values],
        ),
        (
            "validate_above",
            "validate_values, norm above bound (exact norm)",
            lambda: [validate_values(v, expected_length=length, norm_bound=1.0) for v in values],
        ),
    ]
    processed = contributors * length * 4
    rows = []
    for key, label, run in cases:
        seconds = _median_seconds(run, repeats)
        rows.append({"case": key, "label": label, "seconds": seconds, "gb_per_s": processed / seconds / 1e9})
    by_case = {r["case"]: r for r in rows}
    return {
        "benchmark": "aggregation",
        "quick": quick,
        "contributors": contributors,
        "length": length,
        "repeats": repeats,
        "bytes_processed": processed,
        "threads": 1,
        "numpy": np.__version__,
        "rows": rows,
        "fedavg_over_baseline": by_case["fedavg"]["gb_per_s"] / by_case["baseline"]["gb_per_s"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contributors", type=int, default=8)
    parser.add_argument("--length", type=int, default=1_000_000, help="float32 values per contribution")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    result = measure(contributors=args.contributors, length=args.length, repeats=args.repeats)
    print(
        f"{args.contributors} contributions x {args.length:,} float32 = {result['bytes_processed'] / 1e6:.1f} MB "
        f"per aggregation, 1 thread, numpy {np.__version__}, median of {args.repeats}"
    )
    print(f"{'operation':<48} {'ms':>9} {'GB/s':>7}")
    for row in result["rows"]:
        print(f"{row['label']:<48} {row['seconds'] * 1e3:9.2f} {row['gb_per_s']:7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
