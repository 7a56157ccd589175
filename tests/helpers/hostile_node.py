"""A hostile ``flchain node``: the real node process with a Node that attacks the federation.

Test-only, outside the product package. Run it with the arguments of ``flchain node`` plus::

    python -m tests.helpers.hostile_node <flchain node arguments> --hostile MODE[,MODE...] [--hostile ...]
        [--hostile-spare ADDRESS ...]

from the repository root (or with it on ``PYTHONPATH``). Each ``--hostile`` gives the modes of one round;
several rotate by round number (round ``r`` uses the ``r % k``-th). Modes:

``withhold``
    commit the digest of a well-formed update manifest (and partitions) that is never stored or served.
``crafted-nested`` / ``crafted-bigint`` / ``crafted-manifest``
    commit the digest of stored manifest bytes built to hurt parsers, within the manifest size bound:
    nested brackets, or a canonical manifest whose dimension is a giant integer literal
    (``crafted-manifest``: nested in even rounds, giant integer in odd ones).
``oversized-blob``
    commit a well-formed manifest whose every partition blob is :data:`OVERSIZE` bytes over its exact size.
``forge-fallback``
    in the fallback phase, commit a random digest (its own, never stored) for every partition not final.
``false-reports``
    in the fallback phase, report every other contributor of the round (but the ``--hostile-spare``
    accounts, its partners) unavailable.
``lie-assigned``
    as soon as the assignment is drawn, commit random digests (its own) for its assigned partitions.

At most one of the first four (they choose what the node publishes) per round; a round without one
trains and publishes honestly. A round with none of the last three aggregates honestly; one with
any of them never helps honest aggregation. The update claims the task's ``max_samples`` (sample
inflation: it would dominate any average it got into).

The node is assembled exactly as ``flchain node`` does it (``fl_chain.cli``'s parser reads the
arguments, ``fl_chain.node.launch.run_node`` builds key, data, state, kubo peer and the node), with
``node_class=`` the hostile subclass. Every attack it makes is appended as a JSON line to
``<state-dir>/hostile.jsonl``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from fl_chain.chain.coordinator import RoundInfo, TaskConfig
from fl_chain.cli.stopping import Interrupted, stop_on_signals
from fl_chain.errors import ContractRevertError, FLChainError
from fl_chain.node.runtime import Node, Step
from fl_chain.protocol.blob import BlobKind, encode_partition
from fl_chain.protocol.cid import cid_from_digest, digest_from_cid
from fl_chain.protocol.manifest import Manifest, manifest_size_limit
from fl_chain.protocol.partitioning import partition_bounds
from fl_chain.protocol.unixfs import unixfs_digest
from tests.helpers.adversaries import random_digest

log = logging.getLogger("fl_chain.hostile")

#: Modes that choose what the node publishes as its update (at most one per round).
PUBLISH_MODES = ("withhold", "crafted-nested", "crafted-bigint", "crafted-manifest", "oversized-blob")
#: Modes that replace the node's aggregation.
AGGREGATION_MODES = ("forge-fallback", "false-reports", "lie-assigned")
MODES = PUBLISH_MODES + AGGREGATION_MODES

#: Bytes an oversized partition blob has beyond its exact size.
OVERSIZE = 3 * 2**20

#: Reverts after which an attack is worth trying again at the next step (the chain's clock lags).
_RETRY = {"FLCoordinatorReportTooEarly", "FLCoordinatorNotAssigned", "FLCoordinatorAssignmentNotDrawn"}


def parse_schedule(groups: Sequence[str]) -> list[frozenset[str]]:
    """``["withhold,forge-fallback", "lie-assigned"]`` -> one mode set per round (rotating)."""
    schedule = []
    for group in groups:
        modes = frozenset(m.strip() for m in group.split(",") if m.strip())
        unknown = sorted(modes - set(MODES))
        if unknown:
            raise SystemExit(f"unknown hostile mode(s) {unknown}; choose from {list(MODES)}")
        if len(modes & set(PUBLISH_MODES)) > 1:
            raise SystemExit(f"at most one of {list(PUBLISH_MODES)} per round, got {sorted(modes)}")
        schedule.append(modes)
    if not schedule:
        raise SystemExit("--hostile needs at least one mode")
    return schedule


def forged_digest(kind: str, address: str, round_: int, partition: int) -> bytes:
    """The digest a hostile node commits for ``partition`` (``kind``: ``lie`` or ``forge``): its own, stored nowhere."""
    return random_digest(f"hostile/{kind}/{address.lower()}/{round_}/{partition}")


class HostileNode(Node):
    """The real node with its update and aggregation steps replaced as :attr:`schedule` says."""

    #: Mode set per round, rotating by round number (set by :func:`configure`).
    schedule: ClassVar[list[frozenset[str]]] = [frozenset()]
    #: Accounts this node never reports (its partners).
    spare: frozenset[str] = frozenset()

    def __init__(self, **node: object) -> None:
        super().__init__(**node)  # type: ignore[arg-type]
        self._attacked: dict[int, set[str]] = {}  # round -> attacks done
        self._reported: dict[int, set[str]] = {}  # round -> contributors reported (or refused)
        self._journal = self.state.root / "hostile.jsonl"

    def modes(self, round_: int) -> frozenset[str]:
        return self.schedule[round_ % len(self.schedule)]

    def record(self, round_: int, attack: str, **details: object) -> None:
        entry = {"round": round_, "attack": attack, "time": time.time(), **details}
        with open(self._journal, "a") as journal:
            journal.write(json.dumps(entry) + "\n")
        self.report(f"round {round_}: hostile {attack} {details}")

    # -- update -----------------------------------------------------------------------------------

    def _update_phase(self, round_: int, info: RoundInfo, base: np.ndarray) -> Step:
        publish = self.modes(round_) & set(PUBLISH_MODES)
        progress = self.state.round(self.task_id, round_)
        if not publish or progress.update_committed or self.options.clock() >= info.update_deadline:
            return super()._update_phase(round_, info, base)
        (mode,) = publish
        if mode == "crafted-manifest":
            mode = "crafted-nested" if round_ % 2 == 0 else "crafted-bigint"
        digest = getattr(self, "_" + mode.replace("-", "_"))(round_, base)
        samples = self.config.max_samples
        try:
            self.coordinator.commit_update(self.account, self.task_id, round_, digest, samples)
        except ContractRevertError as exc:
            if exc.name in ("FLCoordinatorUpdatePhaseClosed", "FLCoordinatorRoundNotCurrent"):
                self.record(round_, mode, refused=exc.name)
                return Step.PROGRESS
            if exc.name != "FLCoordinatorUpdateAlreadyCommitted":
                raise
        progress.update_digest = digest.hex()
        progress.samples = samples
        progress.update_committed = True
        self.state.save_round(self.task_id, round_, progress)
        self.record(round_, mode, digest=digest.hex(), samples=samples)
        return Step.PROGRESS

    def _blobs(self, round_: int, vector_of: dict[int, np.ndarray] | None, base: np.ndarray) -> list[bytes]:
        """Update partition blobs naming this node: ``base``'s values, or ``vector_of[p]`` for partition p."""
        return [
            encode_partition(
                (vector_of or {}).get(b.index, base[b.offset : b.offset + b.length]),
                kind=BlobKind.UPDATE,
                task_id=self.task_id,
                round_=round_,
                partition=b.index,
                partitions=self.config.partitions,
                offset=b.offset,
                contributor=self.address,
            )
            for b in partition_bounds(base.size, self.config.partitions)
        ]

    def _withhold(self, round_: int, base: np.ndarray) -> bytes:
        """A well-formed update manifest, its digest computed, nothing stored (nobody can fetch it)."""
        cids = tuple(cid_from_digest(unixfs_digest(blob)) for blob in self._blobs(round_, None, base))
        manifest = Manifest("update", self.task_id, round_, base.size, cids, contributor=self.address)
        return unixfs_digest(manifest.to_bytes())

    def _crafted_nested(self, round_: int, base: np.ndarray) -> bytes:
        """As many nested brackets as the manifest size bound lets through to the parser."""
        depth = manifest_size_limit(self.config.partitions) // 2
        return digest_from_cid(self.storage.put(b"[" * depth + b"]" * depth))

    def _crafted_bigint(self, round_: int, base: np.ndarray) -> bytes:
        """A canonical update manifest (partitions stored) whose dimension has as many digits as fit the size bound."""
        cids = tuple(self.storage.put(blob) for blob in self._blobs(round_, None, base))
        one = Manifest("update", self.task_id, round_, 1, cids, contributor=self.address)
        digits = manifest_size_limit(self.config.partitions) - len(one.to_bytes()) + 1
        data = Manifest("update", self.task_id, round_, 10**digits - 1, cids, contributor=self.address).to_bytes()
        return digest_from_cid(self.storage.put(data))

    def _oversized_blob(self, round_: int, base: np.ndarray) -> bytes:
        """A well-formed manifest whose partition blobs each carry OVERSIZE bytes of values too many."""
        extra = OVERSIZE // 4
        vectors = {
            b.index: np.zeros(b.length + extra, dtype=np.float32)
            for b in partition_bounds(base.size, self.config.partitions)
        }
        cids = tuple(self.storage.put(blob) for blob in self._blobs(round_, vectors, base))
        manifest = Manifest("update", self.task_id, round_, base.size, cids, contributor=self.address)
        return digest_from_cid(self.storage.put(manifest.to_bytes()))

    # -- aggregation ------------------------------------------------------------------------------

    def _aggregation_phase(self, round_: int, info: RoundInfo, config: TaskConfig, base: np.ndarray) -> Step:
        modes = self.modes(round_) & set(AGGREGATION_MODES)
        if not modes:
            return super()._aggregation_phase(round_, info, config, base)
        now = self.options.clock()
        if now >= info.fallback_deadline:
            return self._advance()
        if info.assignment_key is None:
            return self._draw_assignment(round_)
        done = self._attacked.setdefault(round_, set())
        if now < info.aggregation_deadline:
            if "lie-assigned" in modes and "lie-assigned" not in done:
                mine = self.coordinator.get_assigned_partitions(self.task_id, round_, self.address)
                lies = {p: forged_digest("lie", self.address, round_, p) for p in mine}
                return self._commit_forged(round_, "lie-assigned", lies, done)
            return Step.IDLE
        if "forge-fallback" in modes and "forge-fallback" not in done:
            final = self.coordinator.get_final_digests(self.task_id, round_)
            committed = {
                c.partition
                for c in self.coordinator.find_aggregate_commits(self.task_id, round_)
                if c.aggregator == self.address
            }
            todo = [p for p in range(config.partitions) if final[p] is None and p not in committed]
            forged = {p: forged_digest("forge", self.address, round_, p) for p in todo}
            return self._commit_forged(round_, "forge-fallback", forged, done)
        if "false-reports" in modes and "false-reports" not in done:
            return self._false_reports(round_, done)
        return Step.IDLE

    def _commit_forged(self, round_: int, attack: str, digests: dict[int, bytes], done: set[str]) -> Step:
        partitions = sorted(digests)
        if partitions:
            try:
                self.coordinator.commit_aggregates(
                    self.account, self.task_id, round_, partitions, [digests[p] for p in partitions]
                )
            except ContractRevertError as exc:
                if exc.name in _RETRY:
                    return Step.IDLE
                self.record(round_, attack, refused=exc.name)
                done.add(attack)
                return Step.PROGRESS
        self.record(round_, attack, digests={p: digests[p].hex() for p in partitions})
        done.add(attack)
        return Step.PROGRESS

    def _false_reports(self, round_: int, done: set[str]) -> Step:
        spare = {a.lower() for a in self.spare} | {self.address.lower()}
        reported = self._reported.setdefault(round_, set())
        for commit in self.coordinator.find_update_commits(self.task_id, round_):
            if commit.contributor.lower() in spare or commit.contributor in reported:
                continue
            try:
                self.coordinator.report_unavailable(self.account, self.task_id, round_, commit.contributor)
            except ContractRevertError as exc:
                if exc.name in _RETRY:
                    return Step.IDLE
                self.record(round_, "false-reports", victim=commit.contributor, refused=exc.name)
                if (
                    exc.name == "FLCoordinatorNotAContributor"
                    and str(exc.arguments.get("account")).lower() == self.address.lower()
                ):
                    break  # this node was excluded: it has no vote left
                reported.add(commit.contributor)
                continue
            reported.add(commit.contributor)
            self.record(round_, "false-reports", victim=commit.contributor)
            return Step.PROGRESS  # one report per step: the next step re-reads the round
        done.add("false-reports")
        return Step.PROGRESS


def configure(schedule: list[frozenset[str]], spare: Sequence[str]) -> type[HostileNode]:
    """A HostileNode class with this schedule and these partners."""
    return type("ConfiguredHostileNode", (HostileNode,), {"schedule": schedule, "spare": frozenset(spare)})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--hostile", action="append", default=[], metavar="MODE[,MODE...]")
    parser.add_argument("--hostile-spare", action="append", default=[], metavar="ADDRESS")
    hostile, rest = parser.parse_known_args(argv)
    cls = configure(parse_schedule(hostile.hostile), hostile.hostile_spare)

    from fl_chain.cli import build_parser
    from fl_chain.node.launch import NodeArgs, run_node

    options = build_parser().parse_args(["node", *rest])

    stop_on_signals()  # as `flchain node`: Ctrl-C and SIGTERM close the peer and logs
    try:
        return run_node(NodeArgs.from_options(options), _stamped, node_class=cls)
    except FLChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"interrupted by {stop.signal_name}", file=sys.stderr)
        return stop.exit_status


def _stamped(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


if __name__ == "__main__":
    status = main()
    gc.freeze()  # as `flchain`: no final full collection of torch's objects at exit
    sys.exit(status)
