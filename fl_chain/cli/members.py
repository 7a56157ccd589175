"""``flchain admit`` and ``flchain revoke``: the operator's consortium membership."""

from __future__ import annotations

import argparse

from fl_chain.cli.common import add_key, add_rpc, explained_reverts, load_account, open_coordinator
from fl_chain.errors import ConfigError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``admit`` and ``revoke``."""
    admit = commands.add_parser("admit", help="operator: admit accounts to the consortium")
    add_rpc(admit)
    add_key(admit)
    admit.add_argument("--deployment", default="deployment.json")
    admit.add_argument("accounts", nargs="+", help="addresses to admit")
    admit.set_defaults(func=admit_command)

    revoke = commands.add_parser(
        "revoke", help="operator: revoke an account and remove it from every open or running task"
    )
    add_rpc(revoke)
    add_key(revoke)
    revoke.add_argument("--deployment", default="deployment.json")
    revoke.add_argument("account", help="address to revoke")
    revoke.set_defaults(func=revoke_command)


def admit_command(args: argparse.Namespace) -> int:
    """Admit every address of ``accounts``."""
    from web3 import Web3

    for address in args.accounts:
        if not Web3.is_address(address):
            raise ConfigError(f"{address!r} is not an Ethereum address")
    account = load_account(args)
    coordinator = open_coordinator(args)
    with explained_reverts(coordinator):
        coordinator.admit(account, args.accounts)
    print(f"admitted {len(args.accounts)} account(s)")
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    """Revoke ``account`` and remove it from every open or running task it joined."""
    from web3 import Web3

    from fl_chain.chain.coordinator import TaskStatus

    if not Web3.is_address(args.account):
        raise ConfigError(f"{args.account!r} is not an Ethereum address")
    account = load_account(args)
    coordinator = open_coordinator(args)
    removed = []
    with explained_reverts(coordinator):
        coordinator.revoke(account, args.account)
        for task_id in range(1, coordinator.task_count() + 1):
            _, state = coordinator.get_task(task_id)
            if state.status in (TaskStatus.OPEN, TaskStatus.RUNNING) and coordinator.has_joined(task_id, args.account):
                coordinator.remove_participant(account, task_id, args.account)
                removed.append(str(task_id))
    print(f"revoked {args.account}; removed from task(s): {', '.join(removed) or 'none'}")
    return 0
