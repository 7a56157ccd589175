"""Optional dependencies of exporting and serving models, imported on first use with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from fl_chain.errors import ConfigError

#: The command that installs what ``flchain model export`` and ``flchain serve`` need.
SERVE_HINT = 'pip install "fl-chain[serve]"'


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise ConfigError saying that ``purpose`` needs the ``serve`` extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or module.split(".")[0] != exc.name.split(".")[0]:
            raise
        raise ConfigError(f"{purpose} needs {exc.name}: {SERVE_HINT}") from None


__all__ = ["SERVE_HINT", "require"]
