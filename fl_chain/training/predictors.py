"""Exported models loaded back for prediction: ONNX with onnxruntime, the other formats with torch.

A :class:`Predictor` maps a float32 batch ``[n, input_size]`` to logits ``[n, num_classes]`` and knows
its :class:`~fl_chain.training.model_metadata.ModelMetadata`. ``flchain model export`` checks every
file it writes through this module, and ``flchain serve`` answers with it.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fl_chain.errors import ConfigError
from fl_chain.training.export import INPUT_NAME, format_of
from fl_chain.training.extras import require
from fl_chain.training.model_metadata import METADATA_KEY, ModelMetadata, sidecar_path


class Predictor(Protocol):
    """What the server and the export check need from a loaded model."""

    metadata: ModelMetadata
    #: What runs it: ``"onnxruntime"`` or ``"torch"``.
    runtime: str

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """Logits ``[n, num_classes]`` (float32) of a float32 batch ``[n, input_size]``."""
        ...


class OnnxPredictor:
    """An ONNX file run by onnxruntime on the CPU (thread-safe: one session serves concurrent requests)."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        ort = require("onnxruntime", "running an ONNX model")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own classes (Fail, InvalidProtobuf, ...) derive from Exception only
            raise ConfigError(f"cannot load ONNX model {path}: {_first_line(exc)}") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ConfigError(f"{path} has no fl-chain metadata; export it with flchain model export")
        self.metadata = ModelMetadata.from_json(props[METADATA_KEY], origin=str(path))

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {INPUT_NAME: inputs})[0], dtype=np.float32)


class TorchPredictor:
    """A torch module (from safetensors, TorchScript or npz) run under ``torch.inference_mode``.

    torch's intra-op thread count is per calling thread (OpenMP's), and ``flchain serve`` predicts in
    its worker threads: each call sets it to ``threads`` in the thread that runs it. Left at its
    default (every core), a batch of 32 rows took 16 ms instead of 2.6 ms at the median on 2 busy cores
    (bench.serve, 2026-12-03).
    """

    runtime = "torch"

    def __init__(self, module: Any, metadata: ModelMetadata, *, threads: int = 1) -> None:
        self.module = module.eval()
        self.metadata = metadata
        self.threads = threads

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return self.module(torch.from_numpy(inputs)).numpy().astype(np.float32, copy=False)


def load_predictor(path: str | Path, fmt: str | None = None, *, threads: int = 1) -> Predictor:
    """The exported model at ``path`` (format from ``fmt`` or the suffix) ready to predict.

    Raises
    ------
    ConfigError
        If the file is missing, of an unknown format, unreadable, without fl-chain metadata, or
        its extra (onnxruntime, safetensors) is not installed.
    """
    path = Path(path)
    fmt = format_of(path, fmt)
    if not path.is_file():
        raise ConfigError(f"model file {path} not found")
    if fmt == "onnx":
        return OnnxPredictor(path, threads=threads)
    import torch

    torch.set_num_threads(threads)
    if fmt == "torchscript":
        return _load_torchscript(path, threads)
    if fmt == "safetensors":
        metadata, state = _read_safetensors(path)
    else:
        metadata, state = _read_npz(path)
    return TorchPredictor(_module(metadata, state, path), metadata, threads=threads)


def _load_torchscript(path: Path, threads: int) -> TorchPredictor:
    import torch

    extra = {f"{METADATA_KEY}.json": ""}
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; loading still works
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot load TorchScript model {path}: {_first_line(exc)}") from None
    text = extra[f"{METADATA_KEY}.json"]
    if not text:
        raise ConfigError(f"{path} has no fl-chain metadata; export it with flchain model export")
    return TorchPredictor(module, ModelMetadata.from_json(text, origin=str(path)), threads=threads)


def _read_safetensors(path: Path) -> tuple[ModelMetadata, dict[str, Any]]:
    require("safetensors", "loading a safetensors model")
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot load safetensors model {path}: {_first_line(exc)}") from None
    if METADATA_KEY not in header:
        raise ConfigError(f"{path} has no fl-chain metadata; export it with flchain model export")
    return ModelMetadata.from_json(header[METADATA_KEY], origin=str(path)), state


def _read_npz(path: Path) -> tuple[ModelMetadata, dict[str, Any]]:
    import torch

    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise ConfigError(f"{path} needs its metadata file {sidecar} (written by flchain model export)")
    metadata = ModelMetadata.from_json(sidecar.read_text(), origin=str(sidecar))
    try:
        with np.load(path, allow_pickle=False) as arrays:
            state = {name: torch.from_numpy(np.array(arrays[name])) for name in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"cannot load npz model {path}: {_first_line(exc)}") from None
    return metadata, state


def _module(metadata: ModelMetadata, state: dict[str, Any], path: Path) -> Any:
    from fl_chain.training.models import build_model

    arch = metadata.architecture
    module = build_model(
        arch["name"],
        input_shape=tuple(arch["input_shape"]),
        num_classes=int(arch["num_classes"]),
        seed=0,
        **dict(arch.get("options", {})),
    )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"{path} does not fit its metadata's {arch['name']}: {_first_line(exc)}") from None
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities of ``logits`` (float64 internally, stable for large logits)."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def describe(predictor: Predictor) -> dict[str, Any]:
    """The metadata as ``GET /metadata`` returns it, with the runtime."""
    return {**predictor.metadata.summary(), "runtime": predictor.runtime}


__all__ = ["OnnxPredictor", "Predictor", "TorchPredictor", "describe", "load_predictor", "softmax"]
