"""Benchmarks that print measured figures (see bench/README.md).

Each benchmark is a module run from the repository root, e.g. ``python -m bench.gas --help``;
``python -m bench.run_all`` runs them all and writes the report. A benchmark that runs parts of itself
in child processes starts them with :func:`module_command` and :func:`child_env`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

#: The repository root (``bench`` and ``tests`` are imported from it).
ROOT = Path(__file__).resolve().parents[1]


def module_command(module: str, *args: str) -> list[str]:
    """The command line that runs ``bench.<module>`` in a child Python with ``args``."""
    return [sys.executable, "-m", f"bench.{module}", *args]


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the repository root first on ``PYTHONPATH``,
    so that a child started by :func:`module_command` imports ``bench`` whatever its working directory."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def end_processes(processes: Iterable[subprocess.Popen[Any]], logs: Iterable[IO[Any]] = ()) -> None:
    """End the still-running ``processes`` this benchmark started (SIGTERM, then SIGKILL after 10 s),
    by their pids, and close their ``logs``."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    for log in logs:
        log.close()


def save_result(result: Any, output: Path) -> None:
    """Write a benchmark's ``result`` as JSON to ``output`` (its folder made) and say where."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    print(f"wrote {output}")


__all__ = ["ROOT", "child_env", "end_processes", "module_command", "save_result"]
