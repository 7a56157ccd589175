"""Our reference FedAvg against Flower's ``flwr.server.strategy.aggregate.aggregate`` on the same updates.

Flower computes ``sum(n_i * x_i) / sum(n_i)`` layer by layer in the dtype it is given, adding in list
order. Given float64 layers in our canonical order it performs exactly our canonical sequence of
float64 operations, so after the single rounding to float32 the bytes must be identical. Given the
float32 layers themselves it rounds after every step, so it may differ in the last bits; that
difference is bounded here, to show what a Flower deployment would see.
"""

from __future__ import annotations

import numpy as np
import pytest

from fl_chain.aggregation import Contribution, FedAvg
from fl_chain.aggregation.reference import reference_fedavg
from fl_chain.protocol.task import TaskSpec
from fl_chain.training.trainer import TorchTrainer, training_seed

aggregate = pytest.importorskip("flwr.server.strategy.aggregate", reason="pip install -e '.[test]' (flwr)").aggregate

SHAPES = [(64, 32), (32,), (32, 10), (10,)]


def _layers(vector: np.ndarray) -> list[np.ndarray]:
    """Split a flat vector into Flower-style layer arrays."""
    out, offset = [], 0
    for shape in SHAPES:
        size = int(np.prod(shape))
        out.append(vector[offset : offset + size].reshape(shape))
        offset += size
    return out


def _flower_fedavg(updates: list[tuple[str, int, np.ndarray]], dtype: type) -> np.ndarray:
    ordered = sorted(updates, key=lambda u: u[0].lower())
    results = [([layer.astype(dtype) for layer in _layers(vector)], samples) for _, samples, vector in ordered]
    return np.concatenate([layer.ravel() for layer in aggregate(results)]).astype(np.float32)


def _trained_updates(nodes: int = 4) -> list[tuple[str, int, np.ndarray]]:
    """Real local updates: 4 digits clients, one epoch each from the same initial MLP."""
    from fl_chain.chain.keys import dev_accounts
    from fl_chain.training.node_data import load_node_data

    spec = TaskSpec.from_dict(
        {
            "model": {"name": "mlp", "hidden": 32, "seed": 3},
            "dataset": {"name": "digits", "split": "dirichlet", "alpha": 0.5},
        }
    )
    updates = []
    for i, account in enumerate(dev_accounts(nodes)):
        train, test = load_node_data(spec, i, nodes)
        trainer = TorchTrainer(spec, train, test)
        vector, samples, _ = trainer.train(trainer.initial_vector(), seed=training_seed(3, 1, 0, account.address))
        updates.append((account.address, samples, vector))
    assert sum(int(np.prod(s)) for s in SHAPES) == updates[0][2].size
    return updates


def test_reference_fedavg_equals_flower_aggregate_byte_for_byte_on_trained_updates() -> None:
    # Prepare
    updates = _trained_updates()
    # Execute
    ours = reference_fedavg(updates)
    flower = _flower_fedavg(updates, np.float64)
    # Assert: identical bytes, and the partitioned strategy agrees too
    assert ours.tobytes() == flower.tobytes()
    partitioned = np.concatenate(
        [
            FedAvg().aggregate([Contribution(a, n, v[lo:hi]) for a, n, v in updates])
            for lo, hi in ((0, 1000), (1000, ours.size))
        ]
    )
    assert partitioned.tobytes() == ours.tobytes()


def test_reference_fedavg_equals_flower_aggregate_on_random_updates_with_skewed_weights() -> None:
    # Prepare: wide dynamic range and sample counts from 1 to 10^6
    rng = np.random.default_rng(7)
    size = int(sum(np.prod(s) for s in SHAPES))
    updates = [
        (
            f"0x{rng.integers(2**63):040x}",
            int(rng.integers(1, 10**6)),
            (rng.standard_normal(size) * 10.0 ** rng.integers(-6, 6)).astype(np.float32),
        )
        for _ in range(9)
    ]
    # Execute / Assert
    assert reference_fedavg(updates).tobytes() == _flower_fedavg(updates, np.float64).tobytes()


def test_flower_on_float32_layers_is_close_to_the_canonical_result_but_not_the_definition() -> None:
    # Prepare
    updates = _trained_updates()
    # Execute
    ours = reference_fedavg(updates)
    flower32 = _flower_fedavg(updates, np.float32)
    # Assert: close (float32 rounding at every step, cancellation near zero), which is why fl-chain
    # defines FedAvg in float64: every honest node must produce the same bytes
    np.testing.assert_allclose(flower32, ours, rtol=1e-5, atol=1e-6 * float(np.abs(ours).max()))
