"""Multiaddrs registered on chain are all a node needs to fetch another node's partition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain import ChainClient, Coordinator, dev_accounts
from fl_chain.chain.backends import ProcessChain
from tests.conftest import task_config
from tests.helpers.peer_process import PeerProcess

pytestmark = [pytest.mark.kubo, pytest.mark.process_chain]


def test_node_fetches_contributor_partitions_using_only_multiaddrs_from_the_chain(
    ganache: ProcessChain, tmp_path: Path
) -> None:
    """Two contributors register their kubo peers on join; a third process finds them on chain and fetches."""
    # Prepare: a running task with two contributors whose peers live in their own processes.
    operator, alice, bob, carol = dev_accounts(4)
    client = ChainClient(ganache.w3)
    coordinator = Coordinator.deploy(client, operator)
    coordinator.admit(operator, [alice.address, bob.address, carol.address])
    task_id = coordinator.create_task(operator, task_config(partitions=4, min_contributors=2))
    vectors = {
        alice.address: np.random.default_rng(1).standard_normal(100_003).astype(np.float32),
        bob.address: np.random.default_rng(2).standard_normal(100_003).astype(np.float32),
    }
    with (
        PeerProcess(tmp_path / "alice") as alice_peer,
        PeerProcess(tmp_path / "bob") as bob_peer,
        PeerProcess(tmp_path / "carol") as carol_peer,
    ):
        for account, peer in ((alice, alice_peer), (bob, bob_peer), (carol, carol_peer)):
            coordinator.join(account, task_id, peer.multiaddrs)
        coordinator.start_task(operator, task_id)
        for account, peer in ((alice, alice_peer), (bob, bob_peer)):
            manifest_digest = peer.request(
                "call",
                "tests.helpers.peer_tasks.publish_update",
                vectors[account.address],
                task_id,
                0,
                4,
                account.address,
            )
            coordinator.commit_update(account, task_id, 0, manifest_digest, 100)

        # Execute: carol knows only the RPC URL, the contract address and the task.
        result = carol_peer.request(
            "call",
            "tests.helpers.peer_tasks.fetch_update_via_chain",
            ganache.rpc_url,
            coordinator.address,
            task_id,
            0,
            2,
            30.0,
        )
        connected_peers = set(carol_peer.request("peers"))

    # Assert
    assert result["connected"] == {alice.address: True, bob.address: True}
    assert {alice_peer.peer_id, bob_peer.peer_id} <= connected_peers
    for account, vector in vectors.items():
        assert result["parts"][account].tobytes() == vector[50_002:75_003].tobytes()
