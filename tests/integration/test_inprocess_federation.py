"""The node runtime in one process on the embedded chain: BAFFLE mode, restarts, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain.coordinator import RoundStatus, TaskStatus
from fl_chain.errors import ConfigError
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.node.runtime import Node, Step
from fl_chain.protocol.cid import cid_from_digest
from fl_chain.protocol.task import TaskSpec
from fl_chain.training.trainer import TorchTrainer
from tests.helpers.federation_checks import check_every_finalized_round


def spec(**protocol: object) -> TaskSpec:
    base = {
        "rounds": 2,
        "partitions": 4,
        "replication": 2,
        "quorum": 2,
        "min_contributors": 2,
        "update_duration": 3600,
        "aggregation_duration": 3600,
    }
    base.update(protocol)
    return TaskSpec.from_dict(
        {
            "protocol": base,
            "model": {"name": "logreg", "seed": 3},
            "dataset": {"name": "digits", "split": "iid"},
            "training": {"epochs": 1, "batch_size": 32, "lr": 0.1},
        }
    )


class CountingTrainer(TorchTrainer):
    """A TorchTrainer that counts its training runs."""

    runs = 0

    def train(self, vector, *, seed):  # type: ignore[no-untyped-def]
        type(self).runs += 1
        return super().train(vector, seed=seed)


def test_baffle_full_averaging_p1_r_equals_n_through_the_same_code(tmp_path: Path) -> None:
    """P = 1 and r = N: every node averages everything, the quorum digest wins, results equal FedAvg."""
    chain, coordinator, task_id, nodes = build_federation(
        spec(partitions=1, replication=4, quorum=3, min_contributors=3), nodes=4, state_root=tmp_path
    )
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()
    assert status == TaskStatus.COMPLETED
    commits = coordinator.find_aggregate_commits(task_id, 0)
    assert len({c.aggregator for c in commits}) >= 3
    assert {c.digest for c in commits} == {coordinator.get_final_digests(task_id, 0)[0]}
    globals_ = check_every_finalized_round(nodes[0].storage, coordinator, task_id, nodes[0]._initial.size)
    assert sorted(globals_) == [0, 1]
    finals = [np.load(tmp_path / f"node-{i}" / f"task-{task_id}" / "final-model.npy") for i in range(4)]
    assert all(f.tobytes() == globals_[1].tobytes() for f in finals)


def test_restarted_node_resumes_without_redoing_finished_steps(tmp_path: Path) -> None:
    """A node rebuilt from its state directory after committing its update does not train again."""
    CountingTrainer.runs = 0
    chain, coordinator, task_id, nodes = build_federation(
        spec(), nodes=3, state_root=tmp_path, trainer_factory=CountingTrainer
    )
    first = nodes[0]
    assert first.step() is Step.PROGRESS  # trains and commits its round-0 update
    assert CountingTrainer.runs == 1
    reborn = Node(
        coordinator=coordinator,
        account=first.account,
        task_id=task_id,
        spec=first.spec,
        trainer=first.trainer,
        storage=first.storage,
        state=type(first.state)(
            first.state.root, chain_id=coordinator.client.chain_id, contract=coordinator.address, account=first.address
        ),
        options=first.options,
    )
    nodes[0] = reborn
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()
    assert status == TaskStatus.COMPLETED
    # 3 nodes x 2 rounds: the restart did not add a training run.
    assert CountingTrainer.runs == 6
    assert all(coordinator.get_round(task_id, r).status == RoundStatus.FINALIZED for r in (0, 1))


def test_state_directory_of_another_account_is_refused(tmp_path: Path) -> None:
    """Reusing a node's state directory for another account is a one-line ConfigError."""
    from fl_chain.errors import ConfigError
    from fl_chain.node.state import NodeState

    NodeState(tmp_path, chain_id=1, contract="0x" + "11" * 20, account="0x" + "22" * 20)
    with pytest.raises(ConfigError, match="belongs to account"):
        NodeState(tmp_path, chain_id=1, contract="0x" + "11" * 20, account="0x" + "33" * 20)


def test_dropout_before_update_ends_phase_at_deadline_and_round_finalizes(tmp_path: Path) -> None:
    """One node never trains: the update phase ends by deadline, the others finalize without it."""
    chain, coordinator, task_id, nodes = build_federation(spec(rounds=1), nodes=3, state_root=tmp_path)
    status = InProcessFederation(chain, coordinator, task_id, nodes[:2]).run()
    assert status == TaskStatus.COMPLETED
    info = coordinator.get_round(task_id, 0)
    assert info.status == RoundStatus.FINALIZED and info.contributors == 2


def test_node_that_was_away_syncs_to_the_latest_global_model_and_contributes(tmp_path: Path) -> None:
    """A node absent for round 0 fetches round 0's global model from its peers, then contributes."""
    chain, coordinator, task_id, nodes = build_federation(spec(rounds=2), nodes=3, state_root=tmp_path)
    early = InProcessFederation(chain, coordinator, task_id, nodes[:2])
    for _ in range(200):
        if coordinator.get_task(task_id)[1].current_round >= 1:
            break
        if not any(node.step() is not Step.IDLE for node in nodes[:2]):
            early._jump_to_next_deadline()
    assert coordinator.get_round(task_id, 0).status == RoundStatus.FINALIZED
    assert coordinator.get_round(task_id, 0).contributors == 2
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()
    assert status == TaskStatus.COMPLETED
    late = nodes[2].address
    assert late in {c.contributor for c in coordinator.find_update_commits(task_id, 1)}
    finals = [np.load(tmp_path / f"node-{i}" / f"task-{task_id}" / "final-model.npy") for i in range(3)]
    assert finals[2].tobytes() == finals[0].tobytes() == finals[1].tobytes()


def test_state_directory_of_a_reset_chain_is_refused_not_resumed(tmp_path: Path) -> None:
    """Same contract address and task id on a fresh chain: the old progress must not be resumed."""
    # Prepare: a finished federation's state directories
    chain, coordinator, task_id, nodes = build_federation(spec(rounds=1), nodes=3, state_root=tmp_path)
    InProcessFederation(chain, coordinator, task_id, nodes).run()
    before = {p: p.read_bytes() for p in (tmp_path / "node-0" / f"task-{task_id}").iterdir() if p.is_file()}
    # Execute / Assert: a fresh chain, same accounts, same deployment address, same task id
    with pytest.raises(ConfigError, match="another chain"):
        build_federation(spec(rounds=1), nodes=3, state_root=tmp_path)
    after = {p: p.read_bytes() for p in (tmp_path / "node-0" / f"task-{task_id}").iterdir() if p.is_file()}
    assert after == before


def test_node_whose_final_model_nobody_serves_stops_instead_of_waiting_forever(tmp_path: Path) -> None:
    """A node that starts after the task ended, with no peer serving the final model, gives up after
    final_model_timeout with a warning and Step.STOPPED; its state keeps the task unfinished."""
    from fl_chain.node.runtime import NodeOptions
    from fl_chain.node.state import NodeState
    from fl_chain.storage.memory import MemoryStorage

    # Prepare: a completed task, and node 0 again on an empty store and a fresh state directory
    chain, coordinator, task_id, nodes = build_federation(spec(rounds=1), nodes=3, state_root=tmp_path / "fed")
    assert InProcessFederation(chain, coordinator, task_id, nodes).run() == TaskStatus.COMPLETED
    first = nodes[0]
    state = NodeState(
        tmp_path / "late", chain_id=chain.w3.eth.chain_id, contract=coordinator.address, account=first.address
    )
    messages: list[str] = []
    late = Node(
        coordinator=coordinator,
        account=first.account,
        task_id=task_id,
        spec=first.spec,
        trainer=first.trainer,
        storage=MemoryStorage(),
        state=state,
        options=NodeOptions(fetch_timeout=0.1, final_model_timeout=0.3, linger=0),
        report=messages.append,
    )

    # Execute
    result = late.run()

    # Assert
    assert result is Step.STOPPED
    assert any("no peer served its final model" in m for m in messages)
    assert state.load_vector(task_id, "final-model") is None
    assert task_id not in state.finished_tasks


def test_waiting_nodes_fetch_final_partitions_before_the_round_is_final(tmp_path: Path) -> None:
    """A node with nothing left to aggregate fetches the round's partitions that are final already,
    so the all-gather after the round only waits for the last ones; the models are unchanged."""
    from fl_chain.storage.memory import MemoryNetwork, MemoryStorage

    network = MemoryNetwork()
    early: list[tuple[int, str]] = []  # (round, cid) fetched while that round was not final yet
    holder: dict[str, object] = {}

    class WatchedStorage(MemoryStorage):
        def _fetch(self, cid: str, timeout: float, max_size: int | None) -> bytes:
            coordinator, task_id = holder["coordinator"], holder["task_id"]
            _, task = coordinator.get_task(task_id)  # type: ignore[attr-defined]
            if task.status == TaskStatus.RUNNING:
                finals = coordinator.get_final_digests(task_id, task.current_round)  # type: ignore[attr-defined]
                if cid in {cid_from_digest(d) for d in finals if d}:
                    early.append((task.current_round, cid))
            return super()._fetch(cid, timeout, max_size)

    chain, coordinator, task_id, nodes = build_federation(
        spec(rounds=3), nodes=4, state_root=tmp_path, storage_factory=lambda i, state: WatchedStorage(network)
    )
    holder.update(coordinator=coordinator, task_id=task_id)
    # Node 0 steps between every other node's steps, as a node process polls while its peers work
    # (in a plain round-robin sweep nobody is idle while only some partitions are final).
    order = [nodes[0], nodes[1], nodes[0], nodes[2], nodes[0], nodes[3]]
    assert InProcessFederation(chain, coordinator, task_id, order).run() == TaskStatus.COMPLETED
    assert {r for r, _ in early} == {0, 1, 2}, early  # every round: some final partition fetched ahead
    globals_ = check_every_finalized_round(nodes[0].storage, coordinator, task_id, nodes[0]._initial.size)
    finals = [np.load(tmp_path / f"node-{i}" / f"task-{task_id}" / "final-model.npy") for i in range(4)]
    assert all(f.tobytes() == globals_[2].tobytes() for f in finals)
