"""Byzantine aggregators on the real contract and runtime: fewer than q liars never win a partition.

Trust assumption
----------------
A partition's result is only as good as its aggregators. fl-chain finalizes a partition when
``q`` of its ``r`` assigned aggregators commit the same digest (``r/2 < q <= r``; after the
aggregation deadline also when a strict majority of the round's contributors does), so:

- **safety** holds while *fewer than q* aggregators of every partition are faulty: a wrong
  digest can collect at most ``q - 1`` votes, and two digests can never both reach ``q``;
- **liveness** (before the fallback deadline) needs *at least q honest* aggregators per partition.

Nothing on chain can tell a lie from the truth: if ``q`` or more aggregators of one partition
collude on the same wrong digest and commit before the honest ones reach ``q``, the wrong digest
is final. These tests do not check that case as if it were wanted; they check the promise inside
the assumption, with lying nodes that are the real runtime with a changed aggregation step
(:class:`tests.helpers.adversaries.LyingAggregator`):

- a random digest that points at nothing, or a skewed average (honest aggregate + 0.5, stored as
  a valid blob so the digest points at real, well-formed content; two such liars agree with each
  other);
- with r = 3, q = 2 and one liar, and with r = 5, q = 3 and two liars on every partition, over
  five seeds that change who lies: the honest digest finalizes every partition of every round
  (the global model equals FedAvg of the committed updates, byte for byte), and every lie is on
  record: in ``find_dissenting_aggregators`` when it came before finalization, as an
  ``AggregateDisputed`` event when it came after.

The property is per round (each round's assignment and votes stand alone), so most seeds run a
one-round task; seed 0 runs two rounds, so liars that lost round 0 also lie, and lose, in round 1
and the task completes with the honest model (:func:`rounds_for`).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain.coordinator import Coordinator, RoundStatus, TaskStatus
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.node.runtime import Node, Step
from fl_chain.protocol.assignment import assigned_partitions
from fl_chain.protocol.blob import BlobHeader, BlobKind, blob_size, decode_partition
from fl_chain.protocol.cid import cid_from_digest
from fl_chain.protocol.partitioning import partition_bounds
from fl_chain.protocol.task import TaskSpec
from tests.helpers.adversaries import LIES, SKEW, LyingAggregator, rebuild
from tests.helpers.federation_checks import check_every_finalized_round, fetch_global

SEEDS = range(5)


def rounds_for(seed: int) -> int:
    """Rounds of the task a seed runs: two for seed 0 (lies in a round after a lost one), else one.

    Each round is a new contributor set, assignment key and vote; a second round re-checks the same
    property at about twice the chain cost (2 to 3 s more CPU per case), so one seed per setting and lie does.
    """
    return 2 if seed == 0 else 1


#: (nodes, partitions, replication, quorum, liars): every partition has at most ``liars`` < q liars.
SETTINGS = {
    "r3-q2-one-liar": (4, 4, 3, 2, 1),
    "r5-q3-two-liars": (6, 6, 5, 3, 2),
}


def spec(*, partitions: int, replication: int, quorum: int, seed: int, rounds: int = 2) -> TaskSpec:
    return TaskSpec.from_dict(
        {
            "protocol": {
                "rounds": rounds,
                "partitions": partitions,
                "replication": replication,
                "quorum": quorum,
                "min_contributors": quorum,
                "update_duration": 3600,
                "aggregation_duration": 3600,
            },
            "model": {"name": "logreg", "seed": seed},
            "dataset": {"name": "digits", "split": "iid"},
            "training": {"epochs": 1, "batch_size": 32, "lr": 0.1},
        }
    )


def federation_with_liars(  # type: ignore[no-untyped-def]
    tmp_path: Path, setting: str, lie: str, seed: int, *, rounds: int = 2, ignore_finality: bool = False
):
    """A started federation in which ``seed`` picks which nodes are liars."""
    n, partitions, replication, quorum, liars = SETTINGS[setting]
    chain, coordinator, task_id, nodes = build_federation(
        spec(partitions=partitions, replication=replication, quorum=quorum, seed=seed, rounds=rounds),
        nodes=n,
        state_root=tmp_path,
    )
    chosen = sorted(random.Random(seed).sample(range(n), liars))
    liar_nodes = [rebuild(nodes[i], LyingAggregator, lie=lie, ignore_finality=ignore_finality) for i in chosen]
    honest = [node for i, node in enumerate(nodes) if i not in chosen]
    return chain, coordinator, task_id, honest, liar_nodes


def run_liars_first(honest: list[Node], liars: list[Node], *, max_idle_sweeps: int = 50) -> None:
    """Step every node until the task ends, every liar before each honest step.

    So a lie lands as soon as a round's contributor set freezes: at most one honest aggregate of
    a partition (q >= 2) can come before it, and no partition is final when the liars commit.
    Phases end by completion here, so no chain time has to pass.
    """
    done: set[int] = set()
    idle = 0
    order = [n for h in honest for n in (*liars, h)]
    while len(done) < len(honest) + len(liars):
        progressed = False
        for node in order:
            if id(node) in done:
                continue
            result = node.step()
            if result is Step.DONE:
                done.add(id(node))
            progressed |= result is not Step.IDLE
        idle = 0 if progressed else idle + 1
        assert idle <= max_idle_sweeps, "the federation made no progress"


def assigned_to(coordinator: Coordinator, task_id: int, round_: int, address: str) -> list[int]:
    """Partitions ``address`` had to aggregate in ``round_``, from the round's events and state.

    (``get_assigned_partitions`` answers for an account's latest committed round only.)
    """
    config, _ = coordinator.get_task(task_id)
    info = coordinator.get_round(task_id, round_)
    assert info.assignment_key is not None, f"round {round_} has no assignment key"
    index = next(c.index for c in coordinator.find_update_commits(task_id, round_) if c.contributor == address)
    return assigned_partitions(
        index,
        contributors=info.contributors,
        key=info.assignment_key,
        partitions=config.partitions,
        replication=config.replication,
    )


def check_all_rounds_finalized_without_retry(coordinator: Coordinator, task_id: int, rounds: int) -> None:
    _, task = coordinator.get_task(task_id)
    assert task.status == TaskStatus.COMPLETED
    assert (task.current_round, task.finalized_rounds) == (rounds - 1, rounds)
    assert [coordinator.get_round(task_id, r).status for r in range(rounds)] == [RoundStatus.FINALIZED] * rounds


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lie", LIES)
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_fewer_than_quorum_liars_per_partition_never_change_the_global_model(
    tmp_path: Path, setting: str, lie: str, seed: int
) -> None:
    """Liars commit first on every partition they aggregate; the honest digest still finalizes, and
    every lying commit is listed by find_dissenting_aggregators (and no honest one is)."""
    # Prepare
    rounds = rounds_for(seed)
    _, coordinator, task_id, honest, liars = federation_with_liars(tmp_path, setting, lie, seed, rounds=rounds)
    quorum = SETTINGS[setting][3]

    # Execute
    run_liars_first(honest, liars)

    # Assert: every round finalized with the honest result, recomputed from IPFS.
    check_all_rounds_finalized_without_retry(coordinator, task_id, rounds=rounds)
    dimension = honest[0]._initial.size
    globals_ = check_every_finalized_round(honest[0].storage, coordinator, task_id, dimension)
    assert sorted(globals_) == list(range(rounds))
    liar_addresses = {liar.address for liar in liars}
    for round_ in range(rounds):
        final = coordinator.get_final_digests(task_id, round_)
        commits = coordinator.find_aggregate_commits(task_id, round_)
        dissent = coordinator.find_dissenting_aggregators(task_id, round_)
        # Every liar lied on every partition it is assigned, and each of those commits is dissent.
        for liar in liars:
            assigned = assigned_to(coordinator, task_id, round_, liar.address)
            mine = {c.partition: c.digest for c in commits if c.aggregator == liar.address}
            assert assigned and sorted(mine) == assigned
            assert {c.partition: c.digest for c in dissent if c.aggregator == liar.address} == mine
            assert all(mine[p] == liar.lies[(round_, p)] != final[p] for p in assigned)
        # No honest aggregator dissents, and the final digest has a quorum of honest assigned votes
        # (phases end by completion here, so every commit is an assigned one).
        assert {c.aggregator for c in dissent} == liar_addresses
        assert not any(c.is_fallback for c in commits)
        for partition, digest in enumerate(final):
            voters = {c.aggregator for c in commits if c.partition == partition and c.digest == digest}
            assert len(voters) >= quorum and not voters & liar_addresses
            assert coordinator.get_votes(task_id, round_, partition, digest) == (len(voters), len(voters))
            liars_here = [liar for liar in liars if (round_, partition) in liar.lies]
            assert len(liars_here) < quorum
            for wrong in {liar.lies[(round_, partition)] for liar in liars_here}:
                liar_votes = sum(liar.lies[(round_, partition)] == wrong for liar in liars_here)
                assert coordinator.get_votes(task_id, round_, partition, wrong) == (liar_votes, liar_votes)
    # Skewed lies point at real, well-formed aggregate blobs: the honest values plus SKEW.
    if lie == "skewed":
        config, _ = coordinator.get_task(task_id)
        bounds = partition_bounds(dimension, config.partitions)
        for liar in liars:
            for (round_, partition), digest in liar.lies.items():
                b = bounds[partition]
                expected = BlobHeader(
                    BlobKind.AGGREGATE, task_id, round_, partition, config.partitions, b.offset, b.length
                )
                blob = honest[0].storage.get(cid_from_digest(digest), timeout=5, max_size=blob_size(b.length))
                _, values = decode_partition(blob, expected)
                honest_values = globals_[round_][b.offset : b.offset + b.length]
                assert values.tobytes() == (honest_values + SKEW).tobytes()
    # Every node, liars included, ends with the honest final model.
    for node in (*honest, *liars):
        final_model = node.state.load_vector(task_id, "final-model")
        assert final_model is not None and final_model.tobytes() == globals_[rounds - 1].tobytes()


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("lie", LIES)
def test_lie_committed_after_finalization_is_recorded_as_aggregate_disputed(
    tmp_path: Path, lie: str, seed: int
) -> None:
    """r = 3, q = 2: the liar commits once one of its partitions is already final and others are not;
    the final one emits AggregateDisputed naming the liar, its digest and the final digest; the open
    ones are outvoted and listed as dissent; the honest model wins."""
    # Prepare: one liar that also lies on final partitions; everyone commits the round-0 update.
    chain, coordinator, task_id, honest, (liar,) = federation_with_liars(
        tmp_path, "r3-q2-one-liar", lie, seed, rounds=1, ignore_finality=True
    )
    for node in (*honest, liar):
        assert node.step() is Step.PROGRESS
    assert coordinator.get_round(task_id, 0).status == RoundStatus.AGGREGATION
    # The key is the freezing block's hash: the first node to step after the freeze draws it.
    assert coordinator.get_round(task_id, 0).assignment_key is None
    assert honest[0].step() is Step.PROGRESS
    assert coordinator.get_round(task_id, 0).assignment_key is not None
    assert coordinator.find_aggregate_commits(task_id, 0) == []
    assigned = coordinator.get_assigned_partitions(task_id, 0, liar.address)
    # Honest aggregators go one by one until a partition of the liar is final and the round is open.
    for node in honest:
        assert node.step() is Step.PROGRESS
        final = coordinator.get_final_digests(task_id, 0)
        if any(final[p] is not None for p in assigned):
            break
    already_final = [p for p in assigned if final[p] is not None]
    still_open = [p for p in assigned if final[p] is None]
    assert already_final and still_open, "the schedule must leave the liar a final and an open partition"
    assert coordinator.get_round(task_id, 0).status == RoundStatus.AGGREGATION

    # Execute: the liar commits on all its partitions, then the federation runs to the end.
    assert liar.step() is Step.PROGRESS
    status = InProcessFederation(chain, coordinator, task_id, [*honest, liar]).run()

    # Assert
    assert status == TaskStatus.COMPLETED
    final = coordinator.get_final_digests(task_id, 0)
    disputed = coordinator.find_events("AggregateDisputed", taskId=task_id, round=0)
    assert sorted(
        (
            int(e["args"]["partition"]),
            e["args"]["aggregator"],
            bytes(e["args"]["digest"]),
            bytes(e["args"]["finalDigest"]),
        )
        for e in disputed
    ) == [(p, liar.address, liar.lies[(0, p)], final[p]) for p in already_final]
    dissent = coordinator.find_dissenting_aggregators(task_id, 0)
    assert sorted((c.partition, c.aggregator) for c in dissent) == [(p, liar.address) for p in assigned]
    globals_ = check_every_finalized_round(honest[0].storage, coordinator, task_id, honest[0]._initial.size)
    assert sorted(globals_) == [0]
    assert (
        fetch_global(liar.storage, coordinator, task_id, 0, honest[0]._initial.size).tobytes() == globals_[0].tobytes()
    )
    assert np.array_equal(liar.state.load_vector(task_id, "final-model"), globals_[0])
