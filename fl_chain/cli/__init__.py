"""The ``flchain`` command line.

Every failure fl-chain anticipates is an :class:`~fl_chain.errors.FLChainError`; the CLI prints its
one-line message to stderr and exits with status 2. Nothing else prints a traceback unless
``FLCHAIN_DEBUG=1`` is set.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence

from fl_chain import __version__
from fl_chain.errors import ConfigError, FLChainError

EXIT_USAGE_OR_INPUT = 2
EXIT_INTERRUPTED = 130


def _add_rpc(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc", required=True, help="JSON-RPC URL of the chain, e.g. http://127.0.0.1:8545")


def _add_key(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--key", required=required, help="hex private key file or JSON keystore")
    parser.add_argument("--password-file", help="keystore password file (or set FLCHAIN_KEY_PASSWORD)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``flchain`` subcommand."""
    parser = argparse.ArgumentParser(prog="flchain", description="Aggregator-free federated learning on a chain.")
    parser.add_argument("--version", action="version", version=f"fl-chain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run contract rounds with stand-in digests on a chain")
    demo.add_argument("--chain", default="embedded", help="embedded (default), ganache or anvil")
    demo.add_argument("--participants", type=int, default=4)
    demo.add_argument("--partitions", type=int, default=4)
    demo.add_argument("--replication", type=int, default=2)
    demo.add_argument("--quorum", type=int, default=2)
    demo.add_argument("--rounds", type=int, default=3)

    sim = sub.add_parser("simulate", help="simulate a federation in one process (embedded chain, memory storage)")
    sim.add_argument("--nodes", type=int, default=4)
    sim.add_argument("--rounds", type=int, default=5)
    sim.add_argument("--dataset", default="digits", help="digits, breast_cancer, fashion_mnist or csv (with --data)")
    sim.add_argument("--data", help="csv: the file the simulated nodes share; fashion_mnist: its directory")
    sim.add_argument("--label", help="csv: the label column (default: label)")
    sim.add_argument("--num-classes", type=int, help="csv: number of classes (default: from the labels)")
    sim.add_argument("--standardize", action="store_true", help="csv: standardize features with train statistics")
    sim.add_argument("--client", help="a Flower-style NumPyClient factory module:callable(spec, train, test) instead of the task's torch model")
    sim.add_argument("--model", default="mlp", help="logreg, mlp or cnn")
    sim.add_argument("--hidden", type=int, default=32, help="hidden units of the mlp")
    sim.add_argument("--partitions", type=int, default=4)
    sim.add_argument("--replication", type=int, default=2)
    sim.add_argument("--quorum", type=int, help="default: replication // 2 + 1")
    sim.add_argument("--strategy", default="fedavg", help="fedavg, median or trimmed_mean")
    sim.add_argument("--split", default="iid", help="iid, dirichlet or quantity")
    sim.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration for skewed splits")
    sim.add_argument("--epochs", type=int, default=1)
    sim.add_argument("--batch-size", type=int, default=16)
    sim.add_argument("--lr", type=float, default=0.1)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--chain", default="embedded", help="embedded (in-process py-evm), ganache or anvil")
    sim.add_argument("--storage", default="memory", help="memory (in-process) or kubo (one embedded IPFS peer per node)")
    sim.add_argument(
        "--compare", action="store_true",
        help="also replay the same clients with central FedAvg (parity check) and train on the pooled data",
    )
    sim.add_argument("--quiet", action="store_true", help="no progress display or table")
    sim.add_argument("--out", help="run folder (default: runs/sim-<time>)")

    chain = sub.add_parser("chain", help="local development chains")
    chain_sub = chain.add_subparsers(dest="chain_command", required=True)
    start = chain_sub.add_parser("start", help="run ganache or anvil on 127.0.0.1 until Ctrl-C")
    start.add_argument("backend", choices=["ganache", "anvil"])
    start.add_argument("--port", type=int, default=8545)
    start.add_argument("--accounts", type=int, default=10, help="funded development accounts")
    start.add_argument("--chain-id", type=int)
    start.add_argument("--data-dir", help="persist chain state here across restarts")
    start.add_argument("--log-dir", default="runs/chain-logs")

    dev_key = sub.add_parser("dev-key", help="write a development account's private key to a file")
    dev_key.add_argument("index", type=int)
    dev_key.add_argument("--out", required=True)

    deploy = sub.add_parser("deploy", help="deploy FLCoordinator and write a deployment file")
    _add_rpc(deploy)
    _add_key(deploy)
    deploy.add_argument("--out", default="deployment.json", help="deployment file to write")

    admit = sub.add_parser("admit", help="operator: admit accounts to the consortium")
    _add_rpc(admit)
    _add_key(admit)
    admit.add_argument("--deployment", default="deployment.json")
    admit.add_argument("accounts", nargs="+", help="addresses to admit")

    revoke = sub.add_parser("revoke", help="operator: revoke an account and remove it from every open or running task")
    _add_rpc(revoke)
    _add_key(revoke)
    revoke.add_argument("--deployment", default="deployment.json")
    revoke.add_argument("account", help="address to revoke")

    status = sub.add_parser("status", help="show tasks, rounds, participants, commits and final digests")
    _add_rpc(status)
    status.add_argument("--deployment", default="deployment.json")
    status.add_argument("--task", type=int, help="show only this task, in detail")

    task = sub.add_parser("task", help="operator: create and start tasks")
    task_sub = task.add_subparsers(dest="task_command", required=True)
    create = task_sub.add_parser("create", help="create a task from a TOML file")
    _add_rpc(create)
    _add_key(create)
    create.add_argument("--deployment", default="deployment.json")
    create.add_argument("task_file", help="task TOML (protocol, model, dataset, training, strategy)")
    create.add_argument(
        "--accept-risk", action="store_true",
        help="create the task even if [security] max_colluders could decide a partition with probability > 1e-6",
    )
    create.add_argument("--client", help="a Flower-style NumPyClient factory module:callable(spec, train, test) instead of the task's torch model")
    create.add_argument("--data", help="a sample of the sites' data (csv datasets): fixes the initial model's input size")
    start_task = task_sub.add_parser("start", help="start a task once enough participants joined")
    _add_rpc(start_task)
    _add_key(start_task)
    start_task.add_argument("--deployment", default="deployment.json")
    start_task.add_argument("--task", type=int, required=True)

    node = sub.add_parser("node", help="run a participant node until its task ends")
    _add_rpc(node)
    _add_key(node)
    node.add_argument("--deployment", default="deployment.json")
    node.add_argument("--task-file", required=True, help="the task's TOML (checked against the chain)")
    node.add_argument("--task", type=int, help="task id (default: the first open or running task not finished here)")
    node.add_argument("--state-dir", required=True, help="this node's state directory (resumes after a restart)")
    node.add_argument("--shard", type=int, default=0, help="this node's shard of the task's dataset (default 0)")
    node.add_argument("--shards", type=int, default=1, help="number of shards the dataset is split into (default 1: all)")
    node.add_argument("--data", help="this site's own data: a csv file (used whole), or the fashion_mnist directory")
    node.add_argument("--client", help="a Flower-style NumPyClient factory module:callable(spec, train, test) instead of the task's torch model")
    node.add_argument("--storage", default="kubo", choices=["kubo", "memory"])
    node.add_argument("--ipfs-port", type=int, default=0, help="IPFS swarm port on 127.0.0.1 (0: any free port)")
    node.add_argument("--poll-interval", type=float, default=0.5)
    node.add_argument("--fetch-timeout", type=float, default=20.0)
    node.add_argument("--linger", type=float, help="seconds to keep serving blobs after the task ends (default: aggregation duration)")

    model = sub.add_parser("model", help="global models")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    get = model_sub.add_parser("get", help="download the global model of a round to a .npy file")
    _add_rpc(get)
    get.add_argument("--deployment", default="deployment.json")
    get.add_argument("--task", type=int, required=True)
    get.add_argument("--round", type=int, help="a finalized round (default: the latest)")
    get.add_argument("--out", required=True, help="output .npy file")
    get.add_argument("--ipfs-dir", help="IPFS repo for the downloading peer (default: a temporary one)")
    get.add_argument("--timeout", type=float, default=60.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``flchain``; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except FLChainError as exc:
        if os.environ.get("FLCHAIN_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE_OR_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return _demo(args)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "chain":
        return _chain_start(args)
    if args.command == "dev-key":
        return _dev_key(args)
    if args.command == "deploy":
        return _deploy(args)
    if args.command == "admit":
        return _admit(args)
    if args.command == "status":
        return _status(args)
    if args.command == "revoke":
        return _revoke(args)
    if args.command == "task":
        return _task(args)
    if args.command == "node":
        return _node(args)
    if args.command == "model":
        return _model_get(args)
    raise ConfigError(f"unknown command {args.command!r}")


def _load_account(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from fl_chain.chain.keys import load_key, read_password_file

    password = read_password_file(args.password_file) if args.password_file else None
    return load_key(args.key, password)


def _client(url: str):  # type: ignore[no-untyped-def]
    from fl_chain.chain.backends import RemoteChain
    from fl_chain.chain.client import ChainClient

    return ChainClient(RemoteChain(url).w3)


def _demo(args: argparse.Namespace) -> int:
    from fl_chain.federation.demo import run_demo

    if args.participants < 2:
        raise ConfigError("--participants must be at least 2")
    reports = run_demo(
        chain_backend=args.chain,
        participants=args.participants,
        partitions=args.partitions,
        replication=args.replication,
        quorum=args.quorum,
        rounds=args.rounds,
    )
    finalized = sum(1 for r in reports if r.status == "finalized")
    retried = sum(1 for r in reports if r.status == "failed")
    print(f"done: {finalized} rounds finalized, {retried} retried")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fl_chain.training.node_data import trainer_factory
    from fl_chain.federation.simulate import SimulationOptions, run_simulation, simulate_spec
    from fl_chain.federation.display import SimulationDisplay

    if args.nodes < 1:
        raise ConfigError("--nodes must be at least 1")
    if args.partitions < 1:
        raise ConfigError("--partitions must be at least 1")
    spec = simulate_spec(args)
    needed = spec.protocol["min_contributors"]
    if needed > args.nodes:
        raise ConfigError(
            f"--nodes {args.nodes} is fewer than the {needed} contributors a round needs (quorum "
            f"{spec.protocol['quorum']} of --replication {spec.protocol['replication']}); "
            "raise --nodes or lower --replication/--quorum"
        )
    options = SimulationOptions(
        nodes=args.nodes,
        out=Path(args.out or f"runs/sim-{time.strftime('%Y%m%d-%H%M%S')}"),
        chain=args.chain,
        storage=args.storage,
        compare=args.compare,
        trainer_factory=trainer_factory(args.client) if args.client else None,
    )
    options.validate()
    run_simulation(spec, options, SimulationDisplay(quiet=args.quiet))
    return 0


def _chain_start(args: argparse.Namespace) -> int:
    from fl_chain.chain.anvil import Anvil
    from fl_chain.chain.ganache import Ganache
    from fl_chain.chain.keys import dev_accounts

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    cls = Ganache if args.backend == "ganache" else Anvil
    process = cls(port=args.port, chain_id=args.chain_id, accounts=args.accounts, data_dir=args.data_dir, log_dir=args.log_dir)
    process.start()
    try:
        print(f"{args.backend} listening on {process.rpc_url} (chain id {process.chain_id}); logs in {process.log_dir}")
        for i, account in enumerate(dev_accounts(min(args.accounts, 4))):
            print(f"  account {i}: {account.address}  (flchain dev-key {i} --out key{i}.hex)")
        print("Ctrl-C stops it.")
        signal.signal(signal.SIGTERM, _raise_interrupt)
        while process.running:
            time.sleep(0.5)
        print(f"{args.backend} exited; see {process.log_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        process.stop()


def _dev_key(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fl_chain.chain.keys import dev_account

    if args.index < 0:
        raise ConfigError("dev-key index must be >= 0")
    account = dev_account(args.index)
    path = Path(args.out)
    path.write_text(account.key.hex() + "\n")
    path.chmod(0o600)
    print(f"wrote the key of {account.address} to {path}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from fl_chain.chain.deployment import deploy

    account = _load_account(args)
    client = _client(args.rpc)
    coordinator, deployment = deploy(client, account)
    path = deployment.write(args.out)
    print(f"FLCoordinator deployed at {coordinator.address} (chain id {deployment.chain_id}, block {deployment.block})")
    print(f"deployment file: {path}")
    return 0


def _admit(args: argparse.Namespace) -> int:
    from web3 import Web3

    from fl_chain.chain.deployment import Deployment, open_deployment

    for address in args.accounts:
        if not Web3.is_address(address):
            raise ConfigError(f"{address!r} is not an Ethereum address")
    account = _load_account(args)
    coordinator = open_deployment(_client(args.rpc), Deployment.read(args.deployment))
    coordinator.admit(account, args.accounts)
    print(f"admitted {len(args.accounts)} account(s)")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from web3 import Web3

    from fl_chain.chain.coordinator import TaskStatus
    from fl_chain.chain.deployment import Deployment, open_deployment

    if not Web3.is_address(args.account):
        raise ConfigError(f"{args.account!r} is not an Ethereum address")
    account = _load_account(args)
    coordinator = open_deployment(_client(args.rpc), Deployment.read(args.deployment))
    coordinator.revoke(account, args.account)
    removed = []
    for task_id in range(1, coordinator.task_count() + 1):
        _, state = coordinator.get_task(task_id)
        if state.status in (TaskStatus.OPEN, TaskStatus.RUNNING) and coordinator.has_joined(task_id, args.account):
            coordinator.remove_participant(account, task_id, args.account)
            removed.append(str(task_id))
    print(f"revoked {args.account}; removed from task(s): {', '.join(removed) or 'none'}")
    return 0


def _task(args: argparse.Namespace) -> int:
    from fl_chain.chain.deployment import Deployment, open_deployment
    from fl_chain.protocol.task import TaskSpec

    account = _load_account(args)
    if args.task_command == "create":
        from fl_chain.training.node_data import trainer_factory
        from fl_chain.federation.operator import create_task, initial_vector_for

        spec = TaskSpec.from_toml(args.task_file)
        _check_capture_bound(spec, args.task_file, accept_risk=args.accept_risk)
        initial = initial_vector_for(spec, trainer_factory(args.client), args.data)
        if spec.protocol["partitions"] > initial.size:
            # Nodes refuse such a task when they start; refuse it before it reaches the chain.
            raise ConfigError(
                f"{args.task_file}: protocol.partitions must be between 1 and the model dimension {initial.size}, "
                f"got {spec.protocol['partitions']}"
            )
        coordinator = open_deployment(_client(args.rpc), Deployment.read(args.deployment))
        task_id, digest = create_task(coordinator, account, spec, initial=initial)
        print(f"created task {task_id} (manifest digest {digest.hex()})")
        return 0
    coordinator = open_deployment(_client(args.rpc), Deployment.read(args.deployment))
    coordinator.start_task(account, args.task)
    print(f"started task {args.task}")
    return 0


def _check_capture_bound(spec, task_file: str, *, accept_risk: bool) -> None:  # type: ignore[no-untyped-def]
    """Print the chance that ``[security] max_colluders`` decide a partition; refuse above the limit."""
    from fl_chain.protocol.capture import CAPTURE_LIMIT

    bound = spec.capture_bound()
    p = spec.protocol
    print(
        f"capture bound: {bound.colluders} colluding contributor(s) decide some partition of a round with "
        f"probability <= {bound.probability:.3g} (worst at {bound.contributors} contributors; P={p['partitions']}, "
        f"r={p['replication']}, q={p['quorum']}, {p['min_contributors']}..{p['max_participants']} contributors)"
    )
    if bound.acceptable or accept_risk:
        return
    hint = (
        "raise protocol.min_contributors to at least 2 * security.max_colluders (a majority decides the fallback)"
        if 2 * bound.colluders > bound.contributors
        else "raise protocol.replication and protocol.quorum (see the README's table of safe r, q)"
    )
    raise ConfigError(
        f"{task_file}: a coalition of security.max_colluders = {bound.colluders} decides a partition with probability "
        f"{bound.probability:.3g} > {CAPTURE_LIMIT:g}; {hint}, or pass --accept-risk"
    )


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _node(args: argparse.Namespace) -> int:
    from fl_chain.node.launch import NodeArgs, run_node

    # SIGTERM stops the node like Ctrl-C: its IPFS peer and logs are closed, its state is kept.
    signal.signal(signal.SIGTERM, _raise_interrupt)

    node_args = NodeArgs(
        rpc=args.rpc,
        deployment=args.deployment,
        key=args.key,
        password_file=args.password_file,
        task_file=args.task_file,
        task_id=args.task,
        state_dir=args.state_dir,
        shard=args.shard,
        shards=args.shards,
        data=args.data,
        client=args.client,
        storage=args.storage,
        ipfs_port=args.ipfs_port,
        poll_interval=args.poll_interval,
        fetch_timeout=args.fetch_timeout,
        linger=args.linger,
    )
    return run_node(node_args, report=_stamped)


def _stamped(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _model_get(args: argparse.Namespace) -> int:
    from fl_chain.chain.deployment import Deployment, open_deployment
    from fl_chain.exchange.download import download_global_model

    coordinator = open_deployment(_client(args.rpc), Deployment.read(args.deployment))
    round_, path = download_global_model(
        coordinator, args.task, args.round, args.out, ipfs_dir=args.ipfs_dir, timeout=args.timeout
    )
    print(f"global model of task {args.task} round {round_} written to {path}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from fl_chain.chain.deployment import Deployment, open_deployment

    coordinator = open_deployment(_client(args.rpc), Deployment.read(args.deployment))
    count = coordinator.task_count()
    print(f"FLCoordinator {coordinator.address}: operator {coordinator.operator()}, {count} task(s)")
    if args.task is not None and not 1 <= args.task <= count:
        raise ConfigError(f"task {args.task} does not exist ({count} task(s))")
    task_ids = [args.task] if args.task is not None else list(range(1, count + 1))
    for task_id in task_ids:
        config, state = coordinator.get_task(task_id)
        print(
            f"task {task_id}: {state.status.name.lower()}, {state.participant_count} participants, "
            f"round {state.current_round}, {state.finalized_rounds}/{config.rounds} finalized, "
            f"P={config.partitions} r={config.replication} q={config.quorum}"
        )
        if state.status.name in ("RUNNING", "COMPLETED", "CANCELLED"):
            info = coordinator.get_round(task_id, state.current_round)
            print(f"  current round {info.round}: {info.status.name.lower()}, {info.contributors} contributors")
        if state.latest_finalized_round is not None:
            digests = coordinator.get_final_digests(task_id, state.latest_finalized_round)
            print(f"  round {state.latest_finalized_round} final digests: " + " ".join(d.hex()[:12] for d in digests if d))
        if args.task is not None:
            _status_details(coordinator, task_id, state.current_round)
    return 0


def _status_details(coordinator, task_id: int, current_round: int) -> None:  # type: ignore[no-untyped-def]
    print("  participants:")
    for p in coordinator.get_participants(task_id):
        print(f"    {p.account}  last update round {p.update_round - 1 if p.update_round else '-'}  {' '.join(p.multiaddrs)}")
    for round_ in range(current_round + 1):
        info = coordinator.get_round(task_id, round_)
        commits = coordinator.find_update_commits(task_id, round_)
        aggregates = coordinator.find_aggregate_commits(task_id, round_)
        failure = f" ({info.failure.name.lower()})" if info.failure.value else ""
        print(
            f"  round {round_}: {info.status.name.lower()}{failure}, {len(commits)} updates "
            f"({info.total_samples} samples), {len(aggregates)} aggregate commits, "
            f"{info.finalized_partitions} partitions final"
        )
        for excluded in coordinator.get_excluded(task_id, round_):
            print(f"    excluded as unavailable by a contributor majority: {excluded}")
        if info.disputes:
            print(f"    disputes of its global model: {info.disputes} of {info.contributors} contributors")
        dissent = coordinator.find_dissenting_aggregators(task_id, round_)
        for d in dissent:
            print(f"    dissent: {d.aggregator} committed {d.digest.hex()[:12]} for partition {d.partition}")


if __name__ == "__main__":
    sys.exit(main())
