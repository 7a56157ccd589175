"""A global model as a file other tools load: ONNX, safetensors, TorchScript or npz, with its metadata.

:func:`task_model` rebuilds the task's torch module from the spec exactly as the nodes build it and
loads the flat vector into it; :func:`export_model` writes one format. ONNX goes through torch's
``torch.export``-based exporter (``onnx`` and ``onnxscript``), safetensors through ``safetensors``:
both in the ``serve`` extra, imported here only when that format is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fl_chain.errors import ConfigError
from fl_chain.protocol.task import TaskSpec
from fl_chain.training.extras import require
from fl_chain.training.model_metadata import METADATA_KEY, ModelMetadata, sidecar_path

if TYPE_CHECKING:
    from torch import nn

    from fl_chain.training.datasets import ArrayDataset

#: The formats ``flchain model export`` writes, and the file suffix each is known by.
EXPORT_FORMATS: dict[str, tuple[str, ...]] = {
    "onnx": (".onnx",),
    "safetensors": (".safetensors",),
    "torchscript": (".pt", ".ts", ".torchscript"),
    "npz": (".npz",),
}

#: Name of the model's input and output in ONNX and in the server's schema.
INPUT_NAME, OUTPUT_NAME = "inputs", "logits"


@dataclass
class TaskModel:
    """The task's torch module holding a global model, and the task's test split."""

    module: nn.Module
    test: ArrayDataset
    architecture: dict[str, Any]
    #: The task's initial model, as every node builds it (for the check against the chain).
    initial: np.ndarray


def format_of(path: str | Path, given: str | None = None) -> str:
    """``given`` if set (checked), else the format ``path``'s suffix names; ConfigError if neither does."""
    if given is not None:
        if given not in EXPORT_FORMATS:
            raise ConfigError(f"unknown model format {given!r}; use one of {', '.join(EXPORT_FORMATS)}")
        return given
    suffix = Path(path).suffix.lower()
    for name, suffixes in EXPORT_FORMATS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for suffixes in EXPORT_FORMATS.values() for s in suffixes)
    raise ConfigError(f"cannot tell the model format of {path} from its suffix; use one of {known} (or --format)")


def task_model(spec: TaskSpec, vector: np.ndarray, *, data_path: str | Path | None = None) -> TaskModel:
    """The task's model, built as every node builds it (:class:`~fl_chain.training.trainer.TorchTrainer`),
    holding ``vector``, in eval mode, with the task's test split.

    Raises
    ------
    ConfigError
        If the task's model is not a built-in torch model, the data cannot be loaded, or ``vector``
        does not have the model's parameter count.
    """
    from fl_chain.protocol.catalog import MODELS
    from fl_chain.training.node_data import load_node_data
    from fl_chain.training.trainer import TorchTrainer

    if spec.model.get("name") not in MODELS:
        raise ConfigError(
            f"only the built-in torch models ({', '.join(MODELS)}) can be exported; the task has "
            f"{spec.model.get('name')!r}"
        )
    train, test = load_node_data(spec, 0, 1, data_path)
    trainer = TorchTrainer(spec, train, test, threads=None)
    if np.asarray(vector).shape != (trainer.adapter.dimension,):
        raise ConfigError(
            f"the model has {np.asarray(vector).size} parameters but the task's {spec.model['name']} has "
            f"{trainer.adapter.dimension}: the model file is not this task's"
        )
    initial = trainer.initial_vector()
    trainer.adapter.set_vector(vector)
    module = trainer.adapter.model.eval()
    options = {k: v for k, v in spec.model.items() if k not in ("name", "seed", "num_classes")}
    import torch

    with torch.no_grad():
        num_classes = int(module(torch.from_numpy(test.features[:1])).shape[1])
    architecture = {
        "name": spec.model["name"],
        "options": options,
        "input_shape": [int(d) for d in test.features.shape[1:]],
        "num_classes": num_classes,
    }
    return TaskModel(module, test, architecture, initial)


def export_model(module: nn.Module, metadata: ModelMetadata, fmt: str, out: str | Path) -> list[Path]:
    """Write ``module`` with ``metadata`` to ``out`` in ``fmt``; returns the files written (npz: and its sidecar).

    Raises
    ------
    ConfigError
        For an unknown format, a missing extra, or a file that cannot be written.
    """
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ConfigError(f"unknown model format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        writer(module.eval(), metadata, partial)
        os.replace(partial, out)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    written = [out]
    if fmt == "npz":
        sidecar = sidecar_path(out)
        sidecar.write_text(metadata.to_json() + "\n")
        written.append(sidecar)
    return written


def _example(metadata: ModelMetadata) -> Any:
    import torch

    return torch.zeros(2, metadata.input_size, dtype=torch.float32)


def _write_onnx(module: nn.Module, metadata: ModelMetadata, path: Path) -> None:
    onnx = require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")
    import torch

    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (_example(metadata),),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            verbose=False,
        )
    if program is None:  # only the legacy exporter (dynamo=False) returns None
        raise ConfigError("torch.onnx.export returned no program; is torch older than 2.5?")
    proto = program.model_proto
    proto.doc_string = f"fl-chain global model of task {metadata.task_id} round {metadata.round}"
    for key, value in _flat_metadata(metadata).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(path))


def _write_safetensors(module: nn.Module, metadata: ModelMetadata, path: Path) -> None:
    require("safetensors", "safetensors export")
    from safetensors.torch import save_file

    tensors = {name: t.detach().contiguous() for name, t in module.state_dict().items()}
    save_file(tensors, str(path), metadata=_flat_metadata(metadata))


def _write_torchscript(module: nn.Module, metadata: ModelMetadata, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, _example(metadata))
        torch.jit.save(traced, str(path), _extra_files={f"{METADATA_KEY}.json": metadata.to_json()})


def _write_npz(module: nn.Module, metadata: ModelMetadata, path: Path) -> None:
    arrays = {name: t.detach().cpu().numpy() for name, t in module.state_dict().items()}
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


_WRITERS = {
    "onnx": _write_onnx,
    "safetensors": _write_safetensors,
    "torchscript": _write_torchscript,
    "npz": _write_npz,
}


def _flat_metadata(metadata: ModelMetadata) -> dict[str, str]:
    """String key/value pairs: the whole JSON under :data:`METADATA_KEY`, and the origin readable at a glance."""
    flat = {METADATA_KEY: metadata.to_json()}
    for key in ("task_id", "round", "model_cid", "model_sha256", "federation_accuracy", "test_accuracy"):
        value = getattr(metadata, key)
        if value is not None:
            flat[f"{METADATA_KEY}.{key}"] = str(value)
    return flat


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.onnx's exporter logs optional registrations (torchvision ops) and deprecations: not ours to show."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


__all__ = ["EXPORT_FORMATS", "INPUT_NAME", "OUTPUT_NAME", "TaskModel", "export_model", "format_of", "task_model"]
