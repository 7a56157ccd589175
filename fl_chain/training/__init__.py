"""Local training for federated nodes: datasets on local disk and their shards, seeded models, a torch adapter,
and Flower-style numpy clients for any other framework.

A model is exchanged as a flat little-endian float32 vector (see :class:`TorchAdapter` and
:class:`ClientTrainer`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fl_chain.errors import ConfigError
from fl_chain.protocol.catalog import MODELS
from fl_chain.training.datasets import (
    DATASET_OPTIONS,
    DATASETS,
    SHARD_SCHEMES,
    ArrayDataset,
    check_dataset_options,
    load_dataset,
    shard,
)
from fl_chain.training.numpy_client import (
    ClientTrainer,
    NumPyClient,
    NumPyClientError,
    SoftmaxRegressionClient,
    client_trainer_factory,
)
from fl_chain.training.plugins import load_client_factory

if TYPE_CHECKING:
    from fl_chain.training.models import build_model
    from fl_chain.training.torch_adapter import TorchAdapter

#: Names that need torch, imported on first use so that checking a task or the CLI never loads it.
_TORCH_NAMES = {"TorchAdapter": "fl_chain.training.torch_adapter", "build_model": "fl_chain.training.models"}


def __getattr__(name: str) -> Any:
    module = _TORCH_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise ConfigError(
            'the task\'s torch model needs torch: pip install "fl-chain[torch]" (or pass --client for a numpy client)'
        ) from exc


__all__ = [
    "DATASETS",
    "DATASET_OPTIONS",
    "MODELS",
    "SHARD_SCHEMES",
    "ArrayDataset",
    "ClientTrainer",
    "NumPyClient",
    "NumPyClientError",
    "SoftmaxRegressionClient",
    "TorchAdapter",
    "build_model",
    "check_dataset_options",
    "client_trainer_factory",
    "load_client_factory",
    "load_dataset",
    "shard",
]
