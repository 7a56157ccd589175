"""The names a task file may use: models, datasets and their options, shard schemes.

Pure data and checks, no torch and no data access, so a task file is checked without loading either;
``fl_chain.training`` implements exactly these names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from fl_chain.errors import ConfigError

#: Model architectures a task may name (built by ``fl_chain.training.build_model``).
MODELS: tuple[str, ...] = ("logreg", "mlp", "cnn")

#: Datasets a task may name (loaded by ``fl_chain.training.load_dataset``).
DATASETS: tuple[str, ...] = ("digits", "breast_cancer", "fashion_mnist", "csv")
#: Options each dataset accepts as keyword arguments of :func:`load_dataset` (and in a task's [dataset]).
DATASET_OPTIONS: dict[str, tuple[str, ...]] = {
    "digits": (),
    "breast_cancer": (),
    "fashion_mnist": ("path",),
    "csv": ("label", "num_classes", "path", "standardize"),
}
#: How the train split is cut into shards.
SHARD_SCHEMES: tuple[str, ...] = ("iid", "dirichlet", "quantity")


def check_dataset_options(name: str, options: Mapping[str, Any]) -> None:
    """Check the options of dataset ``name`` without reading any data.

    Raises
    ------
    ConfigError
        For an unknown dataset or option, or an option of the wrong type or range.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    known = DATASET_OPTIONS[name]
    unknown = sorted(set(options) - set(known))
    if unknown:
        accepted = ", ".join(known) if known else "none"
        raise ConfigError(f"dataset {name!r} got unknown option(s) {', '.join(unknown)}; accepted: {accepted}")
    path = options.get("path")
    if path is not None and (not isinstance(path, (str, os.PathLike)) or not str(path)):
        raise ConfigError(f"dataset {name!r} option path must be a non-empty path string; got {path!r}")
    label = options.get("label", "label")
    if not isinstance(label, str) or not label.strip():
        raise ConfigError(f"dataset {name!r} option label must be a column name; got {label!r}")
    num_classes = options.get("num_classes")
    if num_classes is not None and (type(num_classes) is not int or num_classes < 2):
        raise ConfigError(f"dataset {name!r} option num_classes must be an integer >= 2; got {num_classes!r}")
    if not isinstance(options.get("standardize", False), bool):
        raise ConfigError(f"dataset {name!r} option standardize must be true or false; got {options['standardize']!r}")


__all__ = ["DATASETS", "DATASET_OPTIONS", "MODELS", "SHARD_SCHEMES", "check_dataset_options"]
