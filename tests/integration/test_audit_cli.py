"""``flchain audit`` on a real chain (anvil): every round recomputed from the chain and the participants' storage.

Each test runs a small in-process federation (the real node runtime, anvil over JSON-RPC, one memory
network for the nodes' storage) to completion, then runs ``flchain audit --rpc ... --contract ...`` in
this process. The audit reaches the participants' peers through the multiaddrs they registered on
chain (``participant_storage`` is pointed at the memory network here: the network is not what is
tested; tests/integration/test_chain_ipfs_export.py runs the same command against kubo peers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fl_chain.chain import dev_account
from fl_chain.chain.backends import ProcessChain
from fl_chain.chain.coordinator import Coordinator, TaskStatus
from fl_chain.exchange.audit import RoundVerdict, Verdict, task_verdicts
from fl_chain.exchange.peering import connect_to_participants
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.ports import free_port
from fl_chain.protocol.task import TaskSpec
from fl_chain.storage.memory import MemoryNetwork, MemoryStorage
from tests.helpers.adversaries import SKEW, LyingAggregator, rebuild
from tests.helpers.cli_runner import InProcessCli, assert_one_line_error
from tests.helpers.contracts import running_task
from tests.helpers.task_files import write_task_file

pytestmark = pytest.mark.process_chain

NODES = 4
ROUNDS = 2
PARTITIONS = 4


class SkewedFromRound(LyingAggregator):
    """A colluder: aggregates honestly in rounds before ``start``, then commits the honest aggregate plus SKEW."""

    def __init__(self, *, start: int, **node: Any) -> None:
        super().__init__(lie="skewed", **node)
        self.start = start

    def _aggregate_partition(self, round_, partition, commits, base, unavailable=None):  # type: ignore[no-untyped-def]
        if round_ < self.start:
            return super(LyingAggregator, self)._aggregate_partition(round_, partition, commits, base, unavailable)
        return super()._aggregate_partition(round_, partition, commits, base, unavailable)


class Federation:
    """A finished in-process federation on anvil whose nodes keep serving their blobs."""

    def __init__(
        self, anvil: ProcessChain, root: Path, monkeypatch: pytest.MonkeyPatch, *, colluding_from: int | None = None
    ) -> None:
        self.task_file = write_task_file(
            root / "task.toml",
            protocol={
                "rounds": ROUNDS,
                "partitions": PARTITIONS,
                "replication": 3,
                "quorum": 2,
                "min_contributors": 2,
                "update_duration": 3600,
                "aggregation_duration": 3600,
            },
            strategy={"name": "median"},
        )
        self.spec = TaskSpec.from_toml(self.task_file)
        self.network = MemoryNetwork()
        _, self.coordinator, self.task_id, nodes = build_federation(
            self.spec,
            nodes=NODES,
            state_root=root / "nodes",
            chain=anvil,
            storage_factory=lambda i, state: MemoryStorage(self.network),
        )
        if colluding_from is not None:  # every aggregator colludes: each partition's quorum is theirs
            nodes = [rebuild(node, SkewedFromRound, start=colluding_from) for node in nodes]
        self.status = InProcessFederation(anvil, self.coordinator, self.task_id, nodes).run()
        self.rpc = ("--rpc", str(anvil.rpc_url), "--contract", self.coordinator.address)
        monkeypatch.setattr("fl_chain.exchange.download.participant_storage", self.participant_storage)

    @contextmanager
    def participant_storage(self, coordinator: Coordinator, task_id: int, **_: Any) -> Iterator[MemoryStorage]:
        """An auditor's peer on the nodes' network, connected as the CLI connects: by the chain's multiaddrs."""
        storage = MemoryStorage(self.network)
        connect_to_participants(
            storage, coordinator, task_id, [p.account for p in coordinator.get_participants(task_id)]
        )
        yield storage

    def audit(self, run_cli: InProcessCli, cwd: Path, *extra: str) -> Any:
        return run_cli(
            "audit", *self.rpc, "--task", str(self.task_id), "--task-file", str(self.task_file), *extra, cwd=cwd
        )


def federation_initial(federation: Federation) -> np.ndarray:
    """The task's initial model, as the CLI builds it from the task file."""
    from fl_chain.federation.operator import initial_vector_for

    return initial_vector_for(federation.spec)


def test_audit_of_a_finished_median_task_says_every_round_equal(
    anvil: ProcessChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: InProcessCli
) -> None:
    # Prepare
    federation = Federation(anvil, tmp_path, monkeypatch)
    assert federation.status == TaskStatus.COMPLETED

    # Execute
    every = federation.audit(run_cli, tmp_path)
    last = federation.audit(run_cli, tmp_path, "--round", str(ROUNDS - 1))

    # Assert
    assert every.returncode == 0, every.stderr
    assert every.stdout.splitlines() == [
        "round 0: equal",
        "round 1: equal",
        f"task {federation.task_id}: 2 round(s) audited: 2 equal",
    ]
    assert last.returncode == 0, last.stderr
    assert last.stdout.splitlines()[0] == "round 1: equal" and "1 round(s) audited: 1 equal" in last.stdout


def test_attack_colluding_quorum_finalizes_a_skewed_round_and_the_audit_exits_1_naming_it(
    anvil: ProcessChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: InProcessCli
) -> None:
    """From round 1 every aggregator colludes: each commits the honest aggregate plus 0.5, stored as a
    well-formed aggregate blob, so the chain finalizes it (a quorum agrees) and every node trains on it.
    Only recomputing the round from its updates shows it: round 0 equal, round 1 not equal by 0.5 in
    every partition, exit status 1."""
    # Prepare
    federation = Federation(anvil, tmp_path, monkeypatch, colluding_from=1)
    assert federation.status == TaskStatus.COMPLETED

    # Execute
    result = federation.audit(run_cli, tmp_path)
    with federation.participant_storage(federation.coordinator, federation.task_id) as storage:
        initial = federation_initial(federation)
        verdicts = list(
            task_verdicts(storage, federation.coordinator, federation.task_id, spec=federation.spec, initial=initial)
        )

    # Assert: the command
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "round 0: equal"
    assert lines[1].startswith("round 1: not equal: max abs difference 0.5")
    assert lines[1].endswith("in partition(s) 0, 1, 2, 3 of 4")
    assert lines[2] == f"task {federation.task_id}: 2 round(s) audited: 1 equal, 1 not equal"
    # Assert: the verdicts the dashboard reads
    assert [v.verdict for v in verdicts] == [Verdict.EQUAL, Verdict.NOT_EQUAL]
    assert [v.verified for v in verdicts] == [True, False]
    assert verdicts[1].partitions == (0, 1, 2, 3)
    assert verdicts[1].max_abs_difference == pytest.approx(float(SKEW), abs=1e-6)


def test_audit_verdicts_of_running_and_cancelled_rounds(anvil: ProcessChain, tmp_path: Path) -> None:
    """A round in its update phase is not final; once the task is cancelled it failed, with the chain's reason."""
    # Prepare
    from fl_chain.chain import ChainClient

    coordinator = Coordinator.deploy(ChainClient(anvil.w3), dev_account(0))
    task = running_task(coordinator, dev_account(0), [dev_account(i) for i in (1, 2, 3)])
    storage = MemoryStorage(MemoryNetwork())

    # Execute
    running = list(task_verdicts(storage, coordinator, task.task_id))
    coordinator.cancel_task(dev_account(0), task.task_id)
    cancelled = list(task_verdicts(storage, coordinator, task.task_id))

    # Assert
    assert running == [RoundVerdict(0, Verdict.NOT_FINAL, "update phase")]
    assert running[0].line() == "round 0: not final: update phase" and running[0].verified
    assert cancelled == [RoundVerdict(0, Verdict.FAILED, "task cancelled")]
    assert cancelled[0].line() == "round 0: failed: task cancelled" and cancelled[0].verified


def test_audit_bad_input_is_one_line(
    anvil: ProcessChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: InProcessCli
) -> None:
    """Unknown task, round out of range, an account without code, nothing at the URL, another task's file."""
    # Prepare
    federation = Federation(anvil, tmp_path, monkeypatch)
    task_file = str(federation.task_file)
    audit = ("audit", "--task-file", task_file)
    other = tmp_path / "other.toml"
    other.write_text(federation.task_file.read_text().replace("seed = 11", "seed = 12"))
    url = f"http://127.0.0.1:{free_port()}"

    # Execute and assert
    assert_one_line_error(
        run_cli(*audit, *federation.rpc, "--task", "9", cwd=tmp_path), "task 9 does not exist", "1 task(s)"
    )
    assert_one_line_error(
        run_cli(*audit, *federation.rpc, "--task", "1", "--round", "2", cwd=tmp_path),
        "round 2 of task 1 does not exist: its rounds are 0..1",
    )
    assert_one_line_error(
        run_cli(*audit, "--rpc", str(anvil.rpc_url), "--contract", dev_account(5).address, "--task", "1", cwd=tmp_path),
        "no contract at",
        dev_account(5).address,
    )
    assert_one_line_error(
        run_cli(*audit, "--rpc", url, "--contract", federation.coordinator.address, "--task", "1", cwd=tmp_path),
        "no Ethereum JSON-RPC answer",
        url,
    )
    assert_one_line_error(
        run_cli("audit", *federation.rpc, "--task", "1", "--task-file", str(other), cwd=tmp_path),
        "does not match task 1",
    )
    assert_one_line_error(
        run_cli("audit", *federation.rpc, "--task", "1", "--task-file", "missing.toml", cwd=tmp_path), "missing.toml"
    )


def test_audit_with_no_peer_serving_the_content_says_unverifiable_and_exits_1(
    anvil: ProcessChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: InProcessCli
) -> None:
    """The nodes are gone (the auditor's peer reaches nobody): no round is proven wrong, none verifies."""
    # Prepare
    federation = Federation(anvil, tmp_path, monkeypatch)

    @contextmanager
    def nobody(coordinator: Coordinator, task_id: int, **_: Any) -> Iterator[MemoryStorage]:
        yield MemoryStorage(MemoryNetwork())

    monkeypatch.setattr("fl_chain.exchange.download.participant_storage", nobody)

    # Execute
    result = federation.audit(run_cli, tmp_path, "--timeout", "1")

    # Assert
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith(f"round {r}: unverifiable: not served: ") for r, line in enumerate(lines[:ROUNDS]))
    assert lines[ROUNDS] == f"task {federation.task_id}: 2 round(s) audited: 2 unverifiable"
    assert "are the participants' nodes running?" in lines[ROUNDS + 1]
