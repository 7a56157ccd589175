"""Operator actions on tasks: create one from a task file, start it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from eth_account.signers.local import LocalAccount

from fl_chain.chain.coordinator import Coordinator
from fl_chain.protocol.task import TaskSpec
from fl_chain.protocol.vector import initial_model_digest
from fl_chain.training.trainer import TorchTrainer, Trainer


def initial_vector_for(
    spec: TaskSpec, trainer_factory: Callable[..., Trainer] | None = None, data_path: str | Path | None = None
) -> np.ndarray:
    """The task's initial model vector: what ``trainer_factory`` (default: the torch model of the
    task's [model] section, seeded) builds for the task's dataset, or for ``data_path`` (a sample of
    a site's csv data); only the data's shapes matter."""
    from fl_chain.errors import ConfigError
    from fl_chain.training.node_data import load_node_data

    if spec.dataset["name"] == "csv" and data_path is None and "path" not in spec.dataset:
        raise ConfigError(
            "a csv task's initial model is sized by the sites' data: pass --data with a sample file "
            "(same columns as the sites' files) or set path in [dataset]"
        )
    train, test = load_node_data(spec, 0, 1, data_path)
    return (trainer_factory or TorchTrainer)(spec, train, test).initial_vector()


def create_task(
    coordinator: Coordinator, operator: LocalAccount, spec: TaskSpec, *, initial: np.ndarray | None = None
) -> tuple[int, bytes]:
    """Create ``spec`` on chain with ``initial`` as its initial model (default:
    :func:`initial_vector_for`); returns the task id and its manifest digest."""
    vector = initial if initial is not None else initial_vector_for(spec)
    digest = spec.manifest_digest(initial_model_digest(vector, spec.protocol["partitions"]))
    task_id = coordinator.create_task(operator, spec.chain_config(digest))
    return task_id, digest
