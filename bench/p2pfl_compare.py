#!/usr/bin/env python3
"""The same job with fl-chain and with the decentralized peer p2pfl 0.4.4: round time and bytes per node.

Usage::

    python -m bench.p2pfl_compare                          # N = 8, about 1e6 parameters, 4 rounds
    python -m bench.p2pfl_compare --nodes 4 --parameters 1e4 --rounds 3
    python -m bench.p2pfl_compare --venv /tmp/p2pfl-venv --sides p2pfl   # p2pfl only

p2pfl pins numpy<2 and an old ``datasets``, so it runs from its own virtual environment (``--venv``,
default :data:`DEFAULT_VENV`). This script installs nothing: if that venv has no p2pfl 0.4.4, it
prints :data:`INSTALL_COMMANDS` and records the comparison as not measured, with the reason.

The job (the one of ``bench/flower_compare.py``): N nodes, the digits MLP (64 -> hidden -> 10, ReLU)
with hidden sized for the requested parameter count, one epoch of SGD (batch 16, lr 0.1) per round on
each node's IID shard from ``fl_chain.training.node_data.load_node_data``, FedAvg weighted by samples,
every node evaluating each new global model on the test split. The shards, the test split, fl-chain's
initial model and the batch order each fl-chain node draws in each round (``torch.randperm`` with the
node's training seed) are written to ``.npz`` files; ``bench/_p2pfl_node.py``, run by the p2pfl venv's
python as N OS processes, loads them into p2pfl:

* p2pfl side: N ``p2pfl.node.Node`` processes, gRPC on 127.0.0.1 only, full connectivity (each node
  connects to every other), train set = all N nodes, FedAvg, p2pfl's default gossip settings; the
  model is a ``FlaxModel`` (flax ``Dense`` layers) trained by a learner of ``_p2pfl_node.py`` with the
  same float32 SGD as fl-chain's ``TorchAdapter`` (p2pfl 0.4.4's ``FlaxLearner`` raises
  ``NotImplementedError``); Ray is disabled in p2pfl's settings. A round ends when the last node
  finished it (``NodeState.increase_round``); bytes are the serialized ``RootMessage`` protobufs each
  node sends (``GrpcClient.send``) and receives (its server's ``send`` handler), attributed to the
  round the message names, or else to the round the node was in.
* fl-chain side: round wall time from its local network (``flower_compare.fl_chain_processes``: anvil
  with ``--block-time`` blocks, N ``flchain node`` processes with kubo peers, P = N, r = q = 2); bytes
  per node per round as ``bench/bytes_per_node.py`` measures them (the same job as an in-process
  federation on anvil with one kubo peer per node: payload bytes of blobs each node downloads, and
  uploads attributed to the node that stored them).

Both sides: the first round is left out (p2pfl's includes the initial model's gossip, fl-chain's the
first block waits). Goal (Performance issue): fl-chain's round faster than p2pfl's, and fl-chain's
bytes sent + received per node per round at most half of p2pfl's. Every process started here is ended
by its pid; while p2pfl runs, ``ss`` records every socket its processes listen on or connect to, and
the run fails if any is not on 127.0.0.1. Writes ``bench/results/p2pfl_compare.json``.

On this 2-core machine p2pfl completed the job at N = 4 with 10^4 parameters but not at N = 8 (model
sends past its gRPC timeout, or gossip ending one model short and waiting out its aggregation timeout):
see docs/benchmarks.md, "Decentralized peer: p2pfl".
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench import end_processes, save_result
from bench._federation import FederationJob, mlp_parameters, stop_on_sigterm
from bench.flower_compare import BLOCK_TIME, TASK_ID, _free_port, _job_spec, fl_chain_processes
from bench.round_breakdown import run_job_in_child

RESULTS = Path(__file__).resolve().parent / "results" / "p2pfl_compare.json"
NODE_SCRIPT = Path(__file__).resolve().parent / "_p2pfl_node.py"
P2PFL_VERSION = "0.4.4"
#: Where the p2pfl venv is looked for (``--venv``); see /work/shared/notes/p2pfl.md.
DEFAULT_VENV = Path("/tmp/p2pfl-venv")
#: Printed when the p2pfl venv is missing; this script never runs them.
INSTALL_COMMANDS = (
    "python3 -m venv {venv}\n"
    '{venv}/bin/pip install "p2pfl[flax,dp]==0.4.4" "pyarrow<17" "huggingface_hub<0.26" "fsspec<=2023.10.0"'
)
#: Goal: fl-chain's bytes per node per round at most this fraction of p2pfl's.
TARGET_BYTES_FRACTION = 0.5
#: Seconds the p2pfl run may take (each node process gives up by itself a little earlier).
P2PFL_TIMEOUT = 900.0
#: Seconds node processes get to exit after all of them wrote their figures.
EXIT_GRACE = 15.0
#: Seconds between ``ss`` samples while p2pfl runs.
SOCKET_SAMPLE_PERIOD = 1.0
#: Environment variables never passed to p2pfl's processes: proxies (gRPC would dial them) and
#: p2pfl's web logger (it would post to that URL).
_DROPPED_ENV = ("http_proxy", "https_proxy", "grpc_proxy", "all_proxy", "P2PFL_WEB_LOGGER_URL", "P2PFL_WEB_LOGGER_KEY")


# ------------------------------------------------------------------------------------------------
# The p2pfl venv
# ------------------------------------------------------------------------------------------------


def venv_problem(venv: Path) -> str | None:
    """Why ``venv`` cannot run the p2pfl side (None: it can): no python, no p2pfl, another version,
    or ``import p2pfl.node`` failing (the error's last line)."""
    python = venv / "bin" / "python"
    if not python.exists():
        return f"no p2pfl venv at {venv} ({python} does not exist)"
    probe = (
        "from p2pfl.settings import Settings; Settings.general.DISABLE_RAY = True; "
        "import importlib.metadata as m, p2pfl.node, flax, datasets; print(m.version('p2pfl'))"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="flchain-p2pfl-probe-") as cwd:  # p2pfl's logger writes ./logs
            done = subprocess.run(
                [str(python), "-c", probe],
                capture_output=True,
                text=True,
                timeout=180,
                env=_p2pfl_env(),
                check=False,
                cwd=cwd,
            )
    except subprocess.TimeoutExpired:
        return f"{python}: importing p2pfl took more than 180 s"
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return f"{python}: import p2pfl.node failed: {tail[0]}"
    version = done.stdout.strip().splitlines()[-1]
    if version != P2PFL_VERSION:
        return f"{venv} has p2pfl {version}, this benchmark is for {P2PFL_VERSION}"
    return None


def _p2pfl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in {d.lower() for d in _DROPPED_ENV}}
    env.update(
        {
            "no_proxy": "127.0.0.1,localhost",
            "NO_PROXY": "127.0.0.1,localhost",
            "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "JAX_PLATFORMS": "cpu",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "RAY_DISABLE_USAGE_STATS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("PYTHONPATH", None)  # the p2pfl venv must not see the project's packages
    return env


# ------------------------------------------------------------------------------------------------
# The job, exported from fl-chain's loader
# ------------------------------------------------------------------------------------------------


def export_job(nodes: int, parameters: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """Write ``job.npz`` and ``node-<i>.npz`` (see ``bench/_p2pfl_node.py``); returns the job's figures."""
    import torch

    from fl_chain.chain.keys import dev_accounts
    from fl_chain.training.node_data import load_node_data
    from fl_chain.training.trainer import TorchTrainer, training_seed

    spec = _job_spec(nodes, parameters, rounds)
    training = spec.training
    epochs, batch_size, lr = int(training["epochs"]), int(training["batch_size"]), float(training["lr"])
    accounts = dev_accounts(nodes + 1)  # account i + 1 is node i, as on the local network
    samples = []
    test = None
    initial = None
    for i in range(nodes):
        train, test = load_node_data(spec, i, nodes)
        if initial is None:
            initial = TorchTrainer(spec, train, test).initial_vector()
        orders = np.zeros((rounds, epochs, len(train.labels)), dtype=np.int64)
        for r in range(rounds):
            generator = torch.Generator().manual_seed(
                training_seed(spec.model_seed, TASK_ID, r, accounts[i + 1].address)
            )
            for e in range(epochs):  # TorchAdapter.train draws one permutation per epoch from one generator
                orders[r, e] = torch.randperm(len(train.labels), generator=generator).numpy()
        np.savez(
            workdir / f"node-{i}.npz",
            features=np.asarray(train.features, dtype=np.float32).reshape(len(train.labels), -1),
            labels=np.asarray(train.labels, dtype=np.int64),
            orders=orders,
        )
        samples.append(len(train.labels))
    assert test is not None and initial is not None
    hidden = int(spec.model["hidden"])
    inputs = int(np.asarray(test.features).reshape(len(test.labels), -1).shape[1])
    classes = (initial.size - inputs * hidden - hidden) // (hidden + 1)
    w0_end = hidden * inputs
    b0_end = w0_end + hidden
    w1_end = b0_end + classes * hidden
    np.savez(
        workdir / "job.npz",
        w0=initial[:w0_end].reshape(hidden, inputs),  # torch layout: nn.Linear weight is [out, in]
        b0=initial[w0_end:b0_end],
        w1=initial[b0_end:w1_end].reshape(classes, hidden),
        b1=initial[w1_end:],
        test_features=np.asarray(test.features, dtype=np.float32).reshape(len(test.labels), -1),
        test_labels=np.asarray(test.labels, dtype=np.int64),
        lr=np.float32(lr),
        batch_size=batch_size,
        epochs=epochs,
    )
    return {
        "parameters": int(initial.size),
        "hidden": hidden,
        "model_bytes": int(initial.size) * 4,
        "samples_per_node": samples,
        "test_samples": len(test.labels),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "initial_model_sha256": hashlib.sha256(initial.tobytes()).hexdigest(),
    }


# ------------------------------------------------------------------------------------------------
# p2pfl side
# ------------------------------------------------------------------------------------------------


def _sockets(pids: set[int]) -> tuple[list[str], list[str]]:
    """(listening local addresses, connected peer addresses) of TCP sockets owned by ``pids`` (``ss``)."""
    listening: list[str] = []
    peers: list[str] = []
    for flag, out in (("-ltnpH", listening), ("-tnpH", peers)):
        try:
            text = subprocess.run(["ss", flag], capture_output=True, text=True, timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in text.splitlines():
            if not any(f"pid={pid}," in line for pid in pids):
                continue
            fields = line.split()
            # ss -l: State Recv-Q Send-Q Local Peer Process; without -l the same columns
            out.append(fields[3] if flag == "-ltnpH" else fields[4])
    return listening, peers


def _loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")


def p2pfl_run(
    nodes: int,
    rounds: int,
    venv: Path,
    workdir: Path,
    timeout: float = P2PFL_TIMEOUT,
    grpc_timeout: float | None = None,
) -> dict[str, Any]:
    """N ``_p2pfl_node.py`` processes on the exported job in ``workdir``; their figures, summed up.
    ``grpc_timeout``: p2pfl's ``GRPC_TIMEOUT`` setting (None: p2pfl's default, 10 s)."""
    python = venv / "bin" / "python"
    ports = [_free_port() for _ in range(nodes)]
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    listening: set[str] = set()
    peers: set[str] = set()
    started = time.monotonic()
    try:
        for i in range(nodes):
            log = open(workdir / f"p2pfl-{i}.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            command = [
                str(python),
                str(NODE_SCRIPT),
                "--workdir",
                str(workdir),
                "--index",
                str(i),
                "--ports",
                ",".join(map(str, ports)),
                "--rounds",
                str(rounds),
                "--timeout",
                str(timeout - 30),
            ] + (["--grpc-timeout", str(grpc_timeout)] if grpc_timeout is not None else [])
            processes.append(
                subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=_p2pfl_env(),
                    cwd=workdir,
                )
            )
        pids = {p.pid for p in processes}
        all_written: float | None = None
        while any(p.poll() is None for p in processes):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"p2pfl did not finish {rounds} rounds in {timeout:.0f} s; see {workdir}")
            if all_written is None and all((workdir / f"result-{i}.json").exists() for i in range(nodes)):
                all_written = time.monotonic()
            if all_written is not None and time.monotonic() - all_written > EXIT_GRACE:
                break  # every node wrote its figures; the finally block ends the ones still running
            heard, talked = _sockets(pids)
            listening.update(heard)
            peers.update(talked)
            time.sleep(SOCKET_SAMPLE_PERIOD)
    finally:
        end_processes(processes, logs)  # only the processes started here, by pid
    outside = sorted(a for a in listening | peers if not _loopback(a))
    results = []
    for i in range(nodes):
        path = workdir / f"result-{i}.json"
        if not path.exists():
            tail = (workdir / f"p2pfl-{i}.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"p2pfl node {i} wrote no result: {tail}")
        results.append(json.loads(path.read_text()))
    failed = [f"node {r['index']}: {r['status']}" for r in results if r["status"] != "ok"]
    if failed:
        raise RuntimeError("; ".join(failed))
    figures = summarize_p2pfl(results, rounds, float((workdir / "started").read_text()))
    figures["grpc_timeout"] = grpc_timeout if grpc_timeout is not None else "p2pfl default (10 s)"
    figures["sockets"] = {
        "listening": sorted(listening),
        "peer_addresses": sorted({a.rsplit(":", 1)[0] for a in peers}),
        "outside_loopback": outside,
    }
    if outside:
        raise RuntimeError(f"p2pfl used addresses outside 127.0.0.1: {outside}")
    return figures


def summarize_p2pfl(results: list[dict[str, Any]], rounds: int, started: float) -> dict[str, Any]:
    """Round wall times (a round ends when the last node finished it) and bytes per node per round."""
    ends = [max(r["round_ends"][k] for r in results) for k in range(rounds)]
    walls = [b - a for a, b in zip([started, *ends[:-1]], ends, strict=True)]
    steady = list(range(1, rounds)) or [0]
    per_node: dict[str, list[float]] = {"sent": [], "received": []}
    by_cmd: dict[str, float] = defaultdict(float)
    for r in results:
        totals = {"sent": 0, "received": 0}
        for when, direction, cmd, nbytes, round_ in r["events"]:
            if round_ < 0:  # no round in the message: the round this node was in
                round_ = bisect.bisect_right(r["round_ends"], when)
            if round_ in steady:
                totals[direction] += nbytes
                by_cmd[f"{direction} {cmd}"] += nbytes
        for direction, total in totals.items():
            per_node[direction].append(total / len(steady))
    both = [s + v for s, v in zip(per_node["sent"], per_node["received"], strict=True)]
    n = len(results)
    sizes = [size for r in results for size in r.get("train_set_sizes", [])]
    return {
        "min_train_set": min(sizes) if sizes else None,
        "federated": bool(sizes) and min(sizes) == n,
        "engine": f"p2pfl {P2PFL_VERSION}: N p2pfl.node.Node processes, gRPC on 127.0.0.1, full mesh, FedAvg",
        "round_seconds": walls,
        "steady_rounds": steady,
        "mean_round_seconds": float(np.mean([walls[k] for k in steady])),
        "mean_sent_bytes_per_node": float(np.mean(per_node["sent"])),
        "mean_received_bytes_per_node": float(np.mean(per_node["received"])),
        "mean_sent_received_bytes_per_node": float(np.mean(both)),
        "max_sent_received_bytes_per_node": float(max(both)),
        "bytes_per_node_per_round_by_command": {k: v / n / len(steady) for k, v in sorted(by_cmd.items())},
        # p2pfl evaluates at the start of each round and after the last: entry k is after k rounds
        "accuracy_after_rounds": [
            float(np.mean([r["accuracy"][k] for r in results])) for k in range(min(len(r["accuracy"]) for r in results))
        ],
    }


# ------------------------------------------------------------------------------------------------
# fl-chain side
# ------------------------------------------------------------------------------------------------


def fl_chain_side(nodes: int, parameters: int, rounds: int, block_time: float) -> dict[str, Any]:
    """Round time on the local network and bytes per node per round on the same job (kubo peers)."""
    network = fl_chain_processes(nodes, parameters, rounds, block_time)
    if "error" in network:
        return {"error": "local network: " + network["error"]}
    figures = run_job_in_child(
        FederationJob(nodes=nodes, parameters=parameters, rounds=rounds, chain="anvil", storage="kubo")
    )
    if "error" in figures:
        return {"error": "bytes run: " + figures["error"]}
    steady = [r for r in figures["rounds"] if r["round"] in figures["steady_rounds"]]
    uploads = [float(np.mean(r["upload_bytes_per_node_by_origin"])) for r in steady]
    download = figures["mean_download_bytes_per_node"]
    upload = float(np.mean(uploads))
    walls = [r["wall_seconds"] for r in network["rounds"]]
    return {
        "backend": network["backend"],
        "parameters": network["parameters"],
        "round_seconds": walls,
        "mean_round_seconds": network["mean_round_seconds"],
        "bytes_backend": "in-process federation, anvil + one kubo peer per node (as bench.bytes_per_node)",
        "model_bytes": figures["model_bytes"],
        "allreduce_bound_bytes": figures["allreduce_bound_bytes"],
        "mean_download_bytes_per_node": download,
        "mean_upload_bytes_per_node": upload,
        "mean_sent_received_bytes_per_node": download + upload,
        "max_download_bytes_per_node": figures["max_download_bytes_per_node"],
        "download_over_bound": figures["download_over_bound"],
        "bytes_rounds_measured": figures["steady_rounds"],
    }


# ------------------------------------------------------------------------------------------------
# Both sides
# ------------------------------------------------------------------------------------------------


def measure(
    *,
    nodes: int = 8,
    parameters: int = 1_000_000,
    rounds: int = 4,
    venv: Path = DEFAULT_VENV,
    sides: list[str] | None = None,
    block_time: float = BLOCK_TIME,
    grpc_timeout: float | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    sides = sides or ["p2pfl", "fl-chain"]
    say = progress or (lambda message: None)
    result: dict[str, Any] = {
        "benchmark": "p2pfl_compare",
        "nodes": nodes,
        "parameters_requested": parameters,
        "parameters": mlp_parameters(_job_spec(nodes, parameters, rounds).model["hidden"]),
        "rounds": rounds,
        "venv": str(venv),
        "target_bytes_fraction": TARGET_BYTES_FRACTION,
    }
    if "p2pfl" in sides:
        problem = venv_problem(venv)
        if problem is not None:
            result["p2pfl"] = {
                "not_measured": problem,
                "install_commands": INSTALL_COMMANDS.format(venv=venv),
            }
        else:
            workdir = Path(tempfile.mkdtemp(prefix="flchain-p2pfl-"))
            try:
                say(f"p2pfl_compare: exporting the job (N={nodes}, D={parameters:.0e}) to {workdir}")
                result["job"] = export_job(nodes, parameters, rounds, workdir)
                say(f"p2pfl_compare: p2pfl {P2PFL_VERSION}, {nodes} node processes")
                result["p2pfl"] = p2pfl_run(nodes, rounds, venv, workdir, grpc_timeout=grpc_timeout)
            except Exception as exc:  # noqa: BLE001 - recorded; the fl-chain side still runs
                result["p2pfl"] = {"not_measured": f"{type(exc).__name__}: {exc}", "workdir": str(workdir)}
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    if "fl-chain" in sides:
        say(f"p2pfl_compare: fl-chain local network ({block_time:g} s blocks) and bytes run, N={nodes}")
        result["fl_chain"] = fl_chain_side(nodes, parameters, rounds, block_time)
    ours, theirs = result.get("fl_chain", {}), result.get("p2pfl", {})
    if theirs.get("federated") is False:
        # p2pfl dropped neighbours whose sends timed out and ran rounds with fewer nodes: not the same job
        theirs["not_measured"] = (
            f"p2pfl's rounds did not federate all {nodes} nodes (train sets down to {theirs['min_train_set']}: "
            "gRPC sends of the model exceeded GRPC_TIMEOUT, p2pfl dropped those neighbours); figures kept as measured"
        )
    if "mean_round_seconds" in ours and "mean_round_seconds" in theirs and "not_measured" not in theirs:
        fraction = ours["mean_sent_received_bytes_per_node"] / theirs["mean_sent_received_bytes_per_node"]
        result["verdict"] = {
            "round_ratio": ours["mean_round_seconds"] / theirs["mean_round_seconds"],
            "round_faster": ours["mean_round_seconds"] < theirs["mean_round_seconds"],
            "bytes_fraction": fraction,
            "bytes_at_most_half": fraction <= TARGET_BYTES_FRACTION,
        }
    else:
        result["verdict"] = "not measured"
    return result


def format_table(result: dict[str, Any]) -> str:
    mb = 1e6
    head = ["side", "N", "params", "s/round (steady)", "sent+recv MB/node/round", "recv MB/node/round", "how"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in (("fl_chain", "fl-chain"), ("p2pfl", f"p2pfl {P2PFL_VERSION}")):
        side = result.get(key)
        if side is None:
            continue
        if "not_measured" in side or "error" in side:
            reason = side.get("not_measured") or side.get("error")
            lines.append(f"| {label} | {result['nodes']} | {result['parameters']:,} | not measured: {reason} |")
            continue
        received = side.get("mean_received_bytes_per_node", side.get("mean_download_bytes_per_node"))
        how = side.get("backend", side.get("engine", ""))
        lines.append(
            f"| {label} | {result['nodes']} | {result['parameters']:,} | {side['mean_round_seconds']:.2f} | "
            f"{side['mean_sent_received_bytes_per_node'] / mb:.2f} | {received / mb:.2f} | {how} |"
        )
    verdict = result["verdict"]
    if isinstance(verdict, dict):
        lines.append("")
        lines.append(
            f"fl-chain / p2pfl round time {verdict['round_ratio']:.2f} "
            f"({'faster: MET' if verdict['round_faster'] else 'not faster: MISSED'}); "
            f"bytes per node per round {verdict['bytes_fraction']:.2f} of p2pfl's "
            f"(at most {TARGET_BYTES_FRACTION}: {'MET' if verdict['bytes_at_most_half'] else 'MISSED'})"
        )
    else:
        lines.append("")
        lines.append("comparison: not measured")
    theirs = result.get("p2pfl", {})
    if "install_commands" in theirs:
        lines.append("install p2pfl in its own venv with:\n" + theirs["install_commands"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--parameters", type=float, default=1e6)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the p2pfl venv (never installed here)")
    parser.add_argument("--sides", default="p2pfl,fl-chain", help="comma-separated: p2pfl, fl-chain")
    parser.add_argument("--block-time", type=float, default=BLOCK_TIME, help="anvil's block interval (fl-chain side)")
    parser.add_argument("--grpc-timeout", type=float, help="p2pfl's GRPC_TIMEOUT in seconds (default: p2pfl's, 10)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first round is left out)")
    stop_on_sigterm()
    result = measure(
        nodes=args.nodes,
        parameters=int(args.parameters),
        rounds=args.rounds,
        venv=args.venv,
        sides=args.sides.split(","),
        block_time=args.block_time,
        grpc_timeout=args.grpc_timeout,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(format_table(result))
    save_result(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
