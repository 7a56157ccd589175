"""``flchain operator transfer`` and ``flchain operator accept``: hand the operator role over in two steps.

The operator offers the role to an account (``transferOperator``); it becomes the operator only when
that account takes it (``acceptOperator``), so a mistyped address never ends up holding the role.
Until then the current operator stays in charge and may offer it to another account instead.
"""

from __future__ import annotations

import argparse

from fl_chain.cli.common import add_key, add_rpc, explained_reverts, load_account, open_coordinator
from fl_chain.errors import ConfigError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``operator transfer`` and ``operator accept``."""
    operator = commands.add_parser("operator", help="operator: hand the operator role to another account")
    operator_commands = operator.add_subparsers(dest="operator_command", required=True)
    transfer = operator_commands.add_parser(
        "transfer", help="offer the operator role to an account (it takes it with operator accept)"
    )
    add_rpc(transfer)
    add_key(transfer)
    transfer.add_argument("--deployment", default="deployment.json")
    transfer.add_argument("--to", required=True, help="address of the next operator")
    transfer.set_defaults(func=operator_transfer_command)

    accept = operator_commands.add_parser("accept", help="take the operator role offered to --key's account")
    add_rpc(accept)
    add_key(accept)
    accept.add_argument("--deployment", default="deployment.json")
    accept.set_defaults(func=operator_accept_command)


def operator_transfer_command(args: argparse.Namespace) -> int:
    """Offer the operator role to ``--to``."""
    from web3 import Web3

    if not Web3.is_address(args.to):
        raise ConfigError(f"--to {args.to!r} is not an Ethereum address")
    account = load_account(args)
    coordinator = open_coordinator(args)
    with explained_reverts(coordinator):
        coordinator.transfer_operator(account, args.to)
    print(
        f"offered the operator role of {coordinator.address} to {Web3.to_checksum_address(args.to)}; "
        f"{account.address} stays operator until that account runs flchain operator accept"
    )
    return 0


def operator_accept_command(args: argparse.Namespace) -> int:
    """Take the operator role offered to ``--key``'s account."""
    account = load_account(args)
    coordinator = open_coordinator(args)
    previous = coordinator.operator()
    with explained_reverts(coordinator):
        coordinator.accept_operator(account)
    print(f"{account.address} is now the operator of {coordinator.address} (was {previous})")
    return 0
