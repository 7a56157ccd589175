"""A federation's global model, from wherever it was read, exported to a file and checked."""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fl_chain.protocol.task import TaskConfig, TaskSpec
from fl_chain.training.export import export_model, task_model
from fl_chain.training.export_check import ExportCheck, check_export
from fl_chain.training.model_metadata import ModelMetadata
from fl_chain.training.predictors import load_predictor


@dataclass
class GlobalModel:
    """A global model and what is known of its origin.

    Attributes
    ----------
    spec:
        The task, whose [model] and [dataset] rebuild the architecture and give the test split.
    vector:
        The flat float32 model.
    task_id, round, model_cid:
        Its task, finalized round and model-manifest CID, ``None`` where the source does not say.
    federation_accuracy:
        The test accuracy the federation recorded for the round, if the source has one.
    chain_config:
        The task as the chain has it, for a model read from the chain: the task file must match it.
    """

    spec: TaskSpec
    vector: np.ndarray
    task_id: int | None = None
    round: int | None = None
    model_cid: str | None = None
    federation_accuracy: float | None = None
    #: The task as the chain has it: when set, the task file must be that task (manifest digest).
    chain_config: TaskConfig | None = None


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_global_model` wrote and how its check went."""

    files: list[Path]
    metadata: ModelMetadata
    check: ExportCheck


def export_global_model(
    model: GlobalModel, fmt: str, out: str | Path, *, data_path: str | Path | None = None
) -> ExportResult:
    """Rebuild the task's torch model with ``model``'s vector, write it as ``fmt`` to ``out``, load the
    file back and compare its predictions with torch's on the task's test split.

    Raises
    ------
    ConfigError
        If the task's model or data cannot be built, the vector does not fit, the task file is not the
        chain's task, or the file cannot be written.
    ExportCheckError
        If the file, loaded back, predicts unlike torch (logits beyond 1e-5 or another accuracy).
    """
    from fl_chain.training.torch_adapter import TorchAdapter

    built = task_model(model.spec, model.vector, data_path=data_path)
    if model.chain_config is not None and model.task_id is not None:
        model.spec.check_matches_chain(model.chain_config, built.initial, task_id=model.task_id)
    _, test_accuracy = TorchAdapter(built.module).evaluate(built.test)
    metadata = ModelMetadata(
        task_id=model.task_id,
        round=model.round,
        model_cid=model.model_cid,
        model_sha256=hashlib.sha256(np.asarray(model.vector, dtype="<f4").tobytes()).hexdigest(),
        federation_accuracy=model.federation_accuracy,
        test_accuracy=test_accuracy,
        architecture=built.architecture,
        dataset=str(model.spec.dataset["name"]),
        format=fmt,
        fl_chain_version=_version(),
    )
    files = export_model(built.module, metadata, fmt, out)
    check = check_export(load_predictor(files[0], fmt), built.module, built.test, fmt=fmt, dataset=metadata.dataset)
    return ExportResult(files, metadata, check)


def _version() -> str:
    try:
        return importlib.metadata.version("fl-chain")
    except importlib.metadata.PackageNotFoundError:
        return ""


__all__ = ["ExportResult", "GlobalModel", "export_global_model"]
