"""What an exported model says about itself: where it came from and how to rebuild its architecture.

Pure: a dataclass and its JSON. The exporters embed it (ONNX ``metadata_props``, safetensors metadata,
a TorchScript extra file) or write it beside the file (npz: ``FILE.json``); the server reads it back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fl_chain.errors import ConfigError

#: Key of the JSON in ONNX ``metadata_props`` and safetensors metadata, and the TorchScript extra file's name.
METADATA_KEY = "fl_chain"


@dataclass(frozen=True)
class ModelMetadata:
    """An exported global model's origin and architecture.

    Attributes
    ----------
    task_id, round:
        The task on chain and the finalized round whose global model this is (``None`` if unknown).
    model_cid:
        CID of the round's model manifest, rebuilt from the final partition digests on chain
        (``None`` for a model read from a file without its run folder).
    model_sha256:
        sha256 of the flat little-endian float32 vector.
    federation_accuracy:
        Test accuracy the federation recorded for this round (a simulation's run folder); ``None`` if
        the source does not say.
    test_accuracy:
        Accuracy measured at export on the task's test split, with torch.
    architecture:
        ``name`` (``logreg``, ``mlp``, ``cnn``), ``options``, ``input_shape``, ``num_classes``: what
        :func:`~fl_chain.training.models.build_model` needs.
    dataset:
        The task's dataset name (inputs are its features, scaled as it scales them).
    """

    task_id: int | None
    round: int | None
    model_cid: str | None
    model_sha256: str
    federation_accuracy: float | None
    test_accuracy: float | None
    architecture: dict[str, Any]
    dataset: str
    format: str = ""
    fl_chain_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        """Features per row of a prediction request."""
        size = 1
        for dim in self.architecture["input_shape"]:
            size *= int(dim)
        return size

    @property
    def num_classes(self) -> int:
        return int(self.architecture["num_classes"])

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, origin: str) -> ModelMetadata:
        """Parse what :meth:`to_json` wrote; ConfigError naming ``origin`` if it is not that."""
        try:
            data = json.loads(text)
            metadata = cls(**data)
            int(metadata.architecture["num_classes"])
            [int(d) for d in metadata.architecture["input_shape"]]
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{origin}: not fl-chain model metadata ({exc})") from None
        return metadata

    def summary(self) -> dict[str, Any]:
        """What ``GET /metadata`` shows."""
        data = asdict(self)
        data["accuracy"] = self.federation_accuracy if self.federation_accuracy is not None else self.test_accuracy
        return data


def sidecar_path(path: str | Path) -> Path:
    """The metadata file beside an export whose format cannot hold it: ``model.npz`` -> ``model.npz.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


__all__ = ["METADATA_KEY", "ModelMetadata", "sidecar_path"]
