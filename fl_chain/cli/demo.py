"""``flchain demo``: contract rounds with stand-in digests."""

from __future__ import annotations

import argparse

from fl_chain.errors import ConfigError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo``."""
    demo = commands.add_parser("demo", help="run contract rounds with stand-in digests on a chain")
    demo.add_argument("--chain", default="embedded", help="embedded (default), ganache or anvil")
    demo.add_argument("--participants", type=int, default=4)
    demo.add_argument("--partitions", type=int, default=4)
    demo.add_argument("--replication", type=int, default=2)
    demo.add_argument("--quorum", type=int, default=2)
    demo.add_argument("--rounds", type=int, default=3)
    demo.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    """Run the demo rounds and count the finalized and retried ones."""
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
