"""How ``flchain`` processes end on SIGINT / SIGTERM once their command is done."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A program whose command installs the stop handlers, then returns 0; while the interpreter exits
# (an atexit callback), SIGTERM arrives, as when a supervisor stops a node that is just exiting.
_EXITING = textwrap.dedent(
    """
    import atexit, os, signal, time
    import fl_chain.cli as cli
    from fl_chain.cli.stopping import stop_on_signals

    def command():
        stop_on_signals()
        atexit.register(lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(0.3), print("exit went on")))
        return 0

    cli.main = command
    cli.run()
    """
)


def test_a_stop_signal_while_the_process_exits_leaves_the_commands_exit_status() -> None:
    """The command returned 0: SIGTERM during the interpreter's exit neither kills the process
    (-15) nor raises Interrupted in its exit; the process exits 0."""
    command = [sys.executable, "-c", _EXITING]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "exit went on" in result.stdout
    assert "Interrupted" not in result.stderr and "Traceback" not in result.stderr, result.stderr
