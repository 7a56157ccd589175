#!/usr/bin/env python3
"""The same job with fl-chain and with Flower (flwr) on this machine: ratio of round wall times.

Usage::

    python -m bench.flower_compare                 # N = 8, about 1e6 parameters, 4 rounds
    python -m bench.flower_compare --quick         # N = 4, about 1e4 parameters, 3 rounds (no processes pair)
    python -m bench.flower_compare --nodes 8 --parameters 1e6 --rounds 4 --pairs inprocess,loopback

The job: N clients, the digits MLP with its hidden layer sized to the requested parameter count,
one epoch of SGD (batch 16, lr 0.1) per round on each client's IID shard with the very same trainer
(``fl_chain.training.trainer.TorchTrainer``) and the very same per-client, per-round seeds, weighted
FedAvg, every client evaluating each new global model on the test split (fl-chain nodes do that
when they fetch it). Two pairs are run in the same invocation:

* ``inprocess``: fl-chain as ``flchain simulate`` runs it (its default chain: anvil where installed,
  else the embedded py-evm chain; memory store, N nodes
  stepping in one thread, P = N, r = 2, q = 2) against Flower's own round loop
  (``flwr.server.Server`` with FedAvg) driving N ``NumPyClient`` objects in this process through
  an in-process ``ClientProxy`` (Flower's simulation engine needs ray, which is not installed;
  the proxy does what its ray proxy does without ray: call the client's ``fit``/``evaluate``, with
  Flower's own serialization of parameters). Flower calls clients from a thread pool.
* ``loopback``: fl-chain on anvil with one embedded kubo IPFS peer per node (in-process nodes)
  against Flower's deployment engine: ``flwr.server.start_server`` in one process and N
  ``flwr.client.start_client`` processes (gRPC, 127.0.0.1 only).
* ``processes``: both sides as N OS processes: fl-chain's local network (``fl_chain.federation.localnet``:
  anvil with a block every ``--block-time`` seconds (0.2 by default), N ``flchain node`` processes
  with kubo peers, the same task as a task file) against the same Flower deployment as
  ``loopback``. Nodes wake on each new block; every transaction waits for the next block, so the
  issue's target for this pair is Flower's round plus two block intervals.

Every process this script starts is ended by its pid.

In-process fl-chain federations step their nodes one at a time in one thread, so their round time
is the sum of every node's work, while Flower's server calls its clients from a thread pool and
its deployment runs clients in parallel processes: on 2 cores the ``inprocess`` and ``loopback``
pairs favour Flower by up to the parallelism it gets; the CPU-time ratio and the ``processes``
pair are the checks on that.

A round's wall time is the time between the ends of two consecutive rounds (Flower: the end of
``aggregate_evaluate``; fl-chain: the transaction that finalized the round); the first round is left
out of the means on both sides. The CPU time of the process per round is given for the in-process
pair, since it is not stretched by other load on the machine. Flower's telemetry is turned off
(``FLWR_TELEMETRY_ENABLED=0``) before flwr is imported, here and in every child.

Targets (issue 17): the in-process pair's round wall time and CPU time at most 1.5x Flower's at N = 8 with
1e6 parameters; the processes pair's round at most Flower's gRPC round plus two block intervals.

Writes ``bench/results/flower_compare.json``.
"""

from __future__ import annotations

import os

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"  # never phone home, in this process and its children
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import child_env, end_processes, module_command, save_result
from bench._federation import FederationJob, make_spec, mlp_hidden_for, mlp_parameters, stop_on_sigterm
from bench.round_breakdown import run_job_in_child
from fl_chain.federation.simulate import default_chain
from tests.helpers.task_files import task_toml

RESULTS = Path(__file__).resolve().parent / "results" / "flower_compare.json"
#: Issue 17's goal for the in-process pair (``flchain simulate`` against Flower's simulation): wall
#: time and CPU time per round at most this many times Flower's.
TARGET_RATIO = 1.5
#: Issue 17's goal for the processes pair: Flower's gRPC round plus this many block intervals.
TARGET_BLOCKS = 2
#: fl-chain's task id on a fresh chain (the training seeds depend on it).
TASK_ID = 1
#: Seconds between anvil's blocks in the ``processes`` pair (``--block-time``).
BLOCK_TIME = 0.2
#: Seconds the loopback Flower run may take.
LOOPBACK_TIMEOUT = 1800


def _job_spec(nodes: int, parameters: int, rounds: int) -> Any:
    return make_spec(parameters=parameters, nodes=nodes, rounds=rounds, partitions=nodes, replication=2)


# ------------------------------------------------------------------------------------------------
# Flower side
# ------------------------------------------------------------------------------------------------


def make_numpy_client(spec: Any, index: int, nodes: int) -> Any:
    """A Flower NumPyClient doing exactly what fl-chain node ``index`` does in a round."""
    from flwr.client import NumPyClient

    from fl_chain.chain.keys import dev_accounts
    from fl_chain.training.node_data import load_node_data
    from fl_chain.training.trainer import TorchTrainer, training_seed

    train, test = load_node_data(spec, index, nodes)
    trainer = TorchTrainer(spec, train, test)
    address = dev_accounts(nodes + 1)[index + 1].address  # account i + 1 is node i in build_federation

    class BenchClient(NumPyClient):  # type: ignore[misc]
        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return [trainer.initial_vector()]

        def fit(
            self, parameters: list[np.ndarray], config: dict[str, Any]
        ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
            round_ = int(config["round"]) - 1  # Flower counts rounds from 1, fl-chain from 0
            seed = training_seed(spec.model_seed, TASK_ID, round_, address)
            vector, samples, _ = trainer.train(parameters[0].astype(np.float32), seed=seed)
            return [vector], int(samples), {}

        def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
            metrics = trainer.evaluate(parameters[0].astype(np.float32))
            return (
                float(metrics.get("test_loss", 0.0)),
                len(test.labels),
                {"accuracy": metrics.get("test_accuracy", 0.0)},
            )

    return BenchClient(), trainer.initial_vector()


def make_strategy(
    nodes: int,
    initial: np.ndarray,
    round_ends: dict[int, float],
    round_cpu: dict[int, float] | None = None,
    accuracy: dict[int, float] | None = None,
) -> Any:
    """Flower's FedAvg, every client fits and evaluates every round; records when each round ends
    and (into ``accuracy``) the sample-weighted mean of the clients' test accuracy."""
    from flwr.common import ndarrays_to_parameters
    from flwr.server.strategy import FedAvg

    round_cpu = round_cpu if round_cpu is not None else {}
    accuracy = accuracy if accuracy is not None else {}

    def weighted_accuracy(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        total = sum(n for n, _ in results)
        return {"accuracy": sum(n * float(m["accuracy"]) for n, m in results) / total if total else 0.0}

    class TimedFedAvg(FedAvg):  # type: ignore[misc]
        def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
            out = super().aggregate_evaluate(server_round, results, failures)
            round_ends[server_round] = time.perf_counter()
            round_cpu[server_round] = time.process_time()
            accuracy[server_round] = float(out[1].get("accuracy", float("nan")))
            return out

    return TimedFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=nodes,
        min_evaluate_clients=nodes,
        min_available_clients=nodes,
        initial_parameters=ndarrays_to_parameters([initial]),
        on_fit_config_fn=lambda r: {"round": r},
        on_evaluate_config_fn=lambda r: {"round": r},
        evaluate_metrics_aggregation_fn=weighted_accuracy,
    )


def _steady(round_ends: dict[int, float], started: float) -> list[float]:
    ends = [round_ends[r] for r in sorted(round_ends)]
    walls = [b - a for a, b in zip([started, *ends], ends)]
    return walls[1:] or walls


def flower_inprocess(nodes: int, parameters: int, rounds: int, *, spec: Any = None) -> dict[str, Any]:
    """Flower's Server and FedAvg with N NumPyClients in this process (no transport); the job of
    ``spec`` if given (``parameters`` is then unused), else the benchmark's MLP job."""
    from flwr.common import Code, DisconnectRes, GetPropertiesRes, Status
    from flwr.server import Server, SimpleClientManager
    from flwr.server.client_proxy import ClientProxy

    class InProcessClientProxy(ClientProxy):  # type: ignore[misc]
        def __init__(self, cid: str, client: Any) -> None:
            super().__init__(cid)
            self.client = client.to_client()

        def get_properties(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            return GetPropertiesRes(status=Status(Code.OK, ""), properties={})

        def get_parameters(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            return self.client.get_parameters(ins)

        def fit(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            return self.client.fit(ins)

        def evaluate(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            return self.client.evaluate(ins)

        def reconnect(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            return DisconnectRes(reason="")

    spec = spec if spec is not None else _job_spec(nodes, parameters, rounds)
    clients = [make_numpy_client(spec, i, nodes) for i in range(nodes)]
    round_ends: dict[int, float] = {}
    round_cpu: dict[int, float] = {}
    accuracy: dict[int, float] = {}
    manager = SimpleClientManager()
    for i, (client, _) in enumerate(clients):
        manager.register(InProcessClientProxy(str(i), client))
    strategy = make_strategy(nodes, clients[0][1], round_ends, round_cpu, accuracy)
    server = Server(client_manager=manager, strategy=strategy)
    cpu_started = time.process_time()
    started = time.perf_counter()
    # Flower's fit() asks one client for the initial parameters unless the strategy has them: it has.
    server.fit(num_rounds=rounds, timeout=None)
    walls = _steady(round_ends, started)
    cpus = _steady(round_cpu, cpu_started)
    return {
        "engine": "flwr.server.Server + FedAvg, in-process ClientProxy (no ray, no transport)",
        "round_seconds": walls,
        "mean_round_seconds": float(np.mean(walls)),
        "cpu_seconds_per_round": float(np.mean(cpus)),
        "accuracy_per_round": [accuracy[r] for r in sorted(accuracy)],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flower_loopback(nodes: int, parameters: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """flwr.server.start_server in one process, N flwr.client.start_client processes, over 127.0.0.1."""
    port = _free_port()
    result = workdir / "flower-server.json"
    env = child_env({**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "OMP_NUM_THREADS": "1"})
    common = ["--nodes", str(nodes), "--parameters", str(parameters), "--rounds", str(rounds), "--port", str(port)]
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        server_log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed below
        logs.append(server_log)
        processes.append(
            subprocess.Popen(
                module_command("flower_compare", "--role", "server", "--child-result", str(result), *common),
                stdout=server_log,
                stderr=subprocess.STDOUT,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        )
        time.sleep(3.0)  # the server binds before clients dial (start_client retries anyway)
        for i in range(nodes):
            log = open(workdir / f"client-{i}.log", "wb")  # noqa: SIM115
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    module_command("flower_compare", "--role", "client", "--index", str(i), *common),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                )
            )
        processes[0].wait(LOOPBACK_TIMEOUT)
        if not result.exists():
            raise RuntimeError(f"the Flower server wrote no result; see {workdir}/server.log")
        figures = json.loads(result.read_text())
    finally:
        end_processes(processes, logs)  # only the processes started here, by pid
    walls = figures["round_seconds"]
    return {
        "engine": "flwr.server.start_server + N flwr.client.start_client processes, gRPC on 127.0.0.1",
        "round_seconds": walls,
        "mean_round_seconds": float(np.mean(walls)),
    }


def _serve(args: argparse.Namespace) -> int:
    from flwr.server import ServerConfig, start_server

    spec = _job_spec(args.nodes, args.parameters, args.rounds)
    _, initial = make_numpy_client(spec, 0, args.nodes)
    round_ends: dict[int, float] = {}
    started = time.perf_counter()

    def mark_start() -> None:
        nonlocal started
        started = time.perf_counter()

    strategy = make_strategy(args.nodes, initial, round_ends)
    original = strategy.configure_fit

    def configure_fit(server_round: int, parameters: Any, client_manager: Any) -> Any:
        if server_round == 1:
            mark_start()  # all clients connected (min_available_clients waits for them)
        return original(server_round, parameters, client_manager)

    strategy.configure_fit = configure_fit
    start_server(
        server_address=f"127.0.0.1:{args.port}", config=ServerConfig(num_rounds=args.rounds), strategy=strategy
    )
    # round 1 starts when every client is connected; the wait for clients is not a round
    walls = _steady(round_ends, started)
    args.child_result.write_text(json.dumps({"round_seconds": walls}))
    return 0


def _client(args: argparse.Namespace) -> int:
    from flwr.client import start_client

    spec = _job_spec(args.nodes, args.parameters, args.rounds)
    client, _ = make_numpy_client(spec, args.index, args.nodes)
    start_client(
        server_address=f"127.0.0.1:{args.port}", client=client.to_client(), insecure=True, transport="grpc-bidi"
    )
    return 0


# ------------------------------------------------------------------------------------------------
# Both sides
# ------------------------------------------------------------------------------------------------


def measure(
    *,
    quick: bool = False,
    nodes: int | None = None,
    parameters: int | None = None,
    rounds: int | None = None,
    pairs: list[str] | None = None,
    progress: Any = None,
    block_time: float = BLOCK_TIME,
) -> dict[str, Any]:
    nodes = nodes or (4 if quick else 8)
    parameters = parameters or (10_000 if quick else 1_000_000)
    rounds = rounds or (3 if quick else 4)
    pairs = pairs or (["inprocess", "loopback"] if quick else ["inprocess", "loopback", "processes"])
    rows = []
    for pair in pairs:
        chain, storage = (default_chain(), "memory") if pair == "inprocess" else ("anvil", "kubo")
        if progress:
            progress(
                f"flower_compare: fl-chain {chain}+{storage}{' processes' if pair == 'processes' else ''} "
                f"N={nodes} D={parameters:.0e}"
            )
        if pair == "processes":
            ours = fl_chain_processes(nodes, parameters, rounds, block_time)
        else:
            ours = run_job_in_child(
                FederationJob(nodes=nodes, parameters=parameters, rounds=rounds, chain=chain, storage=storage)
            )
        if progress:
            progress(f"flower_compare: Flower {pair} N={nodes} D={parameters:.0e}")
        try:
            if pair == "inprocess":
                flower = _in_child(nodes, parameters, rounds)
            elif pair == "processes" and any(r["pair"] == "loopback" and "flower" in r for r in rows):
                flower = next(r["flower"] for r in rows if r["pair"] == "loopback" and "flower" in r)
                flower = {**flower, "reused_from": "loopback"}
            else:
                with tempfile.TemporaryDirectory(prefix="flchain-flower-") as tmp:
                    flower = flower_loopback(nodes, parameters, rounds, Path(tmp))
        except Exception as exc:  # noqa: BLE001 - recorded, the other pair still runs
            flower = {"error": f"{type(exc).__name__}: {exc}"}
        row: dict[str, Any] = {"pair": pair, "nodes": nodes, "parameters_requested": parameters, "rounds": rounds}
        if "error" in ours:
            row["error"] = "fl-chain: " + ours["error"]
        elif "error" in flower:
            row["error"] = "flower: " + flower["error"]
        else:
            our_cpu = ours.get("mean_round_cpu_seconds")
            row.update(
                {
                    "parameters": ours["parameters"],
                    "fl_chain": {
                        "backend": ours.get("backend", f"{chain}+{storage}"),
                        "mean_round_seconds": ours["mean_round_seconds"],
                        "round_seconds": [r["wall_seconds"] for r in ours["rounds"]],
                        "cpu_seconds_per_round": our_cpu,
                        "mean_split_seconds_all_nodes": ours.get("mean_split_seconds_all_nodes"),
                        "mean_other_seconds": ours.get("mean_other_seconds"),
                    },
                    "flower": flower,
                    "ratio": ours["mean_round_seconds"] / flower["mean_round_seconds"],
                    "cpu_ratio": (our_cpu / flower["cpu_seconds_per_round"])
                    if our_cpu is not None and "cpu_seconds_per_round" in flower
                    else None,
                }
            )
        rows.append(row)
    return {
        "benchmark": "flower_compare",
        "quick": quick,
        "target_ratio": TARGET_RATIO,
        "target_blocks": TARGET_BLOCKS,
        "block_time": block_time,
        "rows": rows,
    }


def pair_goal(row: dict[str, Any], block_time: float) -> tuple[str, str]:
    """Issue 17's goal for a measured row and its verdict (MET, MISSED, or ``-`` for a contrast)."""
    if row["pair"] == "inprocess":
        cpu = row.get("cpu_ratio")
        met = row["ratio"] <= TARGET_RATIO and cpu is not None and cpu <= TARGET_RATIO
        return f"wall and CPU ratio <= {TARGET_RATIO}", "MET" if met else "MISSED"
    if row["pair"] == "processes":
        allowed = row["flower"]["mean_round_seconds"] + TARGET_BLOCKS * block_time
        met = row["fl_chain"]["mean_round_seconds"] <= allowed
        return f"<= Flower + {TARGET_BLOCKS} x {block_time:g} s blocks = {allowed:.2f} s", "MET" if met else "MISSED"
    return "contrast (no target)", "-"


def task_file_text(*, nodes: int, rounds: int, hidden: int, update_duration: int, aggregation_duration: int) -> str:
    """The job as a task file: the digits MLP with ``hidden`` units, P = N, r = q = 2, batch 16, lr 0.1."""
    return task_toml(
        protocol={
            "rounds": rounds,
            "partitions": nodes,
            "replication": 2,
            "quorum": 2,
            "min_contributors": nodes,
            "update_duration": update_duration,
            "aggregation_duration": aggregation_duration,
        },
        model={"name": "mlp", "hidden": hidden, "seed": 0},
        dataset={"name": "digits", "split": "iid", "seed": 0},
        training={"epochs": 1, "batch_size": 16, "lr": 0.1},
    )


def fl_chain_processes(nodes: int, parameters: int, rounds: int, block_time: float = BLOCK_TIME) -> dict[str, Any]:
    """The job on fl-chain's local network: anvil (a block every ``block_time`` s) and N ``flchain
    node`` processes with kubo peers."""

    from fl_chain.federation.localnet import LocalNetwork

    spec = _job_spec(nodes, parameters, rounds)  # same sections as the task file below
    hidden = mlp_hidden_for(parameters)
    assert spec.model["hidden"] == hidden
    ends: list[float] = []
    with tempfile.TemporaryDirectory(prefix="flchain-flower-net-") as tmp:
        task_file = Path(tmp) / "task.toml"
        # Long phases: rounds end by completion; the phases only bound a stuck round.
        task_file.write_text(
            task_file_text(nodes=nodes, rounds=rounds, hidden=hidden, update_duration=600, aggregation_duration=600)
        )
        network = LocalNetwork(
            Path(tmp) / "net",
            nodes=nodes,
            task_file=task_file,
            chain="anvil",
            linger=0.0,
            block_time=block_time,
            report=lambda message: None,
        )
        try:
            network.start()
            started = time.perf_counter()
            network.follow(timeout=LOOPBACK_TIMEOUT, on_round=lambda r, outcome: ends.append(time.perf_counter()))
        finally:
            network.close()  # the node processes and anvil it started, by pid
    if len(ends) < rounds:
        return {"error": f"only {len(ends)} of {rounds} rounds ended"}
    walls = [b - a for a, b in zip([started, *ends], ends)]
    steady = walls[1:] or walls
    return {
        "backend": f"anvil ({block_time:g} s blocks) + N flchain node processes + kubo",
        "block_time": block_time,
        "parameters": mlp_parameters(hidden),
        "rounds": [{"wall_seconds": w} for w in walls],
        "mean_round_seconds": float(np.mean(steady)),
    }


def _in_child(nodes: int, parameters: int, rounds: int) -> dict[str, Any]:
    """flower_inprocess in a child process of this script (same isolation as the fl-chain side)."""
    with tempfile.TemporaryDirectory(prefix="flchain-flower-") as tmp:
        result = Path(tmp) / "result.json"
        command = module_command(
            "flower_compare",
            "--role",
            "inprocess",
            "--child-result",
            str(result),
            "--nodes",
            str(nodes),
            "--parameters",
            str(parameters),
            "--rounds",
            str(rounds),
        )
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=LOOPBACK_TIMEOUT, check=False, env=child_env()
        )
        if done.returncode != 0 or not result.exists():
            raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip().splitlines()[-3:]}")
        return json.loads(result.read_text())  # type: ignore[no-any-return]


def format_table(result: dict[str, Any]) -> str:
    head = ["pair", "N", "params", "fl-chain s/round", "Flower s/round", "ratio", "CPU ratio", "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        if "error" in r:
            lines.append(
                f"| {r['pair']} | {r['nodes']} | {r['parameters_requested']:.0e} | error: {r['error'][:100]} |"
            )
            continue
        cpu = f"{r['cpu_ratio']:.2f}" if r.get("cpu_ratio") is not None else "-"
        goal, verdict = pair_goal(r, result.get("block_time", BLOCK_TIME))
        lines.append(
            f"| {r['pair']} ({r['fl_chain']['backend']}) | {r['nodes']} | {r['parameters']:,} | "
            f"{r['fl_chain']['mean_round_seconds']:.2f} | {r['flower']['mean_round_seconds']:.2f} | {r['ratio']:.2f} | "
            f"{cpu} | {goal} {verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--parameters", type=float)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--pairs", help="comma-separated: inprocess, loopback, processes")
    parser.add_argument("--block-time", type=float, default=BLOCK_TIME, help="anvil's block interval, processes pair")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--role", choices=("server", "client", "inprocess"), help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stop_on_sigterm()
    if args.role:
        args.parameters = int(args.parameters)
        if args.role == "server":
            return _serve(args)
        if args.role == "client":
            return _client(args)
        args.child_result.write_text(json.dumps(flower_inprocess(args.nodes, args.parameters, args.rounds)))
        return 0
    result = measure(
        quick=args.quick,
        nodes=args.nodes,
        parameters=int(args.parameters) if args.parameters else None,
        rounds=args.rounds,
        pairs=args.pairs.split(",") if args.pairs else None,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
        block_time=args.block_time,
    )
    print(format_table(result))
    save_result(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
