"""Local training for a node: the task's model on the node's private data."""

from __future__ import annotations

import hashlib
from typing import Protocol

import numpy as np

from fl_chain.protocol.task import TaskSpec


class Trainer(Protocol):
    """What the node runtime needs from a training adapter."""

    def initial_vector(self) -> np.ndarray:
        """The task's initial model (identical on every node)."""

    def train(self, vector: np.ndarray, *, seed: int) -> tuple[np.ndarray, int, dict[str, float]]:
        """Train from ``vector``; returns the new vector, the sample count and metrics."""

    def evaluate(self, vector: np.ndarray) -> dict[str, float]:
        """Metrics of ``vector`` on the node's evaluation data."""


class TorchTrainer:
    """Trains the task's torch model on one node's dataset shard."""

    def __init__(self, spec: TaskSpec, train_set, test_set=None, *, threads: int | None = 1) -> None:
        from fl_chain.training import TorchAdapter, build_model

        self.spec = spec
        self.train_set = train_set
        self.test_set = test_set
        #: Samples :meth:`evaluate` measures on (a node publishes it with its evaluation).
        self.test_samples = len(test_set.labels) if test_set is not None else 0
        options = {k: v for k, v in spec.model.items() if k not in ("name", "seed", "num_classes")}
        input_shape = tuple(train_set.features.shape[1:])
        # The class count must be the same on every node: a skewed shard may lack some classes, so
        # take it from the task ([model], then [dataset]), else from the shared test split and the shard.
        labels = test_set.labels if test_set is not None else train_set.labels
        observed = max(int(labels.max()), int(train_set.labels.max())) + 1
        num_classes = int(spec.model.get("num_classes", spec.dataset.get("num_classes", observed)))
        model = build_model(
            spec.model["name"], input_shape=input_shape, num_classes=num_classes, seed=spec.model_seed, **options
        )
        self.adapter = TorchAdapter(model, threads=threads)
        self._initial = self.adapter.get_vector().copy()

    def initial_vector(self) -> np.ndarray:
        return self._initial.copy()

    def train(self, vector: np.ndarray, *, seed: int) -> tuple[np.ndarray, int, dict[str, float]]:
        self.adapter.set_vector(vector)
        t = self.spec.training
        samples = self.adapter.train(
            self.train_set,
            epochs=int(t["epochs"]),
            batch_size=int(t["batch_size"]),
            lr=float(t["lr"]),
            seed=seed,
            momentum=float(t.get("momentum", 0.0)),
            weight_decay=float(t.get("weight_decay", 0.0)),
        )
        loss, accuracy = self.adapter.evaluate(self.train_set)
        return self.adapter.get_vector().copy(), samples, {"train_loss": loss, "train_accuracy": accuracy}

    def evaluate(self, vector: np.ndarray) -> dict[str, float]:
        if self.test_set is None:
            return {}
        self.adapter.set_vector(vector)
        loss, accuracy = self.adapter.evaluate(self.test_set)
        return {"test_loss": loss, "test_accuracy": accuracy}


def training_seed(model_seed: int, task_id: int, round_: int, account: str) -> int:
    """Seed of one node's local training in one round (reproducible after a restart)."""
    material = f"{model_seed}/{task_id}/{round_}/{account.lower()}".encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:4], "little")
