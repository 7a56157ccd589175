"""Centralized baselines for a simulated federation: the same clients averaged in one process, and
one model trained on the pooled data.

:func:`central_fedavg` is the parity reference. It builds the same N clients as
``flchain simulate`` (same shards, same initial model, same per-round training seeds) and averages
their whole update vectors with plain weighted FedAvg
(:func:`~fl_chain.aggregation.reference.reference_fedavg`) -- no chain, no partitions, no storage.
Its global models must equal the federation's byte for byte; any difference is a bug in the
decentralized path.

:func:`train_pooled` is the accuracy baseline a consortium gives up on by not pooling its data: one
model trained on the union of every node's shard for as many epochs as the federation's rounds
times local epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from fl_chain.aggregation.reference import reference_fedavg
from fl_chain.protocol.task import TaskSpec
from fl_chain.training.trainer import TorchTrainer, Trainer, training_seed

#: Builds a client's trainer from ``(spec, train_set, test_set)``, as ``build_federation`` does.
TrainerFactory = Callable[..., Trainer]


@dataclass
class CentralRound:
    """One round of the centralized FedAvg reference."""

    round: int
    global_vector: np.ndarray
    samples: dict[str, int]
    metrics: dict[str, float]


def central_fedavg(
    spec: TaskSpec,
    *,
    accounts: Sequence[str],
    task_id: int,
    rounds: Sequence[int],
    trainer_factory: TrainerFactory | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[CentralRound]:
    """Train the federation's clients in one process and average them with weighted FedAvg.

    Parameters
    ----------
    spec:
        The task; client ``i`` trains on shard ``i`` of ``len(accounts)`` of its dataset.
    accounts:
        Client addresses in node order (they seed local training and order the average).
    task_id:
        The federation's task id (it seeds local training).
    rounds:
        The round numbers to replay, in order (a federation's failed rounds are skipped: their
        numbers are not reused, and training seeds depend on them).
    trainer_factory:
        Builds each client's trainer; :class:`~fl_chain.training.trainer.TorchTrainer` by default.
    progress:
        Called with ``(done, total)`` after each round.

    Returns
    -------
    list[CentralRound]
        One entry per round: the float32 global vector after it, each client's sample count and
        the test metrics of the global model.
    """
    from fl_chain.training.node_data import load_node_data

    factory = trainer_factory or TorchTrainer
    clients: list[Trainer] = []
    for i in range(len(accounts)):
        train, test = load_node_data(spec, i, len(accounts))
        clients.append(factory(spec, train, test))
    vector = clients[0].initial_vector()
    history: list[CentralRound] = []
    for done, round_ in enumerate(rounds, start=1):
        updates: list[tuple[str, int, np.ndarray]] = []
        for account, client in zip(accounts, clients):
            seed = training_seed(spec.model_seed, task_id, round_, account)
            update, samples, _ = client.train(vector, seed=seed)
            updates.append((account, samples, update))
        vector = reference_fedavg(updates)
        history.append(
            CentralRound(
                round=round_,
                global_vector=vector,
                samples={account: samples for account, samples, _ in updates},
                metrics=clients[0].evaluate(vector),
            )
        )
        if progress is not None:
            progress(done, len(rounds))
    return history


def train_pooled(spec: TaskSpec, *, nodes: int, epochs: int) -> dict[str, float]:
    """Test metrics of one model trained on the union of all ``nodes`` shards.

    The model starts from the task's initial model and trains ``epochs`` epochs with the task's
    batch size and learning rate; ``rounds * local epochs`` gives it as many passes over the data
    as the federation made.
    """
    from fl_chain.training import ArrayDataset
    from fl_chain.training.node_data import load_node_data

    shards = [load_node_data(spec, i, nodes) for i in range(nodes)]
    pooled = ArrayDataset(
        np.concatenate([train.features for train, _ in shards]), np.concatenate([train.labels for train, _ in shards])
    )
    test = shards[0][1]
    pooled_spec = replace(spec, training={**spec.training, "epochs": int(epochs)})
    trainer = TorchTrainer(pooled_spec, pooled, test)
    vector, _, _ = trainer.train(trainer.initial_vector(), seed=spec.model_seed)
    return trainer.evaluate(vector)
