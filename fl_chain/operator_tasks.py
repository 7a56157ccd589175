"""Operator actions on tasks: create one from a task file, start it."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from fl_chain.chain.coordinator import Coordinator
from fl_chain.node.trainer import TorchTrainer, initial_model_digest
from fl_chain.task import TaskSpec


def initial_vector_for(spec: TaskSpec):  # type: ignore[no-untyped-def]
    """The task's initial model vector, built from the model spec and seed (no data needed beyond shapes)."""
    from fl_chain.training import load_dataset

    train, test = load_dataset(spec.dataset["name"], seed=int(spec.dataset.get("seed", 0)))
    return TorchTrainer(spec, train, test).initial_vector()


def create_task(coordinator: Coordinator, operator: LocalAccount, spec: TaskSpec) -> tuple[int, bytes]:
    """Create ``spec`` on chain; returns the task id and its manifest digest."""
    initial = initial_model_digest(initial_vector_for(spec), spec.protocol["partitions"])
    digest = spec.manifest_digest(initial)
    task_id = coordinator.create_task(operator, spec.chain_config(digest))
    return task_id, digest
