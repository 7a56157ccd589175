"""Local training for federated nodes: bundled datasets and their shards, seeded models, a torch adapter.

A model is exchanged as a flat little-endian float32 vector (see :class:`TorchAdapter`).
"""

from fl_chain.training.datasets import DATASETS, SHARD_SCHEMES, ArrayDataset, load_dataset, shard
from fl_chain.training.models import MODELS, build_model
from fl_chain.training.torch_adapter import TorchAdapter

__all__ = [
    "ArrayDataset",
    "DATASETS",
    "MODELS",
    "SHARD_SCHEMES",
    "TorchAdapter",
    "build_model",
    "load_dataset",
    "shard",
]
