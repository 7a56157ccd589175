"""A user-written client factory: the model is numpy softmax regression, not the task's torch model.

Run from the repository root (the current directory is searched for the module)::

    flchain simulate --nodes 4 --rounds 5 --client examples.numpy_client:make_client

Every node calls ``make_client(spec, train, test)`` with the task, its own training shard and the
shared test split, and trains whatever it returns. Any object with Flower's three ``NumPyClient``
methods works (a ``flwr.client.NumPyClient`` subclass too)::

    get_parameters(config) -> list[np.ndarray]
    fit(parameters, config) -> (list[np.ndarray], num_examples, metrics)
    evaluate(parameters, config) -> (loss, num_examples, {"accuracy": ...})

``config`` holds the task's ``[training]`` values (``epochs``, ``batch_size``, ``lr``, ...) and, in
``fit``, the round's ``seed``: train with it and every rerun gives byte-identical updates. The
initial parameters must be the same on every node, so seed them from the task (``spec.model_seed``).
"""

from __future__ import annotations

from fl_chain.protocol.task import TaskSpec
from fl_chain.training import ArrayDataset, NumPyClient, SoftmaxRegressionClient


def make_client(spec: TaskSpec, train: ArrayDataset, test: ArrayDataset | None) -> NumPyClient:
    """Softmax regression over every class of the task, initialized from the task's model seed."""
    labels = [int(train.labels.max())] + ([int(test.labels.max())] if test is not None else [])
    # A skewed shard may lack some classes: take the count from the task, else the shared test split.
    num_classes = int(spec.model.get("num_classes", max(labels) + 1))
    return SoftmaxRegressionClient(train, test, num_classes=num_classes, seed=spec.model_seed)
