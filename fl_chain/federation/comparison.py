"""``flchain simulate --compare``: the same clients replayed with central FedAvg, and a pooled-data model.

The replay (:func:`fl_chain.federation.central.central_fedavg`) must give every finalized round's
global model byte for byte; the pooled model is the centralized baseline a federation aims at.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from fl_chain.federation.display import SimulationDisplay
from fl_chain.federation.records import RoundRecord
from fl_chain.protocol.task import TaskSpec
from fl_chain.training.trainer import Trainer


def compare_with_baselines(
    spec: TaskSpec,
    summary: dict[str, Any],
    records: Sequence[RoundRecord],
    global_hashes: dict[int, str],
    *,
    nodes: int,
    trainer_factory: Callable[..., Trainer] | None,
    display: SimulationDisplay,
) -> dict[str, Any]:
    """The summary's ``reference`` (central FedAvg replay) and ``pooled`` (centralized model) entries."""
    from fl_chain.federation.central import central_fedavg, train_pooled

    finalized = [r for r in records if r.status == "finalized"]
    reference: dict[str, Any]
    if spec.strategy["name"] != "fedavg":
        reference = {"comparable": False, "reason": "the reference is plain FedAvg; run with --strategy fedavg"}
    elif spec.differential_privacy:
        reference = {"comparable": False, "reason": "the reference is plain FedAvg, without DP clipping and noise"}
    elif spec.secure_aggregation is not None:
        reference = {
            "comparable": False,
            "reason": "secure aggregation averages clipped fixed-point updates (equal within its quantization bound)",
        }
    elif any(r.contributors != nodes for r in finalized):
        reference = {"comparable": False, "reason": "a round finalized without every node's update"}
    else:
        display.message(f"replaying the same {nodes} clients with central FedAvg for comparison")
        central = central_fedavg(
            spec,
            accounts=summary["participants"],
            task_id=summary["task_id"],
            rounds=[r.round for r in finalized],
            trainer_factory=trainer_factory,
        )
        identical = [
            hashlib.sha256(c.global_vector.tobytes()).hexdigest() == global_hashes.get(c.round) for c in central
        ]
        final = central[-1].global_vector if central else None
        reference = {
            "comparable": True,
            "rounds_compared": len(central),
            "rounds_identical": sum(identical),
            "final_identical": bool(identical and identical[-1]),
            "final_accuracy": central[-1].metrics.get("test_accuracy") if central else None,
            "final_model_sha256": hashlib.sha256(final.tobytes()).hexdigest() if final is not None else None,
        }
    epochs = max(len(finalized) * int(spec.training["epochs"]), 1)
    display.message(f"training a centralized model on the pooled data ({epochs} epochs)")
    pooled = train_pooled(spec, nodes=nodes, epochs=epochs)
    return {"reference": reference, "pooled": {"epochs": epochs, **pooled}}


__all__ = ["compare_with_baselines"]
