"""``flchain deploy``: deploy FLCoordinator and write the deployment file."""

from __future__ import annotations

import argparse

from fl_chain.cli.common import add_key, add_rpc, chain_client, load_account


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``deploy``."""
    deploy = commands.add_parser("deploy", help="deploy FLCoordinator and write a deployment file")
    add_rpc(deploy)
    add_key(deploy)
    deploy.add_argument("--out", default="deployment.json", help="deployment file to write")
    deploy.set_defaults(func=deploy_command)


def deploy_command(args: argparse.Namespace) -> int:
    """Deploy with ``--key`` and write the deployment file ``--out``."""
    from fl_chain.chain.deployment import deploy

    account = load_account(args)
    client = chain_client(args.rpc)
    coordinator, deployment = deploy(client, account)
    path = deployment.write(args.out)
    print(f"FLCoordinator deployed at {coordinator.address} (chain id {deployment.chain_id}, block {deployment.block})")
    print(f"deployment file: {path}")
    return 0
