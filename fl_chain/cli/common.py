"""What several commands share: the ``--rpc`` and ``--key`` options, opening them, and time-stamped output."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from fl_chain.chain.client import ChainClient
    from fl_chain.chain.coordinator import Coordinator


def add_rpc(parser: argparse.ArgumentParser) -> None:
    """The required ``--rpc`` option."""
    parser.add_argument("--rpc", required=True, help="JSON-RPC URL of the chain, e.g. http://127.0.0.1:8545")


def add_contract(parser: argparse.ArgumentParser) -> None:
    """Where the FLCoordinator is: ``--deployment`` (a deployment file) or ``--contract`` (its address)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--deployment", default="deployment.json", help="deployment file (default: deployment.json)")
    where.add_argument("--contract", help="the FLCoordinator's address, instead of a deployment file")


def add_key(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The ``--key`` and ``--password-file`` options of commands that sign transactions."""
    parser.add_argument("--key", required=required, help="hex private key file or JSON keystore")
    parser.add_argument("--password-file", help="keystore password file (or set FLCHAIN_KEY_PASSWORD)")


def load_account(args: argparse.Namespace) -> LocalAccount:
    """The account of ``--key`` (and ``--password-file``)."""
    from fl_chain.chain.keys import load_key, read_password_file

    password = read_password_file(args.password_file) if args.password_file else None
    return load_key(args.key, password)


def chain_client(url: str) -> ChainClient:
    """A client of the chain at ``url`` (ChainUnreachableError if nothing answers)."""
    from fl_chain.chain.backends import RemoteChain
    from fl_chain.chain.client import ChainClient

    return ChainClient(RemoteChain(url).w3)


def open_coordinator(args: argparse.Namespace) -> Coordinator:
    """The FLCoordinator of ``--contract`` (when the command has it and it is given), else of
    ``--deployment``, on the chain at ``--rpc``."""
    from fl_chain.chain.deployment import Deployment, open_deployment

    if getattr(args, "contract", None):
        from fl_chain.chain.coordinator import Coordinator

        return Coordinator.at(chain_client(args.rpc), args.contract)
    return open_deployment(chain_client(args.rpc), Deployment.read(args.deployment))


def stamped(message: str) -> None:
    """Print ``message`` after the wall-clock time."""
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


#: What to do about the contract's custom errors an operator command can meet, by error name; the
#: placeholders are the error's arguments and ``operator`` / ``pending`` (the contract's current and
#: offered operator).
REVERT_HINTS = {
    "FLCoordinatorUnauthorizedOperator": "{account} is not the operator ({operator}); pass the operator's --key",
    "FLCoordinatorNotPendingOperator": "the operator role was not offered to {account} (offered to: {pending}); "
    "the operator runs flchain operator transfer --to {account} first",
    "FLCoordinatorInvalidOperator": "the operator role cannot go to the zero address",
    "FLCoordinatorUnknownTask": "task {taskId} does not exist",
    "FLCoordinatorWrongTaskStatus": "task {taskId} is {status}: only an open or running task can be cancelled",
}
#: Hints of ``task start`` where they differ from :data:`REVERT_HINTS`.
START_HINTS = {
    "FLCoordinatorWrongTaskStatus": "task {taskId} is {status}: only an open task can be started",
    "FLCoordinatorNotEnoughParticipants": "task {taskId} has {joined} participant(s) and needs {required} "
    "to start; wait for more sites to join",
}


@contextmanager
def explained_reverts(coordinator: Coordinator, hints: dict[str, str] | None = None) -> Iterator[None]:
    """Add what to do to a :class:`~fl_chain.errors.ContractRevertError` of :data:`REVERT_HINTS`
    (or of ``hints``, which take precedence).

    The error stays the same class and keeps its name and arguments in its one-line message.
    """
    from fl_chain.errors import ContractRevertError

    try:
        yield
    except ContractRevertError as exc:
        hint = {**REVERT_HINTS, **(hints or {})}.get(exc.name)
        if hint is None:
            raise
        values = {k: str(v) for k, v in exc.arguments.items()}
        if "status" in exc.arguments:
            from fl_chain.chain.coordinator import TaskStatus

            values["status"] = TaskStatus(int(exc.arguments["status"])).name.lower()
        if "{operator}" in hint:
            values["operator"] = coordinator.operator()
        if "{pending}" in hint:
            values["pending"] = coordinator.pending_operator() or "nobody"
        exc.args = (f"{exc}: {hint.format(**values)}",)
        raise
