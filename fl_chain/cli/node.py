"""``flchain node``: a participant node until its task ends."""

from __future__ import annotations

import argparse

from fl_chain.cli.common import add_key, add_rpc, stamped
from fl_chain.cli.simulate import CLIENT_HELP


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``node``."""
    node = commands.add_parser("node", help="run a participant node until its task ends")
    add_rpc(node)
    add_key(node)
    node.add_argument("--deployment", default="deployment.json")
    node.add_argument("--task-file", required=True, help="the task's TOML (checked against the chain)")
    node.add_argument("--task", type=int, help="task id (default: the first open or running task not finished here)")
    node.add_argument("--state-dir", required=True, help="this node's state directory (resumes after a restart)")
    node.add_argument("--shard", type=int, default=0, help="this node's shard of the task's dataset (default 0)")
    node.add_argument(
        "--shards", type=int, default=1, help="number of shards the dataset is split into (default 1: all)"
    )
    node.add_argument("--data", help="this site's own data: a csv file (used whole), or the fashion_mnist directory")
    node.add_argument("--client", help=CLIENT_HELP)
    node.add_argument("--storage", default="kubo", choices=["kubo", "memory"])
    node.add_argument("--ipfs-port", type=int, default=0, help="IPFS swarm port on 127.0.0.1 (0: any free port)")
    node.add_argument("--poll-interval", type=float, default=0.5)
    node.add_argument("--fetch-timeout", type=float, default=20.0)
    node.add_argument(
        "--linger", type=float, help="seconds to keep serving blobs after the task ends (default: aggregation duration)"
    )
    node.set_defaults(func=node_command)


def node_command(args: argparse.Namespace) -> int:
    """Run the node; Ctrl-C or SIGTERM stops it (its IPFS peer and logs closed, its state kept)."""
    from fl_chain.node.launch import NodeArgs, run_node

    return run_node(NodeArgs.from_options(args), report=stamped)
