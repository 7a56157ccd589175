"""Run ``flchain`` inside the test process: ``fl_chain.cli.main(argv)`` as the console script runs it.

Starting ``python -m fl_chain.cli`` per case costs seconds of imports (web3, torch); calling ``main``
costs them once per test session. What a separate process gives for free is reproduced per call:
the working directory, no ``FLCHAIN_DEBUG`` or ``FLCHAIN_KEY_PASSWORD`` in the environment, the exit
status (returned or raised as ``SystemExit``), an uncaught exception printed as a traceback with
status 1, log records that reach no handler printed on stderr (``logging.lastResort``, as in a
fresh interpreter), and afterwards the SIGINT and SIGTERM handlers and every logger as they were.
tests/unit/test_cli_smoke.py runs each command once through the real entry points.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from fl_chain.cli import main

#: Environment variables a user's shell may hold that change what the CLI does.
CLI_ENVIRONMENT = ("FLCHAIN_DEBUG", "FLCHAIN_KEY_PASSWORD")


@dataclass(frozen=True)
class CliResult:
    """What a ``flchain`` run left: exit status and everything it printed."""

    returncode: int
    stdout: str
    stderr: str


class InProcessCli:
    """``flchain`` arguments in, a :class:`CliResult` out; one per test (it uses the test's fixtures)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self._capsys = capsys
        self._monkeypatch = monkeypatch
        for name in CLI_ENVIRONMENT:
            monkeypatch.delenv(name, raising=False)

    def __call__(self, *args: str, cwd: Path) -> CliResult:
        """Run ``flchain *args`` in ``cwd``."""
        self._monkeypatch.chdir(cwd)
        self._capsys.readouterr()  # only this run's output below
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        loggers = _LoggerState()
        logging.getLogger().handlers = []  # as in a fresh interpreter: unhandled records go to lastResort
        try:
            returncode = main(list(args))
        except SystemExit as exc:
            returncode = _exit_status(exc.code)
        except Exception:  # noqa: BLE001  (what the interpreter does with any uncaught exception)
            traceback.print_exc()
            returncode = 1
        finally:
            loggers.restore()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        out, err = self._capsys.readouterr()
        return CliResult(returncode, out, err)


def _exit_status(code: object) -> int:
    """The process exit status of ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


class _LoggerState:
    """Level and handlers of the root logger and every logger that exists; ``restore`` puts them back
    and closes handlers added since (the node's log files)."""

    def __init__(self) -> None:
        self._saved = {logger: (logger.level, list(logger.handlers)) for logger in _loggers()}

    def restore(self) -> None:
        for logger in _loggers():
            level, handlers = self._saved.get(logger, (logging.NOTSET, []))
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.setLevel(level)
            logger.handlers = handlers


def _loggers() -> list[logging.Logger]:
    existing = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(logger for logger in existing if isinstance(logger, logging.Logger))]


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """Exit status 2, a single ``error:`` line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
