"""A real federation: anvil + node OS processes, each with its own key, data shard and kubo peer."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fl_chain.chain.coordinator import RoundStatus, TaskStatus
from fl_chain.federation.localnet import LocalNetwork
from fl_chain.storage.kubo import KuboStorage
from tests.conftest import require_backend
from tests.helpers.cpu_hog import cpu_hog
from tests.helpers.federation_checks import check_every_finalized_round, wait_for_update_commit
from tests.helpers.task_files import write_task_file

pytestmark = [pytest.mark.kubo, pytest.mark.process_chain, pytest.mark.integration]


#: anvil with sub-second blocks and polling: a transaction waits 0.2 s for its block, not 1 s, and a
#: 4-node run costs half the CPU it does on ganache (measured: 60 s against 115 s of CPU for 3 rounds).
#: ganache networks run in test_faults.py (a chain restart) and test_bad_input.py.
FAST: dict[str, Any] = {"chain": "anvil", "block_time": 0.2, "poll_interval": 0.2, "report": lambda message: None}


def write_task(path: Path, **protocol: int) -> Path:
    """The network's task (an MLP with 16 hidden units on digits) with ``protocol`` over its defaults."""
    values = {
        "rounds": 3,
        "partitions": 4,
        "replication": 2,
        "quorum": 2,
        "min_contributors": 2,
        # Phases end when everyone has committed: the deadlines only bound a stalled round, so they
        # are long enough for a loaded machine (40 s were missed with four networks on 2 cores).
        "update_duration": 120,
        "aggregation_duration": 60,
    }
    values.update(protocol)
    return write_task_file(path, protocol=values)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fl_chain.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def final_models(net: LocalNetwork, indices: list[int], timeout: float = 120.0) -> list[np.ndarray]:
    """Each node's final model file, waiting for nodes that are still fetching it."""
    paths = [net.nodes[i].state_dir / f"task-{net.task_id}" / "final-model.npy" for i in indices]
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.5)
    missing = [i for i, p in zip(indices, paths) if not p.exists()]
    if missing:
        stderr = {i: (net.nodes[i].state_dir / "stderr.log").read_text()[-2000:] for i in missing}
        pytest.fail(f"no final model from node(s) {missing} after {timeout:.0f} s; their stderr: {stderr}")
    return [np.load(p) for p in paths]


@pytest.fixture()
def verifier(tmp_path: Path) -> Iterator[KuboStorage]:
    """The test's own kubo peer, used to recompute results from IPFS."""
    storage = KuboStorage(tmp_path / "verifier-ipfs")
    try:
        yield storage
    finally:
        storage.close()


def test_four_nodes_under_a_cpu_hog_finalize_every_round_as_fedavg_recomputed_from_ipfs(
    tmp_path: Path, verifier: KuboStorage
) -> None:
    """P=4, r=2, while busy loops occupy every core (on top of whatever else the machine runs): the
    task completes with 3 finalized rounds (a retried round is allowed, a hang or a wrong model is
    not), each global model equals the FedAvg of its committed updates recomputed here from the
    blobs in IPFS, all nodes end with the same model, and ``model get`` / ``status`` agree."""
    require_backend("anvil")
    task_file = write_task(tmp_path / "task.toml")
    with LocalNetwork(
        tmp_path / "net", nodes=4, task_file=task_file, linger=120, require_clean_stop=True, **FAST
    ) as net:
        with cpu_hog(max_seconds=600):
            net.start()
            status = net.follow(timeout=900)
        assert status == TaskStatus.COMPLETED
        _, task = net.coordinator.get_task(net.task_id)
        rounds = [net.coordinator.get_round(net.task_id, r) for r in range(task.current_round + 1)]
        finalized = [r for r, info in enumerate(rounds) if info.status == RoundStatus.FINALIZED]
        assert len(finalized) == 3
        assert all(rounds[r].contributors == 4 for r in finalized)
        dimension = final_models(net, [0])[0].size
        globals_ = check_every_finalized_round(verifier, net.coordinator, net.task_id, dimension)
        finals = final_models(net, [0, 1, 2, 3])
        rpc = ["--rpc", str(net.chain.rpc_url), "--deployment", str(net.deployment_file)]
        first = str(finalized[0])
        got = run_cli(
            "model", "get", *rpc, "--task", str(net.task_id), "--round", first, "--out", str(tmp_path / "g.npy")
        )
        status = run_cli("status", *rpc, "--task", str(net.task_id))
    assert got.returncode == 0, got.stderr
    assert np.load(tmp_path / "g.npy").tobytes() == globals_[finalized[0]].tobytes()
    assert status.returncode == 0, status.stderr
    assert "3/3 finalized" in status.stdout and status.stdout.count("4 updates") >= 3
    assert sorted(globals_) == finalized
    assert all(f.tobytes() == globals_[finalized[-1]].tobytes() for f in finals)
    assert not np.array_equal(globals_[finalized[0]], globals_[finalized[-1]])


def test_node_killed_mid_round_rounds_go_on_and_restarted_node_contributes_again(
    tmp_path: Path, verifier: KuboStorage
) -> None:
    """SIGKILL one node right after it committed an update: that round finalizes or retries, the
    next rounds go on with the others, and the node, restarted on its state directory, contributes again."""
    require_backend("anvil")
    # Five rounds: the killed round now usually finalizes without the victim (its update is reported
    # unavailable and excluded), so the restarted node needs rounds left to contribute to.
    task_file = write_task(tmp_path / "task.toml", rounds=5, update_duration=25, aggregation_duration=12)
    victim = 3
    with LocalNetwork(
        tmp_path / "net", nodes=4, task_file=task_file, linger=120, fetch_timeout=4, require_clean_stop=True, **FAST
    ) as net:
        net.start()
        coordinator, task_id = net.coordinator, net.task_id
        victim_address = net.nodes[victim].account.address

        # Kill the victim as soon as it has committed its update in round 1.
        killed_in = wait_for_update_commit(coordinator, task_id, victim_address)
        net.kill_node(victim)

        # The round it was killed in ends (finalized or failed); the next one finalizes without it.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and coordinator.get_task(task_id)[1].current_round <= killed_in + 1:
            time.sleep(0.5)
        outcome = coordinator.get_round(task_id, killed_in).status
        assert outcome in (RoundStatus.FINALIZED, RoundStatus.FAILED)
        after = killed_in + 1
        assert coordinator.get_round(task_id, after).status in (RoundStatus.FINALIZED, RoundStatus.FAILED)

        # Restart it: it resumes from its state directory and contributes again.
        net.start_node(victim)
        status = net.follow(timeout=600)
        assert status == TaskStatus.COMPLETED
        _, task = coordinator.get_task(task_id)
        later = [
            r
            for r in range(after + 1, task.current_round + 1)
            if any(c.contributor == victim_address for c in coordinator.find_update_commits(task_id, r))
        ]
        assert later, "the restarted node never contributed again"
        dimension = final_models(net, [0])[0].size
        globals_ = check_every_finalized_round(verifier, coordinator, task_id, dimension)
        assert len(globals_) == 5
        net.wait_nodes(timeout=5)
        finals = final_models(net, [0, 1, 2, victim])
    last = max(globals_)
    assert all(f.tobytes() == globals_[last].tobytes() for f in finals)
