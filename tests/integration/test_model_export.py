"""``flchain model export``: a real simulate run's global model in every format, loaded back, predicts as torch.

One simulation (2 nodes, 2 rounds, the embedded chain) gives the model; the CLI runs in this process.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fl_chain.protocol.task import TaskSpec
from fl_chain.training.export import task_model
from fl_chain.training.export_check import torch_logits
from fl_chain.training.predictors import load_predictor
from tests.helpers.cli_runner import InProcessCli, assert_one_line_error
from tests.helpers.serving import simulate_run
from tests.helpers.task_files import write_task_file

SUFFIXES = {"onnx": ".onnx", "safetensors": ".safetensors", "torchscript": ".pt", "npz": ".npz"}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_run(tmp_path_factory.mktemp("export") / "run")


@pytest.fixture(scope="module")
def summary(run_folder: Path) -> dict:
    return json.loads((run_folder / "summary.json").read_text())


@pytest.mark.parametrize("fmt", list(SUFFIXES))
def test_export_every_format_loads_back_and_predicts_as_torch_on_the_test_split(
    fmt: str, run_folder: Path, summary: dict, tmp_path: Path, run_cli: InProcessCli
) -> None:
    """Each format, reloaded (ONNX in onnxruntime), gives torch's logits within 1e-5 and torch's accuracy,
    which is the accuracy the federation recorded for the final round."""
    # Execute
    out = tmp_path / f"model{SUFFIXES[fmt]}"
    result = run_cli("model", "export", "--run", str(run_folder), "--format", fmt, "--out", str(out), cwd=tmp_path)

    # Assert: the two printed lines
    assert result.returncode == 0, result.stderr
    exported, check = result.stdout.strip().splitlines()
    assert exported.startswith(f"task {summary['task_id']} round 1 (mlp,") and f"exported as {fmt}" in exported
    assert check.startswith("check ok:") and "359 digits test samples" in check

    # Assert: independently of the CLI, the file against torch
    spec = TaskSpec.from_dict(summary["task"])
    built = task_model(spec, np.load(run_folder / "final-model.npy"))
    predictor = load_predictor(out)
    features = built.test.features.astype(np.float32)
    expected, got = torch_logits(built.module, features), predictor.logits(features)
    assert np.max(np.abs(got - expected)) <= 1e-5
    accuracy = float(np.mean(got.argmax(axis=1) == built.test.labels))
    assert accuracy == float(np.mean(expected.argmax(axis=1) == built.test.labels))
    assert accuracy == pytest.approx(summary["final_accuracy"], abs=1e-12)
    assert predictor.runtime == ("onnxruntime" if fmt == "onnx" else "torch")


@pytest.mark.parametrize("fmt", list(SUFFIXES))
def test_export_carries_task_round_cid_digest_and_accuracy(
    fmt: str, run_folder: Path, summary: dict, tmp_path: Path, run_cli: InProcessCli
) -> None:
    """The metadata (in the file, or the npz's sidecar) names the task, round, model CID and sha256 and the
    federation's accuracy, as the run folder has them."""
    out = tmp_path / f"model{SUFFIXES[fmt]}"
    assert run_cli("model", "export", "--run", str(run_folder), "--out", str(out), cwd=tmp_path).returncode == 0

    meta = load_predictor(out).metadata

    last = summary["rounds"][-1]
    assert (meta.task_id, meta.round, meta.model_cid) == (summary["task_id"], last["round"], last["global_model_cid"])
    assert meta.model_sha256 == summary["final_model_sha256"]
    assert meta.federation_accuracy == summary["final_accuracy"] == meta.test_accuracy
    assert meta.architecture == {"name": "mlp", "options": {"hidden": 32}, "input_shape": [64], "num_classes": 10}
    assert (out.parent / "model.npz.json").is_file() == (fmt == "npz")


def test_onnx_metadata_props_are_readable_with_onnx_alone(run_folder: Path, summary: dict, tmp_path: Path) -> None:
    """Any ONNX tool sees the origin as plain metadata_props."""
    import onnx

    from fl_chain.training.export import export_model

    built = task_model(TaskSpec.from_dict(summary["task"]), np.load(run_folder / "final-model.npy"))
    out = tmp_path / "m.onnx"
    from fl_chain.training.model_metadata import ModelMetadata

    meta = ModelMetadata(1, 1, "bafy-x", "ab" * 32, 0.5, 0.5, built.architecture, "digits", "onnx")
    export_model(built.module, meta, "onnx", out)

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["fl_chain.task_id"] == "1" and props["fl_chain.model_cid"] == "bafy-x"
    assert json.loads(props["fl_chain"])["model_sha256"] == "ab" * 32


def test_export_from_a_vector_and_its_task_file(
    run_folder: Path, summary: dict, tmp_path: Path, run_cli: InProcessCli
) -> None:
    """--model final-model.npy --task-file task.toml: the same model, origin as given on the command line."""
    task = write_task_file(tmp_path / "task.toml", **summary["task"])
    out = tmp_path / "m.onnx"
    result = run_cli(
        "model", "export", "--model", str(run_folder / "final-model.npy"), "--task-file", str(task),
        "--task", "1", "--round", "1", "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "check ok" in result.stdout
    meta = load_predictor(out).metadata
    assert (meta.task_id, meta.round, meta.model_cid, meta.federation_accuracy) == (1, 1, None, None)
    assert meta.test_accuracy == summary["final_accuracy"]


def test_export_bad_input_is_a_one_line_error(
    run_folder: Path, summary: dict, tmp_path: Path, run_cli: InProcessCli
) -> None:
    """Missing sources, two sources, an unknown suffix, a vector of another task: exit 2, one line, no traceback."""
    model = str(run_folder / "final-model.npy")
    other = write_task_file(tmp_path / "other.toml", **{**summary["task"], "model": {"name": "mlp", "hidden": 8}})
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 3), dtype=np.float32))
    cases = [
        (("--out", "m.onnx"), "exactly one source"),
        (("--run", str(run_folder), "--model", model, "--out", "m.onnx"), "exactly one source"),
        (("--run", str(tmp_path / "nothing"), "--out", "m.onnx"), "not a simulate run folder"),
        (("--run", str(run_folder), "--out", "m.bin"), "suffix"),
        (("--model", model, "--out", "m.onnx"), "--task-file"),
        (("--model", model, "--task-file", str(other), "--out", "m.onnx"), "not this task's"),
        (("--model", str(wrong), "--task-file", str(other), "--out", "m.onnx"), "not a flat float model vector"),
        (("--model", str(tmp_path / "none.npy"), "--task-file", str(other), "--out", "m.onnx"), "not found"),
    ]
    for args, fragment in cases:
        assert_one_line_error(run_cli("model", "export", *args, cwd=tmp_path), fragment)
    assert not list(tmp_path.glob("m.*"))
