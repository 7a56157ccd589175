"""Issue 18's real secure federation: 5 `flchain node` processes with kubo peers on anvil.

One node is killed (SIGKILL) right after it committed its masked update in round 1. Its peers cannot
fetch its masked slices, report it in the check window (a strict majority of the contributors), and
rebuild its mask key from the shares they hold instead of its self-mask seed: the round completes.
Every finalized global model equals the plaintext weighted FedAvg of the updates the chain counted
(replayed here: the same data shards, training seeds and base models), within the fixed-point bound,
and the audit recomputes the same bytes from the masked blobs, setups and reveals in IPFS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain.coordinator import RoundStatus, TaskStatus
from fl_chain.exchange.audit import audit_round
from fl_chain.exchange.peering import connect_to_participants
from fl_chain.exchange.secure import SecureParams
from fl_chain.federation.localnet import LocalNetwork
from fl_chain.privacy.fixed_point import quantization_bound
from fl_chain.protocol.task import TaskSpec
from fl_chain.storage.kubo import KuboStorage
from fl_chain.training.node_data import load_node_data
from fl_chain.training.trainer import TorchTrainer, training_seed
from tests.conftest import require_backend
from tests.helpers.federation_checks import wait_for_update_commit
from tests.helpers.task_files import write_task_file

pytestmark = [pytest.mark.kubo, pytest.mark.process_chain, pytest.mark.integration]

NODES = 5
VICTIM = 3


@pytest.fixture()
def verifier(tmp_path: Path) -> Iterator[KuboStorage]:
    """The test's own kubo peer, used to recompute results from IPFS."""
    storage = KuboStorage(tmp_path / "verifier-ipfs")
    try:
        yield storage
    finally:
        storage.close()


def test_five_node_processes_run_three_secure_rounds_and_survive_a_node_killed_after_its_masked_update(
    tmp_path: Path, verifier: KuboStorage
) -> None:
    require_backend("anvil")
    # Prepare
    task_file = write_task_file(
        tmp_path / "task.toml",
        protocol={
            "rounds": 3,
            "partitions": 4,
            "replication": 2,
            "quorum": 2,
            "min_contributors": 3,
            "update_duration": 120,
            "aggregation_duration": 60,
        },
        privacy={
            "secure_aggregation": True,
            "secagg_threshold": 3,
            "secagg_shares_duration": 30,
            "secagg_unmask_duration": 15,
        },
    )
    spec = TaskSpec.from_toml(task_file)
    params = SecureParams.of(spec)
    with LocalNetwork(
        tmp_path / "net",
        nodes=NODES,
        task_file=task_file,
        chain="anvil",
        block_time=0.2,
        poll_interval=0.2,
        fetch_timeout=4,
        linger=60,
        report=lambda message: None,
    ) as net:
        net.start()
        coordinator, task_id = net.coordinator, net.task_id
        victim = net.nodes[VICTIM].account.address

        # Execute: kill the victim as soon as its masked update of round 1 is on chain.
        killed_in = wait_for_update_commit(coordinator, task_id, victim, timeout=400)
        net.kill_node(VICTIM)
        status = net.follow(timeout=600)

        # Assert: the task completed; the round of the kill finalized without the victim's update.
        assert status == TaskStatus.COMPLETED
        rounds = [coordinator.get_round(task_id, r) for r in range(coordinator.get_task(task_id)[1].current_round + 1)]
        assert rounds[killed_in].status == RoundStatus.FINALIZED, [(r.status, r.failure) for r in rounds]
        assert coordinator.get_excluded(task_id, killed_in) == [victim]
        finalized = [r for r, info in enumerate(rounds) if info.status == RoundStatus.FINALIZED]
        assert len(finalized) == 3
        connect_to_participants(
            verifier, coordinator, task_id, [p.account for p in coordinator.get_participants(task_id)]
        )
        initial = TorchTrainer(spec, *load_node_data(spec, 0, NODES)).initial_vector()
        base = initial
        for round_ in finalized:
            audit = audit_round(verifier, coordinator, task_id, round_, initial=initial, timeout=30, secure=params)
            assert audit.ok, f"round {round_}: the audit does not recompute the global model"
            # The plaintext weighted FedAvg of the counted updates, replayed from the same shards and seeds.
            excluded = set(coordinator.get_excluded(task_id, round_))
            counted = [c for c in coordinator.find_update_commits(task_id, round_) if c.contributor not in excluded]
            accounts = [n.account.address for n in net.nodes]
            summed = np.zeros(base.size)
            for commit in counted:
                index = accounts.index(commit.contributor)
                trainer = TorchTrainer(spec, *load_node_data(spec, index, NODES))
                seed = training_seed(spec.model_seed, task_id, round_, commit.contributor)
                trained, samples, _ = trainer.train(base, seed=seed)
                assert samples == commit.samples
                change = trained.astype(np.float64) - base.astype(np.float64)
                summed += samples * np.clip(change, -params.clip, params.clip)
            total = sum(c.samples for c in counted)
            expected = base.astype(np.float64) + summed / total
            bound = quantization_bound(len(counted), params.frac_bits) / total + np.spacing(
                np.abs(expected).astype(np.float32)
            )
            assert np.all(np.abs(audit.actual.astype(np.float64) - expected) <= bound), f"round {round_}"
            base = audit.actual
        assert {c.contributor for c in coordinator.find_update_commits(task_id, killed_in)} >= {victim}
