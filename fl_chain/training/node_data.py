"""A node's share of the task's data and the trainer it trains with, from the task spec and its options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fl_chain.errors import ConfigError
from fl_chain.protocol.task import TaskSpec
from fl_chain.training.trainer import TorchTrainer, Trainer

if TYPE_CHECKING:
    from fl_chain.training.datasets import ArrayDataset


def load_node_data(
    spec: TaskSpec, shard: int, shards: int, data_path: str | Path | None = None
) -> tuple[ArrayDataset, ArrayDataset]:
    """This node's training data and test split of the task's dataset.

    Parameters
    ----------
    spec:
        The task; its [dataset] section names the dataset, its options, and the shard split.
    shard, shards:
        This node's shard of the task dataset's train split, ``0 <= shard < shards``.
    data_path:
        This site's own data, overriding the task's ``path`` option. For ``csv``: the site's private
        file, used whole (its train split, not a shard of it; ``shard`` and ``shards`` are ignored)
        with a test split of the same file. For ``fashion_mnist``: the directory of the files, sharded
        as usual. ``None``: the task's dataset as it is, sharded.

    Raises
    ------
    ConfigError
        For a shard out of range, a ``data_path`` for a dataset that takes none, or bad data.
    """
    from fl_chain.training import DATASET_OPTIONS, load_dataset
    from fl_chain.training import shard as make_shard

    name = spec.dataset["name"]
    seed = int(spec.dataset.get("seed", 0))
    options = {k: v for k, v in spec.dataset.items() if k in DATASET_OPTIONS.get(name, ())}
    if data_path is not None:
        if "path" not in DATASET_OPTIONS.get(name, ()):
            raise ConfigError(f"dataset {name!r} ships with scikit-learn and takes no data path; leave it out")
        options["path"] = str(data_path)
        if name == "csv":
            return load_dataset(name, seed=seed, **options)
    if not 0 <= shard < shards:
        raise ConfigError(f"--shard must be in 0..{shards - 1}, got {shard}")
    train, test = load_dataset(name, seed=seed, **options)
    part = make_shard(
        train,
        shard,
        shards,
        seed=seed,
        scheme=spec.dataset.get("split", "iid"),
        alpha=float(spec.dataset.get("alpha", 0.5)),
    )
    return part, test


def trainer_factory(client: str | None, *, threads: int | None = 1) -> Callable[..., Trainer]:
    """What builds the node's trainer from ``(spec, train, test)``: the user's Flower-style client
    ``module:callable`` wrapped in a ClientTrainer, or the task's torch model."""
    if client is not None:
        from fl_chain.training import client_trainer_factory, load_client_factory

        return client_trainer_factory(load_client_factory(client))
    return lambda spec, train, test: TorchTrainer(spec, train, test, threads=threads)


__all__ = ["load_node_data", "trainer_factory"]
