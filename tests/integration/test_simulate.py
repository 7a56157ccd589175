"""`flchain simulate`: the real contract and runtime in one process, with a complete run folder.

The command runs in the test process (:class:`tests.helpers.cli_runner.InProcessCli`, ``main(argv)``
as the console script calls it): a separate interpreter per case paid the imports of torch, web3,
scikit-learn and matplotlib again, about 13 s of CPU each, and none of these tests is about the
process. tests/unit/test_cli_smoke.py runs ``simulate`` through the real entry points.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_backend
from tests.helpers.cli_runner import InProcessCli

#: The repository root (``examples`` is importable from it).
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_simulate_writes_summary_metrics_and_final_model(tmp_path: Path, run_cli: InProcessCli) -> None:
    """4 nodes, 2 rounds: every round finalized with accuracy, CIDs and gas; the final model saved."""
    out = tmp_path / "run"
    result = run_cli("simulate", "--nodes", "4", "--rounds", "2", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["rounds"]] == ["finalized", "finalized"]
    assert all(0.0 < r["test_accuracy"] <= 1.0 and r["global_model_cid"].startswith("bafy") for r in summary["rounds"])
    assert all(0 < r["gas_used"] < 2_000_000 and r["bytes_moved"] > 0 for r in summary["rounds"])
    assert summary["final_accuracy"] == summary["rounds"][-1]["test_accuracy"]
    assert (out / "metrics.csv").read_text().count("\n") == 3
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = np.load(out / "final-model.npy")
    node_final = np.load(out / "nodes" / "node-3" / "task-1" / "final-model.npy")
    assert final.tobytes() == node_final.tobytes()
    assert list((out / "logs").glob("*/task-1/round-1.log"))
    from fl_chain.federation.simulate import default_chain

    assert summary["chain"] == default_chain()  # --chain auto: anvil where installed


def test_chain_auto_is_anvil_when_installed_else_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--chain auto`` (the default) picks anvil when its binary exists and falls back to py-evm."""
    from fl_chain.chain import anvil
    from fl_chain.federation.simulate import SimulationOptions

    options = SimulationOptions(nodes=2, out=tmp_path / "a", chain="auto")
    options.validate()
    assert options.chain == ("anvil" if anvil.ANVIL_BINARY.is_file() else "embedded")
    monkeypatch.setattr(anvil, "ANVIL_BINARY", tmp_path / "no-anvil")
    options = SimulationOptions(nodes=2, out=tmp_path / "b", chain="auto")
    options.validate()
    assert options.chain == "embedded"


def test_simulate_bad_option_is_one_line_error(tmp_path: Path, run_cli: InProcessCli) -> None:
    """An unknown dataset is named in one line with the valid ones, exit 2, no traceback."""
    result = run_cli("simulate", "--dataset", "imagenet", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "imagenet" in result.stderr and "digits" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_global_model_is_byte_identical_to_central_fedavg_of_the_same_clients(
    tmp_path: Path, run_cli: InProcessCli
) -> None:
    """4 nodes, 3 rounds through the contract and partitions == the same clients averaged in one process."""
    from fl_chain.federation.central import central_fedavg
    from fl_chain.protocol.task import TaskSpec

    # Prepare / Execute: a simulation through the CLI
    out = tmp_path / "run"
    result = run_cli("simulate", "--nodes", "4", "--rounds", "3", "--quiet", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["rounds"]] == ["finalized"] * 3
    # Execute: the reference, with the task and clients the summary names
    spec = TaskSpec.from_dict(summary["task"], origin="summary")
    central = central_fedavg(
        spec,
        accounts=summary["participants"],
        task_id=summary["task_id"],
        rounds=[r["round"] for r in summary["rounds"]],
    )
    # Assert: same bytes, and the accuracy the simulation reported for each round
    final = np.load(out / "final-model.npy")
    assert final.dtype == np.float32 and final.tobytes() == central[-1].global_vector.tobytes()
    for reference, record in zip(central, summary["rounds"]):
        assert reference.metrics["test_accuracy"] == record["test_accuracy"]


def test_simulate_secure_aggregation_equals_central_fedavg_within_the_quantization_bound(
    tmp_path: Path, run_cli: InProcessCli
) -> None:
    """--secure-aggregation: masked updates, the same model as the clients averaged in one process, within
    the fixed-point bound (n * 2^-(f+1) / total samples, plus a float32 rounding on each side)."""
    from fl_chain.federation.central import central_fedavg
    from fl_chain.privacy.fixed_point import quantization_bound
    from fl_chain.protocol.task import TaskSpec

    # Prepare / Execute
    out = tmp_path / "run"
    result = run_cli(
        "simulate", "--nodes", "3", "--rounds", "1", "--secure-aggregation", "--secagg-threshold", "2",
        "--chain", "embedded", "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "with secure aggregation (t=2" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["rounds"]] == ["finalized"]
    spec = TaskSpec.from_dict(summary["task"], origin="summary")
    assert spec.secure_aggregation is not None and spec.secure_aggregation.threshold == 2
    central = central_fedavg(spec, accounts=summary["participants"], task_id=summary["task_id"], rounds=[0])

    # Assert
    final = np.load(out / "final-model.npy").astype(np.float64)
    reference = central[0].global_vector
    total = sum(central[0].samples.values())
    bound = quantization_bound(3, spec.secagg_frac_bits) / total + 2 * np.spacing(np.abs(reference))
    assert np.all(np.abs(final - reference.astype(np.float64)) <= bound)


def test_simulate_compare_reports_parity_and_a_pooled_baseline(tmp_path: Path) -> None:
    """--compare replays the clients (identical every round) and trains on pooled data; both in the summary."""
    from fl_chain.cli import build_parser
    from fl_chain.federation.simulate import SimulationOptions, run_simulation, simulate_spec

    args = build_parser().parse_args(["simulate", "--nodes", "3", "--rounds", "2", "--partitions", "2"])
    summary = run_simulation(simulate_spec(args), SimulationOptions(nodes=3, out=tmp_path / "run", compare=True))
    assert summary["reference"]["comparable"] is True
    assert summary["reference"]["rounds_identical"] == summary["reference"]["rounds_compared"] == 2
    assert summary["reference"]["final_model_sha256"] == summary["final_model_sha256"]
    # rounds x local epochs
    assert summary["pooled"]["epochs"] == 2 * args.epochs and 0.5 < summary["pooled"]["test_accuracy"] <= 1.0


def test_simulate_refuses_a_run_folder_that_is_not_empty(tmp_path: Path, run_cli: InProcessCli) -> None:
    """Reusing a run folder would resume stale node state: one-line error, nothing touched."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("simulate", "--nodes", "2", "--rounds", "1", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2 and "not empty" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.process_chain
@pytest.mark.kubo
@pytest.mark.parametrize("chain", ["anvil"])
def test_simulate_on_a_chain_process_with_kubo_peers_gives_the_embedded_runs_model(tmp_path: Path, chain: str) -> None:
    """Same task on anvil + real IPFS peers and on the embedded chain + memory: same bytes (ganache
    runs the same client code; its own behaviour is checked by the contract tests and the ganache
    restart fault test, and this run took 40 s on it against 7 s on anvil)."""
    from fl_chain.cli import build_parser
    from fl_chain.federation.simulate import SimulationOptions, run_simulation, simulate_spec

    require_backend(chain)
    spec = simulate_spec(build_parser().parse_args(["simulate", "--nodes", "3", "--rounds", "2", "--partitions", "3"]))
    # Execute
    real = run_simulation(spec, SimulationOptions(nodes=3, out=tmp_path / chain, chain=chain, storage="kubo"))
    embedded = run_simulation(spec, SimulationOptions(nodes=3, out=tmp_path / "embedded"))
    # Assert: every round finalized, models moved between peers, identical final model and CIDs
    assert [r["status"] for r in real["rounds"]] == ["finalized", "finalized"]
    assert all(r["bytes_moved"] > 0 and r["gas_used"] > 0 for r in real["rounds"])
    assert real["final_model_sha256"] == embedded["final_model_sha256"]
    assert [r["global_model_cid"] for r in real["rounds"]] == [r["global_model_cid"] for r in embedded["rounds"]]


def test_simulate_with_a_user_numpy_client_matches_its_central_reference(tmp_path: Path, run_cli: InProcessCli) -> None:
    """--client plugs a Flower-style NumPyClient into every node; parity holds for it too."""
    out = tmp_path / "run"
    result = run_cli(
        *("simulate", "--nodes", "3", "--rounds", "2", "--quiet", "--compare"),
        *("--client", "examples.numpy_client:make_client", "--out", str(out)),
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"]["final_identical"] is True and summary["reference"]["rounds_identical"] == 2
    assert summary["final_accuracy"] > 0.8
    # The model is the client's (softmax regression: 64x10 weights + 10 biases), not the task's MLP
    assert np.load(out / "final-model.npy").size == 64 * 10 + 10


def test_simulate_on_a_csv_file_shards_it_across_nodes(tmp_path: Path) -> None:
    """--dataset csv --data FILE: a site-style table, split across the simulated nodes, learns."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    features = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    rows = [",".join([f"x{i}" for i in range(features.shape[1])] + ["diagnosis"])]
    rows += [",".join(f"{v:.6f}" for v in x) + f",{y}" for x, y in zip(features, data.target)]
    (tmp_path / "site.csv").write_text("\n".join(rows) + "\n")
    from fl_chain.cli import build_parser
    from fl_chain.federation.simulate import SimulationOptions, run_simulation, simulate_spec

    args = build_parser().parse_args(
        [
            "simulate",
            "--nodes",
            "3",
            "--rounds",
            "3",
            "--dataset",
            "csv",
            "--data",
            str(tmp_path / "site.csv"),
            "--label",
            "diagnosis",
            "--model",
            "logreg",
        ]
    )
    summary = run_simulation(simulate_spec(args), SimulationOptions(nodes=3, out=tmp_path / "run"))
    assert [r["status"] for r in summary["rounds"]] == ["finalized"] * 3
    assert summary["final_accuracy"] > 0.9
