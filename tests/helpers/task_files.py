"""Task files for tests and benchmarks: one small digits task, built from sections, written as TOML.

Every section but ``[protocol]`` has a default (the task most tests run): an MLP with 16 hidden units
and seed 11 on IID digits, one epoch of SGD with batch 16 and lr 0.1, FedAvg, no ``[security]``
section. A section passed replaces its default whole (no merge), so what a caller passes is all of
that section::

    write_task_file(
        tmp_path / "task.toml",
        protocol={"rounds": 1, "partitions": 4, "replication": 2, "quorum": 2, "min_contributors": 2},
        model={"name": "logreg", "seed": 11},
    )

The TOML is written here (flat sections of int, float, str and bool only), so it needs no package.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Required, TypedDict, Unpack

#: A value a task file section holds.
Scalar = int | float | str | bool
#: One ``[section]`` of a task file: key -> value.
Section = Mapping[str, Scalar]

DEFAULT_MODEL: dict[str, Scalar] = {"name": "mlp", "hidden": 16, "seed": 11}
DEFAULT_DATASET: dict[str, Scalar] = {"name": "digits", "split": "iid"}
DEFAULT_TRAINING: dict[str, Scalar] = {"epochs": 1, "batch_size": 16, "lr": 0.1}
DEFAULT_STRATEGY: dict[str, Scalar] = {"name": "fedavg"}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class TaskSections(TypedDict, total=False):
    """The sections of a task file; ``None`` or left out means the default (``security``: none)."""

    protocol: Required[Section]
    model: Section | None
    dataset: Section | None
    training: Section | None
    strategy: Section | None
    security: Section | None
    privacy: Section | None


def task_sections(
    *,
    protocol: Section,
    model: Section | None = None,
    dataset: Section | None = None,
    training: Section | None = None,
    strategy: Section | None = None,
    security: Section | None = None,
    privacy: Section | None = None,
) -> dict[str, dict[str, Scalar]]:
    """The task as ``TaskSpec.from_dict`` takes it: each section given, or its default.

    Parameters
    ----------
    protocol
        The ``[protocol]`` section (no default: every caller sets its own sizes and timing).
    model, dataset, training, strategy
        Replace the default section whole; ``None`` keeps the default.
    security
        The ``[security]`` section; ``None`` leaves it out (the task's own default then applies).
    privacy
        The ``[privacy]`` section; ``None`` leaves it out (no privacy mechanism).
    """
    sections = {
        "protocol": dict(protocol),
        "model": dict(DEFAULT_MODEL if model is None else model),
        "dataset": dict(DEFAULT_DATASET if dataset is None else dataset),
        "training": dict(DEFAULT_TRAINING if training is None else training),
        "strategy": dict(DEFAULT_STRATEGY if strategy is None else strategy),
    }
    if security is not None:
        sections["security"] = dict(security)
    if privacy is not None:
        sections["privacy"] = dict(privacy)
    return sections


def task_toml(**sections: Unpack[TaskSections]) -> str:
    """The task file's text for ``sections`` (as :func:`task_sections` takes them)."""
    blocks = []
    for name, section in task_sections(**sections).items():
        lines = [f"[{name}]", *(f"{_key(key)} = {_value(value)}" for key, value in section.items())]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def write_task_file(path: Path, **sections: Unpack[TaskSections]) -> Path:
    """Write :func:`task_toml` of ``sections`` to ``path``; returns ``path``."""
    path.write_text(task_toml(**sections))
    return path


def _key(key: str) -> str:
    if not _BARE_KEY.fullmatch(key):
        raise ValueError(f"task file key {key!r} is not a bare TOML key: use letters, digits, _ and -")
    return key


def _value(value: Scalar) -> str:
    """``value`` as a TOML value (bool before int: ``True`` is an int too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # always has a '.' or an exponent, so it reads back as a float
    if isinstance(value, str):
        return '"' + "".join(_escaped(char) for char in value) + '"'
    raise TypeError(f"task file value {value!r} is a {type(value).__name__}: use an int, float, str or bool")


def _escaped(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04x}"
    return char
