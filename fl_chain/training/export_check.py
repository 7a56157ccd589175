"""An exported file, loaded back, must predict what the torch model it came from predicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fl_chain.errors import ExportCheckError

if TYPE_CHECKING:
    from torch import nn

    from fl_chain.training.datasets import ArrayDataset
    from fl_chain.training.predictors import Predictor

#: Largest difference between the file's logits and torch's that passes.
TOLERANCE = 1e-5


@dataclass(frozen=True)
class ExportCheck:
    """The file's predictions on the test split beside torch's."""

    fmt: str
    runtime: str
    dataset: str
    samples: int
    max_abs_diff: float
    accuracy: float
    torch_accuracy: float
    tolerance: float = TOLERANCE

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.accuracy == self.torch_accuracy

    def line(self) -> str:
        """One line for the terminal."""
        verdict = "ok" if self.ok else "FAILED"
        return (
            f"check {verdict}: {self.fmt} in {self.runtime} on {self.samples} {self.dataset} test samples: "
            f"max |logit - torch| {self.max_abs_diff:.1e} (<= {self.tolerance:.0e}), "
            f"accuracy {self.accuracy:.4f} (torch {self.torch_accuracy:.4f})"
        )


def torch_logits(module: nn.Module, features: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of ``module`` in eval mode, float32."""
    import torch

    module.eval()
    with torch.inference_mode():
        parts = [
            module(torch.from_numpy(features[i : i + batch_size])).numpy() for i in range(0, len(features), batch_size)
        ]
    return np.concatenate(parts).astype(np.float32, copy=False)


def check_export(predictor: Predictor, module: nn.Module, test: ArrayDataset, *, fmt: str, dataset: str) -> ExportCheck:
    """Compare ``predictor`` with ``module`` on every test sample; raise ExportCheckError if they differ.

    Raises
    ------
    ExportCheckError
        If a logit differs by more than :data:`TOLERANCE` or the accuracies differ.
    """
    features = np.ascontiguousarray(test.features.reshape(len(test), -1), dtype=np.float32)
    expected = torch_logits(module, features)
    got = np.concatenate([predictor.logits(features[i : i + 512]) for i in range(0, len(features), 512)])
    check = ExportCheck(
        fmt=fmt,
        runtime=predictor.runtime,
        dataset=dataset,
        samples=len(test),
        max_abs_diff=float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf"),
        accuracy=float(np.mean(got.argmax(axis=1) == test.labels)) if got.shape == expected.shape else 0.0,
        torch_accuracy=float(np.mean(expected.argmax(axis=1) == test.labels)),
    )
    if not check.ok:
        raise ExportCheckError(check.line())
    return check


__all__ = ["TOLERANCE", "ExportCheck", "check_export", "torch_logits"]
