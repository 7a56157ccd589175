"""Crash faults on a real local network: nodes killed with SIGKILL at random phases and restarted,
and the chain process itself stopped and restarted on its data directory (SIGTERM and SIGINT stops:
test_stop_signals.py here, and every fault kind in ``bench/faults.py``).

Each test is one run of :mod:`tests.helpers.faults` (anvil or ganache, 4 node processes with
kubo peers, logistic regression on digits, P = 4, r = 2, q = 2, 2 or 3 rounds); every finalized global
model is recomputed from the blobs in IPFS and compared byte for byte with the committed updates'
FedAvg. ``bench/faults.py`` runs the same harness over 100 seeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_backend
from tests.helpers.faults import ENDED, FaultConfig, plan_faults, run_chain_restart, run_faults

pytestmark = [pytest.mark.kubo, pytest.mark.process_chain, pytest.mark.integration]


def test_plan_faults_is_seeded_and_kills_at_most_a_minority() -> None:
    # Prepare
    configs = [FaultConfig(nodes=n) for n in (3, 4, 5, 6, 7)]

    # Execute
    plans = {(c.nodes, seed): plan_faults(seed, c) for c in configs for seed in range(40)}

    # Assert
    assert all(plan_faults(seed, FaultConfig(nodes=n)) == plan for (n, seed), plan in plans.items())
    assert all(1 <= len(plan) <= (n - 1) // 2 for (n, _), plan in plans.items())
    assert all(len({f.node for f in plan}) == len(plan) for plan in plans.values())
    stops = [f for plan in plans.values() for f in plan]
    assert {f.signal for f in stops} == {"SIGKILL", "SIGTERM", "SIGINT"}
    assert all(f.restart_after is not None for f in stops if f.signal != "SIGKILL"), "a stopped node is restarted"
    crashes_only = [plan_faults(seed, FaultConfig(nodes=4), signals=("SIGKILL",)) for seed in range(40)]
    assert [[(f.node, f.round, f.phase) for f in plan] for plan in crashes_only] == [
        [(f.node, f.round, f.phase) for f in plans[(4, seed)]] for seed in range(40)
    ], "the signal draw changed which nodes, rounds and phases a seed stops"


@pytest.mark.parametrize("seed", [6, 26], ids=["committed-restarted", "aggregating-stays-down"])
def test_seeded_crash_run_completes_without_hang_or_wrong_model(tmp_path: Path, seed: int) -> None:
    """Seed 6 kills a node right after its UpdateCommitted in round 0 and restarts it 5.5 s later (2
    rounds: the restarted node has round 1 to finish); seed 26 kills a node during the last round's
    (round 2's) aggregation and leaves it down."""
    require_backend("anvil")
    config = FaultConfig(nodes=4, rounds=2 if seed == 6 else 3)
    crashes = plan_faults(seed, config, signals=("SIGKILL",))  # SIGTERM and SIGINT: test_stop_signals.py
    assert [f.phase for f in crashes] == ["committed" if seed == 6 else "aggregating"]

    result = run_faults(seed, tmp_path, config, faults=crashes)

    assert result.error is None, result.error
    assert result.completed and not result.hung, result.as_dict()
    assert result.rounds_finalized == config.rounds
    assert all(k.at is not None for k in result.kills), "the planned crash never fired"
    assert result.wrong_models == 0 and result.unverified_rounds == 0, result.checks
    assert result.verified_rounds == config.rounds
    assert not result.stuck_nodes and not result.unexpected_exits, result.exit_codes
    victim = result.kills[0]
    if victim.restarted_at is not None:
        assert result.exit_codes[victim.node] in ENDED
    else:
        assert result.exit_codes[victim.node] == -9


def test_ganache_restart_on_its_data_dir_task_completes_with_correct_models(tmp_path: Path) -> None:
    """ganache is stopped (SIGTERM) during round 1's aggregation phase (the last round's) and started
    again 5 s later on the same port and database: the chain keeps its blocks, the task completes and
    every global model equals the FedAvg of its updates.

    No node process dies while the chain is away: every chain read and transaction turns a refused
    connection into ``ChainUnreachableError``, which the node waits out and retries.
    """
    require_backend("ganache")
    config = FaultConfig(nodes=4, chain="ganache", rounds=2, update_duration=15, aggregation_duration=10)

    result = run_chain_restart(tmp_path, config, stop_in_round=1, stop_in_phase="aggregation", down_seconds=5)

    assert result.error is None, result.error
    assert result.same_port and result.stopped_in_round == 1
    assert result.block_before is not None and result.block_after_restart is not None
    assert result.block_after_restart >= result.block_before, "the chain lost its blocks across the restart"
    assert result.completed and not result.hung, result
    assert result.rounds_finalized == config.rounds
    assert result.wrong_models == 0 and result.unverified_rounds == 0
    assert result.verified_rounds == config.rounds
    assert all(code in ENDED for code in result.exit_codes), result.exit_codes
    assert not result.node_errors, f"node processes died while the chain was away: {result.node_errors}"
