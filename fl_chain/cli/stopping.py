"""How a command stops on Ctrl-C (SIGINT) and SIGTERM.

The first signal raises :class:`Interrupted` in the main thread, so every ``finally`` runs: a node
closes its IPFS peer and logs and keeps its state directory, a chain process is stopped. The
process then exits ``128 + signal``: 130 after Ctrl-C, 143 after SIGTERM. A second signal while
that cleanup runs ends the process at once with the same status.

A running kubo peer does not take these signals away: :mod:`fl_chain.storage.libkubo` puts the
process's handlers back after the Go runtime installs its own.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

#: The signals that stop a command.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """The shell's status for a process ended by this signal: 130 (SIGINT) or 143 (SIGTERM)."""
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def stop_on_signals() -> None:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (a no-op elsewhere).

    Also when the process inherited SIGINT as ignored (a shell starts background jobs so): a node
    or chain started from a script must still stop when it, or its supervisor, is sent SIGINT.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        signal.signal(signum, _first_signal)


def ignore_stop_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on (main thread only): for a process whose command is done
    and whose exit status is decided, so that a stop arriving while the interpreter exits leaves
    that status alone. A Python handler would not do: the interpreter resets such handlers to the
    default (die of the signal: exit status -15) part-way through its exit, but keeps SIG_IGN.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _first_signal(signum: int, frame: FrameType | None) -> None:
    for other in STOP_SIGNALS:
        if signal.getsignal(other) == _first_signal:
            signal.signal(other, _second_signal)
    raise Interrupted(signum)


def _second_signal(signum: int, frame: FrameType | None) -> None:
    os.write(2, f"{signal.Signals(signum).name} again: stopping now, without cleanup\n".encode())
    os._exit(128 + signum)


__all__ = ["STOP_SIGNALS", "Interrupted", "ignore_stop_signals", "stop_on_signals"]
