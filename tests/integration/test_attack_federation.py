"""Attacks on a running federation (real contract on the embedded chain, real node runtime, real
training): a coalition below half of the contributors cannot forge, censor, crash or brick it.

- A captured partition (r = q = 1, so one aggregator decides it) finalizes with a digest of content
  nobody has, or of bytes that are not a partition blob. Honest nodes cannot build the global
  model: they dispute the round, a contributor majority undoes it, and the task completes from the
  previous model, every finalized round equal to FedAvg of its updates.
- A contributor publishes a manifest built to crash parsers (100k nested brackets) or one that
  points at an oversized blob: every honest aggregator excludes it and the round finalizes.
- Colluding withholders that also file false reports and fallback votes against an honest site
  change nothing while they are a minority.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from fl_chain.chain.coordinator import FailureReason, RoundInfo, RoundStatus, TaskConfig, TaskStatus
from fl_chain.errors import ContractRevertError
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.node.runtime import Node, Step
from fl_chain.node.state import RoundProgress
from fl_chain.protocol.blob import BlobKind, encode_partition
from fl_chain.protocol.cid import digest_from_cid
from fl_chain.protocol.manifest import Manifest
from fl_chain.protocol.partitioning import partition_bounds
from fl_chain.protocol.task import TaskSpec
from tests.helpers.adversaries import random_digest, rebuild
from tests.helpers.federation_checks import check_every_finalized_round

NODES = 4
ROUNDS = 2


def spec(**protocol: Any) -> TaskSpec:
    return TaskSpec.from_dict(
        {
            "protocol": {
                "rounds": ROUNDS,
                "partitions": 4,
                "replication": 2,
                "quorum": 2,
                "min_contributors": 3,
                "update_duration": 3600,
                "aggregation_duration": 3600,
                **protocol,
            },
            "model": {"name": "logreg", "seed": 3},
            "dataset": {"name": "digits", "split": "iid"},
            "training": {"epochs": 1, "batch_size": 32, "lr": 0.1},
        }
    )


class BrickingAggregator(Node):
    """Trains and contributes honestly; in round 0 commits, for its assigned partitions, the digest of
    content nobody has (``"missing"``) or of bytes that are no partition blob (``"garbage"``). It
    never disputes (it wants the round to stand)."""

    def __init__(self, *, mode: str, **node: Any) -> None:
        super().__init__(**node)
        self.mode = mode
        self.bricked: list[int] = []

    def _commit_aggregates(self, round_: int, ready: dict[int, bytes], progress: RoundProgress, fallback: bool) -> Step:
        if round_ == 0:
            if self.mode == "missing":
                ready = {p: random_digest(f"brick/{p}") for p in ready}
            else:
                ready = {
                    p: digest_from_cid(self.storage.put(b"not a partition blob " + bytes([p]) * 64)) for p in ready
                }
            self.bricked += sorted(ready)
        return super()._commit_aggregates(round_, ready, progress, fallback)

    def _dispute(self, round_: int, reason: str) -> None:
        return None


def run_bricked(tmp_path: Path, mode: str) -> None:
    task = spec(replication=1, quorum=1)
    chain, coordinator, task_id, nodes = build_federation(task, nodes=NODES, state_root=tmp_path)
    nodes[1] = rebuild(nodes[1], BrickingAggregator, mode=mode)
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()
    assert status == TaskStatus.COMPLETED
    assert nodes[1].bricked, "the attacker was assigned nothing to brick"
    round0 = coordinator.get_round(task_id, 0)
    assert (round0.status, round0.failure) == (RoundStatus.FAILED, FailureReason.DISPUTED)
    assert round0.disputes == NODES - 1  # every honest contributor disputed
    _, state = coordinator.get_task(task_id)
    assert state.finalized_rounds == ROUNDS
    globals_ = check_every_finalized_round(nodes[0].storage, coordinator, task_id, nodes[0]._initial.size)
    assert 0 not in globals_ and len(globals_) == ROUNDS
    final = nodes[0].state.load_vector(task_id, "final-model")
    assert final is not None and final.tobytes() == globals_[max(globals_)].tobytes()


def test_attack_final_partition_nobody_has_is_disputed_and_the_task_completes(tmp_path: Path) -> None:
    run_bricked(tmp_path, "missing")


def test_attack_final_partition_that_is_no_blob_is_disputed_and_the_task_completes(tmp_path: Path) -> None:
    run_bricked(tmp_path, "garbage")


class CraftedManifestContributor(Node):
    """Commits, every round, the digest of a hostile manifest instead of its update's."""

    def __init__(self, *, craft: str, **node: Any) -> None:
        super().__init__(**node)
        self.craft = craft

    def _update_phase(self, round_: int, info: RoundInfo, base: np.ndarray) -> Step:
        progress = self.state.round(self.task_id, round_)
        if progress.update_committed or self.options.clock() >= info.update_deadline:
            return super()._update_phase(round_, info, base)
        if self.craft == "nested":
            data = b"[" * 100_000 + b"]" * 100_000
        else:  # a well-formed manifest whose first partition is a 5 MB blob
            bounds = partition_bounds(base.size, self.config.partitions)
            huge = np.zeros(5_000_000 // 4, dtype=np.float32)
            cids = [
                self.storage.put(
                    encode_partition(
                        huge if b.index == 0 else base[b.offset : b.offset + b.length],
                        kind=BlobKind.UPDATE,
                        task_id=self.task_id,
                        round_=round_,
                        partition=b.index,
                        partitions=self.config.partitions,
                        offset=b.offset,
                        contributor=bytes.fromhex(self.address[2:]),
                    )
                )
                for b in bounds
            ]
            data = Manifest("update", self.task_id, round_, base.size, tuple(cids), self.address).to_bytes()
        digest = digest_from_cid(self.storage.put(data))
        self.coordinator.commit_update(self.account, self.task_id, round_, digest, 100)
        progress.update_committed = True
        self.state.save_round(self.task_id, round_, progress)
        return Step.PROGRESS


def run_crafted(tmp_path: Path, craft: str) -> None:
    chain, coordinator, task_id, nodes = build_federation(spec(), nodes=NODES, state_root=tmp_path)
    nodes[2] = rebuild(nodes[2], CraftedManifestContributor, craft=craft)
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()
    assert status == TaskStatus.COMPLETED
    _, state = coordinator.get_task(task_id)
    assert (state.finalized_rounds, state.current_round) == (ROUNDS, ROUNDS - 1), "a round had to be retried"
    honest = {n.address for n in nodes} - {nodes[2].address}
    result = check_every_finalized_round(nodes[0].storage, coordinator, task_id, nodes[0]._initial.size)
    assert sorted(result) == list(range(ROUNDS))
    # the hostile update is in every round's contributor set, and excluded from every average alike
    for round_ in range(ROUNDS):
        contributors = {c.contributor for c in coordinator.find_update_commits(task_id, round_)}
        assert contributors == honest | {nodes[2].address}
        assert coordinator.find_dissenting_aggregators(task_id, round_) == []


def test_attack_deeply_nested_manifest_is_excluded_alike_and_no_node_crashes(tmp_path: Path) -> None:
    run_crafted(tmp_path, "nested")


def test_attack_manifest_pointing_at_an_oversized_blob_is_excluded_alike(tmp_path: Path) -> None:
    run_crafted(tmp_path, "oversized")


class WithholdingCensor(Node):
    """Commits a digest of content it never publishes (so its update is unavailable), and in the
    fallback phase reports an honest ``victim`` unavailable and votes a forged digest everywhere."""

    def __init__(self, *, victim: str, **node: Any) -> None:
        super().__init__(**node)
        self.victim = victim

    def _update_phase(self, round_: int, info: RoundInfo, base: np.ndarray) -> Step:
        progress = self.state.round(self.task_id, round_)
        if progress.update_committed or self.options.clock() >= info.update_deadline:
            return super()._update_phase(round_, info, base)
        self.coordinator.commit_update(
            self.account, self.task_id, round_, random_digest(f"withheld/{round_}/{self.address}"), 100
        )
        progress.update_committed = True
        self.state.save_round(self.task_id, round_, progress)
        return Step.PROGRESS

    def _aggregation_phase(self, round_: int, info: RoundInfo, config: TaskConfig, base: np.ndarray) -> Step:
        if info.assignment_key is None:
            return self._draw_assignment(round_)
        if self.options.clock() < info.aggregation_deadline:
            return Step.IDLE
        progress = self.state.round(self.task_id, round_)
        if progress.reported:
            return Step.IDLE
        for call in (
            lambda: self.coordinator.report_unavailable(self.account, self.task_id, round_, self.victim),
            lambda: self.coordinator.commit_aggregates(
                self.account,
                self.task_id,
                round_,
                list(range(config.partitions)),
                [random_digest(f"forged/{round_}/{p}") for p in range(config.partitions)],
            ),
        ):
            with contextlib.suppress(ContractRevertError):  # an excluded censor has no vote left
                call()
        progress.reported = [self.victim]
        self.state.save_round(self.task_id, round_, progress)
        return Step.PROGRESS


def test_attack_withholding_censors_below_half_change_nothing(tmp_path: Path) -> None:
    """Two of five contributors withhold their updates, report an honest site and vote forged
    digests in the fallback phase, every round. The honest majority excludes them and finalizes
    FedAvg of the three honest updates; the honest victim is never excluded."""
    chain, coordinator, task_id, nodes = build_federation(spec(min_contributors=3), nodes=5, state_root=tmp_path)
    victim = nodes[0].address
    for i in (3, 4):
        nodes[i] = rebuild(nodes[i], WithholdingCensor, victim=victim)
    status = InProcessFederation(chain, coordinator, task_id, nodes[:3] + nodes[3:]).run()
    assert status == TaskStatus.COMPLETED
    censors = {nodes[3].address, nodes[4].address}
    for round_ in range(coordinator.get_task(task_id)[1].current_round + 1):
        info = coordinator.get_round(task_id, round_)
        if info.status != RoundStatus.FINALIZED:
            continue
        assert set(coordinator.get_excluded(task_id, round_)) == censors
        forged = {random_digest(f"forged/{round_}/{p}") for p in range(4)}
        assert not forged & {d for d in coordinator.get_final_digests(task_id, round_) if d}
    check_every_finalized_round(nodes[0].storage, coordinator, task_id, nodes[0]._initial.size)
