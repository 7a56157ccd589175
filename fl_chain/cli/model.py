"""``flchain model get``: download a round's global model."""

from __future__ import annotations

import argparse

from fl_chain.cli.common import add_rpc, open_coordinator


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``model get``."""
    model = commands.add_parser("model", help="global models")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    get = model_commands.add_parser("get", help="download the global model of a round to a .npy file")
    add_rpc(get)
    get.add_argument("--deployment", default="deployment.json")
    get.add_argument("--task", type=int, required=True)
    get.add_argument("--round", type=int, help="a finalized round (default: the latest)")
    get.add_argument("--out", required=True, help="output .npy file")
    get.add_argument("--ipfs-dir", help="IPFS repo for the downloading peer (default: a temporary one)")
    get.add_argument("--timeout", type=float, default=60.0)
    get.set_defaults(func=model_get_command)


def model_get_command(args: argparse.Namespace) -> int:
    """Fetch and verify the global model of ``--round`` (default: the latest) and save it as .npy."""
    from fl_chain.exchange.download import download_global_model

    coordinator = open_coordinator(args)
    round_, path = download_global_model(
        coordinator, args.task, args.round, args.out, ipfs_dir=args.ipfs_dir, timeout=args.timeout
    )
    print(f"global model of task {args.task} round {round_} written to {path}")
    return 0
