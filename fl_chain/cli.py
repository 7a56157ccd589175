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

    status = sub.add_parser("status", help="show the coordinator's tasks and rounds")
    _add_rpc(status)
    status.add_argument("--deployment", default="deployment.json")
    status.add_argument("--task", type=int, help="show only this task")
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
    from fl_chain.demo import run_demo

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


def _chain_start(args: argparse.Namespace) -> int:
    from fl_chain.chain.anvil import Anvil
    from fl_chain.chain.ganache import Ganache
    from fl_chain.chain.keys import dev_accounts

    cls = Ganache if args.backend == "ganache" else Anvil
    process = cls(port=args.port, chain_id=args.chain_id, accounts=args.accounts, data_dir=args.data_dir, log_dir=args.log_dir)
    process.start()
    try:
        print(f"{args.backend} listening on {process.rpc_url} (chain id {process.chain_id}); logs in {process.log_dir}")
        for i, account in enumerate(dev_accounts(min(args.accounts, 4))):
            print(f"  account {i}: {account.address}  (flchain dev-key {i} --out key{i}.hex)")
        print("Ctrl-C stops it.")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
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
    from fl_chain.deployment import deploy

    account = _load_account(args)
    client = _client(args.rpc)
    coordinator, deployment = deploy(client, account)
    path = deployment.write(args.out)
    print(f"FLCoordinator deployed at {coordinator.address} (chain id {deployment.chain_id}, block {deployment.block})")
    print(f"deployment file: {path}")
    return 0


def _admit(args: argparse.Namespace) -> int:
    from web3 import Web3

    from fl_chain.deployment import Deployment, open_deployment

    for address in args.accounts:
        if not Web3.is_address(address):
            raise ConfigError(f"{address!r} is not an Ethereum address")
    account = _load_account(args)
    coordinator = open_deployment(_client(args.rpc), Deployment.read(args.deployment))
    coordinator.admit(account, args.accounts)
    print(f"admitted {len(args.accounts)} account(s)")
    return 0


def _status(args: argparse.Namespace) -> int:
    from fl_chain.deployment import Deployment, open_deployment

    coordinator = open_deployment(_client(args.rpc), Deployment.read(args.deployment))
    count = coordinator.task_count()
    print(f"FLCoordinator {coordinator.address}: operator {coordinator.operator()}, {count} task(s)")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
