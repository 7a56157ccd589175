"""``flchain chain start`` and ``flchain dev-key``: local development chains and their accounts."""

from __future__ import annotations

import argparse
import sys
import time

from fl_chain.errors import ConfigError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``chain start`` and ``dev-key``."""
    chain = commands.add_parser("chain", help="local development chains")
    chain_commands = chain.add_subparsers(dest="chain_command", required=True)
    start = chain_commands.add_parser("start", help="run ganache or anvil on 127.0.0.1 until Ctrl-C")
    start.add_argument("backend", choices=["ganache", "anvil"])
    start.add_argument("--port", type=int, default=8545)
    start.add_argument("--accounts", type=int, default=10, help="funded development accounts")
    start.add_argument("--chain-id", type=int)
    start.add_argument("--data-dir", help="persist chain state here across restarts")
    start.add_argument("--log-dir", default="runs/chain-logs")
    start.add_argument(
        "--block-time",
        type=float,
        help="seconds between blocks (fractions allowed, e.g. 0.2); default: a block per transaction",
    )
    start.set_defaults(func=chain_start_command)

    dev_key = commands.add_parser("dev-key", help="write a development account's private key to a file")
    dev_key.add_argument("index", type=int)
    dev_key.add_argument("--out", required=True)
    dev_key.set_defaults(func=dev_key_command)


def chain_start_command(args: argparse.Namespace) -> int:
    """Run ganache or anvil until it exits by itself (1), or until Ctrl-C or SIGTERM stop both (130, 143)."""
    from fl_chain.chain.anvil import Anvil
    from fl_chain.chain.ganache import Ganache
    from fl_chain.chain.keys import dev_accounts

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    if args.block_time is not None and not 0.1 <= args.block_time <= 3600:
        raise ConfigError(f"--block-time must be between 0.1 and 3600 seconds, got {args.block_time:g}")
    cls = Ganache if args.backend == "ganache" else Anvil
    process = cls(
        port=args.port,
        chain_id=args.chain_id,
        accounts=args.accounts,
        data_dir=args.data_dir,
        log_dir=args.log_dir,
        block_time=args.block_time,
    )
    process.start()
    try:
        print(f"{args.backend} listening on {process.rpc_url} (chain id {process.chain_id}); logs in {process.log_dir}")
        for i, account in enumerate(dev_accounts(min(args.accounts, 4))):
            print(f"  account {i}: {account.address}  (flchain dev-key {i} --out key{i}.hex)")
        print("Ctrl-C stops it.", flush=True)
        while process.running:
            time.sleep(0.5)
        print(f"{args.backend} exited; see {process.log_dir}", file=sys.stderr)
        return 1
    finally:
        process.stop()


def dev_key_command(args: argparse.Namespace) -> int:
    """Write development account ``index``'s private key (hex) to ``--out``, readable by its owner only."""
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
