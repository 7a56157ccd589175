"""Phase hooks of the node runtime: an observer sees every phase of every round in order, every
transaction with its receipt and every round end; the phase file a node writes tells a harness
where the node is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fl_chain.chain.coordinator import TaskStatus
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.node.hooks import NodeObserver, ObserverGroup, Phase
from fl_chain.node.state import PhaseFile, PhaseRecord
from fl_chain.protocol.task import TaskSpec
from tests.helpers.faults import trained_in_round

ROUNDS = 2
NODES = 3

#: The phases a contributor goes through in a round, ``wait`` left out (it comes only when the
#: node has to wait for the others, which depends on its place in the stepping order).
ROUND_PHASES = [Phase.TRAIN, Phase.PUBLISH_UPDATE, Phase.COMMIT_UPDATE, Phase.AGGREGATE, Phase.COMMIT_AGGREGATES]


class Recording(NodeObserver):
    """Every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def phase_started(self, task_id: int, round_: int, phase: Phase) -> None:
        self.calls.append(("started", task_id, round_, phase))

    def phase_finished(self, task_id: int, round_: int, phase: Phase, seconds: float) -> None:
        self.calls.append(("finished", task_id, round_, phase, seconds))

    def transaction_sent(
        self, task_id: int, round_: int, name: str, receipt: dict[str, Any] | None, seconds: float
    ) -> None:
        self.calls.append(("transaction", task_id, round_, name, receipt, seconds))

    def round_finished(self, task_id: int, round_: int) -> None:
        self.calls.append(("round", task_id, round_))

    def started(self) -> list[tuple[int, Phase]]:
        return [(c[2], c[3]) for c in self.calls if c[0] == "started"]


def small_spec() -> TaskSpec:
    return TaskSpec.from_dict({
        "protocol": {"rounds": ROUNDS, "partitions": NODES, "replication": 2, "quorum": 2, "min_contributors": 2,
                     "update_duration": 3600, "aggregation_duration": 3600},
        "model": {"name": "logreg", "seed": 3},
        "dataset": {"name": "digits", "split": "iid"},
        "training": {"epochs": 1, "batch_size": 32, "lr": 0.1},
    })  # fmt: skip


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[Any], list[Recording], TaskStatus]:
    """A three-node in-process federation of two rounds, run once with a recording observer and a
    phase file on every node."""
    root = tmp_path_factory.mktemp("hooks")
    chain, coordinator, task_id, nodes = build_federation(small_spec(), nodes=NODES, state_root=root)
    recordings = [Recording() for _ in nodes]
    for node, recording in zip(nodes, recordings):
        node.observers.add(recording)
        node.observers.add(PhaseFile(node.state.root))
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()
    return task_id, nodes, recordings, status


def test_observer_sees_every_phase_of_every_round_in_order(federation: Any) -> None:
    # Prepare (the federation ran in the fixture)
    task_id, _nodes, recordings, status = federation
    assert status == TaskStatus.COMPLETED

    for index, recording in enumerate(recordings):
        # Execute: the phases of each round, waits left out
        started = recording.started()
        per_round = {r: [p for rr, p in started if rr == r and p is not Phase.WAIT] for r in range(ROUNDS)}

        # Assert: round 0 starts from the initial model, round 1 fetches round 0's global model; the
        # final model is fetched once the task completed
        assert per_round[0] == ROUND_PHASES, f"node {index}"
        assert per_round[1][: len(ROUND_PHASES) + 1] == [Phase.FETCH_GLOBAL, *ROUND_PHASES], f"node {index}"
        assert per_round[1][len(ROUND_PHASES) + 1 :] == [Phase.FETCH_GLOBAL], f"node {index}: the final model"
        assert all(task == task_id for _, task, *_ in recording.calls)


def test_every_started_phase_finishes_before_the_next_one_starts(federation: Any) -> None:
    # Prepare
    _, _, recordings, _ = federation

    for recording in recordings:
        # Execute
        boundaries = [c for c in recording.calls if c[0] in ("started", "finished")]

        # Assert: started/finished alternate, each finish closes the phase just started
        assert [c[0] for c in boundaries] == ["started", "finished"] * (len(boundaries) // 2)
        for begin, end in zip(boundaries[::2], boundaries[1::2]):
            assert end[1:4] == begin[1:4] and end[4] >= 0.0


def test_observer_sees_each_round_end_once_in_order(federation: Any) -> None:
    # Prepare
    _, _, recordings, _ = federation

    for recording in recordings:
        # Execute
        ends = [c[2] for c in recording.calls if c[0] == "round"]

        # Assert
        assert ends == list(range(ROUNDS))


def test_observer_sees_the_node_transactions_with_their_receipts(federation: Any) -> None:
    # Prepare
    _, _, recordings, _ = federation

    for recording in recordings:
        # Execute
        sent = [(c[2], c[3]) for c in recording.calls if c[0] == "transaction"]
        receipts = [c[4] for c in recording.calls if c[0] == "transaction"]

        # Assert: an update and aggregates every round, all mined
        for round_ in range(ROUNDS):
            assert (round_, "commit_update") in sent and (round_, "commit_aggregates") in sent
        assert all(receipt is not None and receipt["gasUsed"] > 0 for receipt in receipts)
    drawn = [
        c for recording in recordings for c in recording.calls if c[0] == "transaction" and c[3] == "draw_assignment"
    ]
    assert len(drawn) >= ROUNDS  # one contributor draws each round's assignment


def test_phase_file_holds_the_last_phase_a_node_entered(federation: Any) -> None:
    # Prepare
    task_id, nodes, recordings, _ = federation

    for node, recording in zip(nodes, recordings):
        # Execute
        record = PhaseFile.read(node.state.root)

        # Assert
        assert record is not None
        assert (record.task, record.round, record.phase) == (task_id, *recording.started()[-1])


def test_phase_file_of_a_node_that_wrote_none_reads_as_none(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "phase.json").write_text('{"task": 1, "round": 0, "phase": "dancing"}')

    # Execute / Assert
    assert PhaseFile.read(tmp_path) is None
    assert PhaseFile.read(tmp_path / "garbled") is None


@pytest.mark.parametrize(
    ("record", "trained"),
    [
        (None, False),
        (PhaseRecord(task=1, round=2, phase=Phase.FETCH_GLOBAL, since=0.0), False),
        (PhaseRecord(task=1, round=2, phase=Phase.TRAIN, since=0.0), False),
        (PhaseRecord(task=1, round=1, phase=Phase.WAIT, since=0.0), False),
        (PhaseRecord(task=2, round=2, phase=Phase.WAIT, since=0.0), False),
        (PhaseRecord(task=1, round=2, phase=Phase.PUBLISH_UPDATE, since=0.0), True),
        (PhaseRecord(task=1, round=2, phase=Phase.COMMIT_UPDATE, since=0.0), True),
        (PhaseRecord(task=1, round=3, phase=Phase.TRAIN, since=0.0), True),
    ],
    ids=["no-file", "fetching", "training", "previous-round", "other-task", "publishing", "committing", "later-round"],
)
def test_fault_harness_reads_training_done_from_the_phase_file(record: PhaseRecord | None, trained: bool) -> None:
    # Execute / Assert: task 1, round 2
    assert trained_in_round(record, 1, 2) is trained


def test_an_empty_observer_group_reports_nothing_and_costs_no_timer() -> None:
    # Prepare
    group = ObserverGroup()

    # Execute
    with group.phase(1, 0, Phase.TRAIN) as entered:
        pass
    group.wait(1, 0)
    group.in_round(1, 1)

    # Assert
    assert not group and entered is None


def test_wait_lasts_until_the_next_phase_starts() -> None:
    # Prepare
    recording = Recording()
    group = ObserverGroup([recording])
    group.in_round(1, 0)

    # Execute: waiting twice in a row is one wait; the next phase closes it; the round end closes nothing
    group.wait(1, 0)
    group.wait(1, 0)
    with group.phase(1, 0, Phase.AGGREGATE):
        pass
    group.in_round(1, 1)

    # Assert
    kinds = [(c[0], c[3]) if c[0] != "round" else ("round", c[2]) for c in recording.calls]
    assert kinds == [
        ("started", Phase.WAIT), ("finished", Phase.WAIT),
        ("started", Phase.AGGREGATE), ("finished", Phase.AGGREGATE),
        ("round", 0),
    ]  # fmt: skip
