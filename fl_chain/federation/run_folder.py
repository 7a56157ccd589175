"""What a simulation leaves in its run folder besides logs and node states.

``final-model.npy``, ``summary.json`` (the summary dict as it is), ``metrics.csv`` (one row per
round) and ``accuracy.png`` (test accuracy per finalized round, with the baselines if any).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from fl_chain.errors import ConfigError
from fl_chain.federation.records import RoundRecord
from fl_chain.protocol.task import TaskSpec
from fl_chain.training.global_model import GlobalModel


def save_final_model(out: Path, final: np.ndarray) -> None:
    """``final-model.npy``: written as soon as the federation ends, before any comparison runs."""
    np.save(out / "final-model.npy", final)


def read_final_model(out: str | Path) -> GlobalModel:
    """The final model of a run folder with its task, round, model CID and the accuracy the run recorded.

    Raises
    ------
    ConfigError
        If the folder has no ``summary.json`` and ``final-model.npy`` of a finished simulation.
    """
    out = Path(out)
    summary_path, model_path = out / "summary.json", out / "final-model.npy"
    if not summary_path.is_file() or not model_path.is_file():
        raise ConfigError(f"{out} is not a simulate run folder (no summary.json and final-model.npy)")
    try:
        summary = json.loads(summary_path.read_text())
        finalized = [r for r in summary["rounds"] if r["status"] == "finalized"]
        spec = TaskSpec.from_dict(summary["task"], origin=str(summary_path))
        vector = np.load(model_path, allow_pickle=False)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ConfigError(f"cannot read the run folder {out}: {exc}") from None
    last = finalized[-1] if finalized else {}
    return GlobalModel(
        spec=spec,
        vector=vector,
        task_id=summary.get("task_id"),
        round=last.get("round"),
        model_cid=last.get("global_model_cid"),
        federation_accuracy=last.get("test_accuracy"),
    )


def write_run_folder(
    out: Path,
    *,
    summary: dict[str, Any],
    records: Sequence[RoundRecord],
    title: str,
    baselines: dict[str, float] | None = None,
) -> None:
    """Write the summary, the per-round metrics and, if a round finalized, the accuracy plot."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    finalized = [r for r in records if r.status == "finalized"]
    if finalized:
        plot_accuracy(finalized, out / "accuracy.png", title=title, baselines=baselines)
    write_metrics_csv(records, out / "metrics.csv")


def write_metrics_csv(records: Sequence[RoundRecord], path: Path) -> None:
    """One row per round, the columns of :class:`RoundRecord`."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(RoundRecord)])
        writer.writeheader()
        for record in records:
            writer.writerow(asdict(record))


def plot_accuracy(
    records: Sequence[RoundRecord], path: Path, *, title: str, baselines: dict[str, float] | None = None
) -> None:
    """Test accuracy per finalized round, as a PNG, with optional horizontal baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    accuracy = [math.nan if r.test_accuracy is None else r.test_accuracy for r in records]  # a failed round: a gap
    axis.plot([r.round for r in records], accuracy, marker="o", label="fl-chain global model")
    for label, value in (baselines or {}).items():
        axis.axhline(value, linestyle="--", color="gray", label=f"{label} {value:.3f}")
    if baselines:
        axis.legend(loc="lower right")
    axis.set_xlabel("round")
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.set_ylabel("test accuracy")
    axis.set_ylim(0, 1)
    axis.grid(True, alpha=0.3)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


__all__ = ["plot_accuracy", "read_final_model", "save_final_model", "write_metrics_csv", "write_run_folder"]
