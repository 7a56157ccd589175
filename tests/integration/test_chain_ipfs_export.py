"""From the chain and IPFS only: ``flchain model export --rpc ... --task ...`` and ``flchain audit`` on a real network.

One local network (anvil, 3 ``flchain node`` processes, each with its own key, data shard and kubo
peer) runs a 2-round task and lingers, its peers serving their blobs. The commands run in this
process, each with its own kubo peer, which finds the nodes' peers by the multiaddrs on chain.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain.coordinator import TaskStatus
from fl_chain.federation.localnet import LocalNetwork
from fl_chain.node.state import final_model_file
from fl_chain.protocol.task import TaskSpec
from fl_chain.training.export import task_model
from fl_chain.training.export_check import torch_logits
from fl_chain.training.predictors import load_predictor
from tests.conftest import require_backend
from tests.helpers.cli_runner import InProcessCli
from tests.helpers.task_files import write_task_file

pytestmark = [pytest.mark.kubo, pytest.mark.process_chain, pytest.mark.integration]

ROUNDS = 2


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """A finished 3-node task whose nodes linger (serving blobs) while the module's tests run."""
    require_backend("anvil")
    root = tmp_path_factory.mktemp("chain-ipfs")
    task_file = write_task_file(
        root / "task.toml",
        protocol={
            "rounds": ROUNDS,
            "partitions": 2,
            "replication": 2,
            "quorum": 2,
            "min_contributors": 2,
            "update_duration": 120,
            "aggregation_duration": 60,
        },
    )
    with LocalNetwork(
        root / "net",
        nodes=3,
        task_file=task_file,
        chain="anvil",
        block_time=0.2,
        poll_interval=0.2,
        linger=600,
        report=lambda message: None,
    ) as net:
        net.start()
        assert net.follow(timeout=600) == TaskStatus.COMPLETED
        deadline = time.monotonic() + 120
        while not all(net.has_final_model(i) for i in range(3)) and time.monotonic() < deadline:
            time.sleep(0.5)
        yield net


def chain_args(net: LocalNetwork) -> tuple[str, ...]:
    return ("--rpc", str(net.chain.rpc_url), "--deployment", str(net.deployment_file), "--task", str(net.task_id))


def test_model_export_from_chain_and_ipfs_gives_onnx_equal_to_torch_within_1e5(
    network: LocalNetwork, tmp_path: Path, run_cli: InProcessCli
) -> None:
    """The latest round's global model, fetched from the nodes' kubo peers by its final digests, exported
    as ONNX: onnxruntime's logits on the task's test split equal torch's within 1e-5, same accuracy, and
    the model is the one every node ended with."""
    # Execute
    out = tmp_path / "model.onnx"
    result = run_cli(
        "model", "export", *chain_args(network), "--task-file", str(network.task_file), "--out", str(out), cwd=tmp_path
    )

    # Assert: the command's own check
    latest = network.coordinator.get_task(network.task_id)[1].latest_finalized_round
    assert result.returncode == 0, result.stderr
    exported, check = result.stdout.strip().splitlines()
    assert exported.startswith(f"task {network.task_id} round {latest} (mlp,") and "exported as onnx" in exported
    assert check.startswith("check ok:")

    # Assert: independently, the file against torch on the node's final model
    final = np.load(final_model_file(network.nodes[0].state_dir, network.task_id))
    built = task_model(TaskSpec.from_toml(network.task_file), final)
    predictor = load_predictor(out)
    features = built.test.features.astype(np.float32)
    expected, got = torch_logits(built.module, features), predictor.logits(features)
    assert predictor.runtime == "onnxruntime"
    assert np.max(np.abs(got - expected)) <= 1e-5
    assert np.mean(got.argmax(axis=1) == built.test.labels) == np.mean(expected.argmax(axis=1) == built.test.labels)
    assert predictor.metadata.round == latest and predictor.metadata.task_id == network.task_id


def test_audit_against_the_nodes_kubo_peers_says_every_round_equal(
    network: LocalNetwork, tmp_path: Path, run_cli: InProcessCli
) -> None:
    """Every finalized round equal (a round retried on a loaded machine is listed as failed, with its reason)."""
    result = run_cli("audit", *chain_args(network), "--task-file", str(network.task_file), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    *rounds, summary = result.stdout.splitlines()
    assert [line for line in rounds if ": equal" in line] == [
        line for line in rounds if not line.split(": ")[1].startswith("failed")
    ]
    assert sum(line.endswith(": equal") for line in rounds) == ROUNDS
    assert summary.startswith(f"task {network.task_id}: {len(rounds)} round(s) audited: {ROUNDS} equal")
