"""Benchmarks that print measured figures (see bench/README.md).

Each benchmark is a module run from the repository root, e.g. ``python -m bench.gas --help``;
``python -m bench.run_all`` runs them all and writes the report. A benchmark that runs parts of itself
in child processes starts them with :func:`module_command` and :func:`child_env`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

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


__all__ = ["ROOT", "child_env", "module_command"]
