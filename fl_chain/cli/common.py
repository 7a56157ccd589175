"""What several commands share: the ``--rpc`` and ``--key`` options, opening them, and time-stamped output."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from fl_chain.chain.client import ChainClient
    from fl_chain.chain.coordinator import Coordinator


def add_rpc(parser: argparse.ArgumentParser) -> None:
    """The required ``--rpc`` option."""
    parser.add_argument("--rpc", required=True, help="JSON-RPC URL of the chain, e.g. http://127.0.0.1:8545")


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
    """The FLCoordinator of ``--deployment`` on the chain at ``--rpc``."""
    from fl_chain.chain.deployment import Deployment, open_deployment

    return open_deployment(chain_client(args.rpc), Deployment.read(args.deployment))


def stamped(message: str) -> None:
    """Print ``message`` after the wall-clock time."""
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)
