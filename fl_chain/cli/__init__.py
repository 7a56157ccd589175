"""The ``flchain`` command line.

One module per command group registers its subcommands and sets ``func`` to the function that runs
them; :func:`main` parses and calls ``args.func(args)``. Command modules import the chain client,
torch or kubo inside their functions, so ``flchain --help`` and option errors stay fast.

Every failure fl-chain anticipates is an :class:`~fl_chain.errors.FLChainError`; the CLI prints its
one-line message to stderr and exits with status 2. Nothing else prints a traceback unless
``FLCHAIN_DEBUG=1`` is set. Ctrl-C and SIGTERM stop any command after its cleanup, with status 130
and 143 (see :mod:`fl_chain.cli.stopping`).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence

from fl_chain import __version__
from fl_chain.cli import (
    audit,
    chain,
    dashboard,
    demo,
    deploy,
    members,
    model,
    node,
    operator,
    serve,
    simulate,
    status,
    task,
)
from fl_chain.cli.stopping import Interrupted, ignore_stop_signals, stop_on_signals
from fl_chain.errors import FLChainError

EXIT_USAGE_OR_INPUT = 2
EXIT_INTERRUPTED = 130

#: Command groups in the order ``flchain --help`` lists their commands.
_GROUPS = (demo, simulate, chain, deploy, members, operator, status, task, node, model, audit, serve, dashboard)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``flchain`` subcommand; each parsed command has ``func``."""
    parser = argparse.ArgumentParser(prog="flchain", description="Aggregator-free federated learning on a chain.")
    parser.add_argument("--version", action="version", version=f"fl-chain {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in _GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``flchain``; returns the process exit status.

    Usage errors exit through argparse (``SystemExit(2)``); an :class:`FLChainError` prints
    ``error: <message>`` and returns 2; Ctrl-C returns 130 and SIGTERM 143, after the command's cleanup.
    """
    args = build_parser().parse_args(argv)
    stop_on_signals()
    try:
        return args.func(args)
    except FLChainError as exc:
        if os.environ.get("FLCHAIN_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE_OR_INPUT
    except Interrupted as stop:
        print(f"interrupted by {stop.signal_name}; stopped cleanly", file=sys.stderr)
        return stop.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """The ``flchain`` program: :func:`main`, then exit with its status.

    Before the interpreter exits, every object left is frozen out of the garbage collector: its
    final full collection over torch's and web3's objects would otherwise add seconds to the exit
    of every command, also after Ctrl-C or SIGTERM (files are still flushed and closed). Once
    :func:`main` returned, its status stands: a stop signal during the interpreter's exit is ignored
    (see :func:`~fl_chain.cli.stopping.ignore_stop_signals`).
    """
    try:
        status = main()
    finally:
        gc.freeze()
    ignore_stop_signals()
    sys.exit(status)


__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE_OR_INPUT", "build_parser", "main", "run"]
