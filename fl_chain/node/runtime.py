"""The node runtime: a state machine driven by the chain, one idempotent step at a time.

Per round: all-gather the global model (final partitions of the latest finalized round, or the
task's initial model) -> train -> put the update's partitions -> commit the update manifest digest
-> for every partition assigned to this node (and, after the aggregation deadline, every partition
still without quorum): fetch that partition from every contributor frozen on chain, verify,
validate, aggregate, put, commit the digests -> the contract finalizes -> next round.

Rules that keep honest aggregators in agreement:

- Contributions are taken in canonical order (by address) and aggregated deterministically.
- Content is addressed by hash, so an invalid contribution (a blob or manifest that does not
  verify, non-finite values, a wrong length, a change from the global model above the norm bound,
  a claimed sample count above the task's cap) is invalid for every aggregator alike and is
  excluded by every one of them.
- An *unavailable* contribution (nothing arrived within the timeout) is never dropped on one
  node's say-so: the aggregator does not commit that partition and tries again. In the fallback
  phase it reports the contributor on chain; once a majority of the round's contributors reported
  it, the contract excludes that update and every aggregator leaves it out of the partitions not
  yet final. So no aggregator commits an average over a set the chain does not define, and a
  contributor whose content nobody can fetch (crashed, or withholding on purpose) cannot stall a
  round. Only the round's contributors vote in its fallback phase.
- A finalized global model this node cannot fetch (for ``dispute_after`` seconds) or validate is
  disputed on chain; a majority of that round's contributors undoes the round, and the task goes
  on from the previous global model. A node neither crashes nor idles forever on a bad final round.

``step()`` does one unit of work and returns; ``run()`` calls it until the task ends. Every step
reads the chain first, so a node that restarts (or joins late) picks up where the chain is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount

from fl_chain.aggregation import ContributionRule
from fl_chain.chain.coordinator import (
    Coordinator,
    RoundInfo,
    RoundStatus,
    TaskConfig,
    TaskState,
    TaskStatus,
    UpdateCommit,
)
from fl_chain.errors import (
    BlobInvalidError,
    BlobNotFoundError,
    ChainError,
    ChainUnreachableError,
    ContractRevertError,
    TransactionFailedError,
)
from fl_chain.exchange.gather import final_digests, gather_partitions
from fl_chain.exchange.peering import PeerDirectory, connect_to_participants
from fl_chain.exchange.secure import SecureParams
from fl_chain.exchange.transfer import publish_vector
from fl_chain.exchange.updates import RoundUpdates
from fl_chain.node.block_watch import BlockWatch
from fl_chain.node.hooks import NodeObserver, ObserverGroup, Phase
from fl_chain.node.logs import RoundLogs
from fl_chain.node.secure import SecureRounds
from fl_chain.node.state import FINAL_MODEL, NodeState, RoundProgress
from fl_chain.node.step import Step
from fl_chain.privacy.dp import clip_update, noise_key
from fl_chain.privacy.keys import KeyPair
from fl_chain.protocol.assignment import assigned_partitions
from fl_chain.protocol.blob import BlobKind, blob_size, encode_partition
from fl_chain.protocol.cid import cid_from_digest, digest_from_cid
from fl_chain.protocol.manifest import Evaluation, Manifest
from fl_chain.protocol.partitioning import partition_bounds
from fl_chain.protocol.task import TaskSpec
from fl_chain.storage.base import Storage
from fl_chain.storage.concurrent import run_gets
from fl_chain.training.trainer import Trainer, training_seed

log = logging.getLogger("fl_chain.node")

#: Consecutive failed steps (transactions or chain access) after which a node gives up.
MAX_CONSECUTIVE_FAILURES = 120
#: Seconds a fetch ahead of the all-gather may take (it is only a head start: the all-gather retries).
PREFETCH_TIMEOUT = 2.0

#: Revert names that only mean another node got there first or the round moved on.
_BENIGN_REVERTS = {
    "FLCoordinatorNothingToAdvance",
    "FLCoordinatorRoundNotCurrent",
    "FLCoordinatorAggregationNotOpen",
    "FLCoordinatorWrongTaskStatus",
    "FLCoordinatorRoundExpired",
    "FLCoordinatorAssignmentNotDrawn",
}


@dataclass
class NodeOptions:
    """Timing of a node."""

    #: Longest wait between two steps while there is nothing to do (deadlines pass by wall time).
    poll_interval: float = 0.5
    #: While waiting, how often to look for a new block; a new block ends the wait at once, so a
    #: node reacts within a block of a change. ``None``: just wait ``poll_interval``.
    block_poll_interval: float | None = 0.05
    fetch_timeout: float = 20.0
    clock: Callable[[], float] = time.time
    #: Seconds ``run`` keeps serving blobs after the task ended, so slower nodes can still fetch the
    #: final model from this peer; ``None`` means the task's aggregation duration.
    linger: float | None = None
    #: Seconds a node keeps trying to fetch the final model of a task that ended (its peers may all
    #: be gone) before it stops with a warning; the task stays unfinished in its state directory, so
    #: a later start tries again, and ``flchain model get`` fetches it from any peer that serves it.
    final_model_timeout: float = 120.0
    #: Seconds (of ``clock``) a finalized global model may stay unfetchable before this node disputes
    #: the round on chain; ``None`` means half the task's update duration. An invalid one is disputed at once.
    dispute_after: float | None = None


class Node:
    """One participant in one task."""

    def __init__(
        self,
        *,
        coordinator: Coordinator,
        account: LocalAccount,
        task_id: int,
        spec: TaskSpec,
        trainer: Trainer,
        storage: Storage,
        state: NodeState,
        options: NodeOptions | None = None,
        logs: RoundLogs | None = None,
        report: Callable[[str], None] | None = None,
        observers: Iterable[NodeObserver] = (),
    ) -> None:
        self.coordinator = coordinator
        self.account = account
        self.address = account.address
        self.task_id = task_id
        self.spec = spec
        self.trainer = trainer
        self.storage = storage
        self.state = state
        self.options = options or NodeOptions()
        self._block_watch: BlockWatch | None = None
        self.logs = logs
        self.report = report or (lambda message: None)
        self.observers = ObserverGroup(observers)
        self._round: int | None = None  # the task's current round in this step
        #: Which contributions count and how they combine: the same rule the audit applies.
        self.rule: ContributionRule = spec.contribution_rule()
        self.config, _ = coordinator.get_task(task_id)
        self._initial = trainer.initial_vector()
        spec.check_matches_chain(self.config, self._initial, task_id=task_id)
        state.bind_task(task_id, coordinator.task_anchor(task_id))
        self._global: tuple[int, np.ndarray] | None = None
        self._final_wait_since: float | None = None
        self._budget_checked: int | None = None  # the round whose released-round count is below
        self._budget_released = 0
        self._unfetchable_since: dict[int, float] = {}
        self._key_missing_since: dict[int, float] = {}
        self._finishing = False
        self._unavailable: dict[int, set[str]] = {}
        self._prefetched: set[bytes] = set()  # final partition digests fetched ahead of the all-gather
        self._commits: dict[int, list[UpdateCommit]] = {}
        self._updates: dict[int, RoundUpdates] = {}  # the current round's, manifests fetched once
        self._noise_keys: dict[int, bytes] = {}  # differential privacy: each round's noise key, from its seed
        self._joined = False
        self._peers = PeerDirectory.shared(coordinator, task_id)
        self.last_metrics: dict[str, float] = {}
        #: This node's evaluation of the latest global model it fetched, published in its next update manifest.
        self._evaluation: Evaluation | None = None
        #: Secure aggregation (a task created with ``createSecureTask``): setups, masking, reveals, unmasking.
        self.secure: SecureRounds | None = (
            SecureRounds(self, SecureParams.of(spec)) if self.config.secure_aggregation is not None else None
        )

    # -- setup ----------------------------------------------------------------------------------

    def ensure_joined(self) -> None:
        """Join the task with this node's multiaddrs, or refresh them if they changed."""
        if self._joined:
            return
        multiaddrs = self.storage.multiaddrs()
        if not self.coordinator.has_joined(self.task_id, self.address):
            # A secure-aggregation task: register the long-term X25519 key share boxes are sealed under.
            public_key = KeyPair.from_private(self.state.long_term_key()).public if self.secure is not None else b""
            self.coordinator.join(self.account, self.task_id, multiaddrs, public_key)
            self.report(f"joined task {self.task_id} as {self.address}")
        else:
            registered = next(p for p in self.coordinator.get_participants(self.task_id) if p.account == self.address)
            if list(registered.multiaddrs) != multiaddrs:
                self.coordinator.update_peer(self.account, self.task_id, multiaddrs)
                log.info("updated registered multiaddrs to %s", multiaddrs)
        self._joined = True

    # -- the loop -------------------------------------------------------------------------------

    def run(self, *, should_stop: Callable[[], bool] = lambda: False) -> Step:
        """Step until the task ends (or ``should_stop()``); returns the last step's result."""
        failures = 0
        while not should_stop():
            try:
                result = self.step()
                failures = 0
            except (TransactionFailedError, ChainUnreachableError) as exc:
                # A transaction that ran out of gas or lost a race, or a chain briefly away: the
                # next step re-reads the chain and does what is still to do.
                failures += 1
                if failures > MAX_CONSECUTIVE_FAILURES:
                    raise
                self.report(f"warning: {exc} (retrying)")
                log.warning("step failed (%d in a row): %s", failures, exc)
                time.sleep(self.options.poll_interval * min(failures, 10))
                continue
            if result is Step.DONE:
                linger = self.options.linger if self.options.linger is not None else self.config.aggregation_duration
                self.report(f"serving blobs to slower peers for {linger:.0f} s before exiting")
                deadline = time.monotonic() + linger
                while time.monotonic() < deadline and not should_stop():
                    time.sleep(min(self.options.poll_interval, max(0.0, deadline - time.monotonic())))
                return result
            if result is Step.STOPPED:
                return result
            if result is Step.IDLE:
                self._wait_for_next_block(should_stop)
        return Step.IDLE

    def _wait_for_next_block(self, should_stop: Callable[[], bool]) -> None:
        """Sleep until the chain has a new block or ``poll_interval`` passed, whichever comes first.

        The chain's state changes only with a block, so an idle node steps again as soon as one
        arrives; with no new block it still steps every ``poll_interval`` (a deadline passing is
        wall time, not a block). It looks for the block shortly before it is due and then every
        ``block_poll_interval`` (``BlockWatch``), not all the time. A chain that does not answer
        just makes this a plain wait.
        """
        deadline = time.monotonic() + self.options.poll_interval
        look = self.options.block_poll_interval
        if look is None or look >= self.options.poll_interval:
            time.sleep(self.options.poll_interval)
            return
        if self._block_watch is None or self._block_watch.fastest != look:
            self._block_watch = BlockWatch(look)
        watch = self._block_watch
        try:
            start = self.coordinator.client.block_number()
            watch.observe(start, time.monotonic())
        except ChainError:
            start = None
        while (left := deadline - time.monotonic()) > 0 and not should_stop():
            time.sleep(min(watch.sleep_before_look(time.monotonic()) if start is not None else look, left))
            if start is None:
                continue
            try:
                number = self.coordinator.client.block_number()
            except ChainError:
                start = None
                continue
            watch.observe(number, time.monotonic())
            if number != start:
                return

    def step(self) -> Step:
        """Do the next piece of work the chain state calls for."""
        config, task = self.coordinator.get_task(self.task_id)
        if task.status == TaskStatus.OPEN:
            self.ensure_joined()
            return Step.IDLE
        if task.status in (TaskStatus.COMPLETED, TaskStatus.CANCELLED):
            self.observers.in_round(self.task_id, None)
            return self._finish(task)
        self.ensure_joined()
        self._finishing = False  # a completed task whose last round was disputed runs again
        round_ = self._round = task.current_round
        self.observers.in_round(self.task_id, round_)
        if self.logs is not None:
            self.logs.enter_round(self.task_id, round_)
        if self._budget_spent(round_):
            return Step.STOPPED
        base = self._global_model(task)
        if base is None:
            return Step.IDLE
        info = self.coordinator.get_round(self.task_id, round_)
        if self.secure is not None:
            if info.status == RoundStatus.SHARES:
                return self.secure.shares_phase(round_, info)
            if info.status == RoundStatus.UPDATE:
                return self.secure.update_phase(round_, info, base)
            if info.status == RoundStatus.UNMASK:
                return self.secure.unmask_phase(round_, info, base)
        if info.status == RoundStatus.UPDATE:
            return self._update_phase(round_, info, base)
        if info.status == RoundStatus.AGGREGATION:
            return self._aggregation_phase(round_, info, config, base)
        return Step.IDLE

    def _budget_spent(self, round_: int) -> bool:
        """Whether the epsilon budget allows no more rounds: the rounds before ``round_`` that released a
        final partition (a round that failed after some partition finalized counts too) reached the
        rounds the budget affords. Checked once per round; the task only gets that many rounds on chain,
        so this stops a node only after such a failed round."""
        affordable = self.spec.affordable_rounds()
        if affordable is None:
            return False
        if self._budget_checked != round_:
            released = [r for r in self.coordinator.released_rounds(self.task_id) if r < round_]
            self._budget_checked, self._budget_released = round_, len(released)
        if self._budget_released < affordable:
            return False
        eps = self.spec.epsilon_after(self._budget_released)
        self.report(
            f"privacy budget spent: {self._budget_released} rounds released a model (eps={eps:.4g}, budget "
            f"{self.spec.dp_epsilon_budget:g}); this node contributes no more to task {self.task_id} "
            f"(the operator can cancel it with `flchain task cancel`)"
        )
        return True

    def _finish(self, task: TaskState) -> Step:
        if task.status == TaskStatus.COMPLETED:
            self._finishing = True
            final = self._global_model(task)
            if final is None:
                now = time.monotonic()
                self._final_wait_since = self._final_wait_since or now
                if now - self._final_wait_since < self.options.final_model_timeout:
                    return Step.IDLE
                self.report(
                    f"warning: task {self.task_id} completed, but no peer served its final model (round "
                    f"{task.latest_finalized_round}) within {self.options.final_model_timeout:.0f} s; start this "
                    f"node again or use `flchain model get` when a peer that has it is up"
                )
                return Step.STOPPED
            self.state.save_vector(self.task_id, FINAL_MODEL, final)
            self.report(f"task {self.task_id} completed after {task.finalized_rounds} rounds; final model saved")
        else:
            self.report(f"task {self.task_id} was cancelled")
        self.state.mark_finished(self.task_id)
        return Step.DONE

    # -- global model ---------------------------------------------------------------------------

    def _global_model(self, task: TaskState) -> np.ndarray | None:
        """The model this round starts from, fetched and verified if this node does not have it yet."""
        want = task.latest_finalized_round if task.latest_finalized_round is not None else -1
        if self._global is not None and self._global[0] == want:
            return self._global[1]
        if self.state.global_round(self.task_id) == want:
            vector = self.state.load_vector(self.task_id, "global")
        elif want == -1:
            vector = self._initial
        else:
            with self.observers.phase(self.task_id, task.current_round, Phase.FETCH_GLOBAL):
                vector = self._fetch_global(want)
            if vector is None:
                return None
        assert vector is not None
        self.state.save_global(self.task_id, want, vector)
        self._global = (want, vector)
        if want >= 0:
            self.last_metrics = self.trainer.evaluate(vector)
            self._evaluation = _evaluation(want, self.last_metrics, getattr(self.trainer, "test_samples", 0))
            shown = " ".join(f"{k}={v:.4f}" for k, v in self.last_metrics.items())
            released = len(self.coordinator.released_rounds(self.task_id)) if self.spec.differential_privacy else 0
            eps = self.spec.epsilon_after(released)
            if eps is not None:
                privacy = f"eps={eps:.4g} (delta={self.spec.dp_delta:g}, {released} released rounds)"
                shown += f" {privacy}"
                log.info("round %d: differential privacy spent: %s", want, privacy)
            self.report(f"round {want} global model {self.global_cid(want)[:16]}… {shown}".rstrip())
        return vector

    def _base_evaluation(self) -> Evaluation | None:
        """This node's evaluation of the global model its update is trained from (None for the initial model,
        and always None in a task with differential privacy: a site's test metrics depend on its private data
        and no accountant covers them)."""
        if self.spec.differential_privacy:
            return None
        evaluation, base = self._evaluation, self._global
        return evaluation if evaluation is not None and base is not None and evaluation.round == base[0] else None

    def global_cid(self, round_: int) -> str:
        """CID of the model manifest of ``round_``'s global model (computed, not fetched)."""
        digests = self.coordinator.get_final_digests(self.task_id, round_)
        manifest = Manifest(
            "model", self.task_id, round_, self._initial.size, tuple(cid_from_digest(d) for d in digests if d)
        )
        return cid_from_digest(_manifest_digest(manifest))

    def _fetch_global(self, round_: int) -> np.ndarray | None:
        """All-gather: every final partition of ``round_``, verified against the chain.

        ``None`` while a partition is not final or not available. A partition that does not verify,
        or stays unavailable for ``dispute_after`` seconds, makes this node dispute the round.
        """
        digests = final_digests(self.coordinator, self.task_id, round_)
        if digests is None:
            return None
        self._connect_all()
        try:
            vector = gather_partitions(
                self.storage,
                digests,
                task_id=self.task_id,
                round_=round_,
                timeout=self.options.fetch_timeout,
                dimension=self._initial.size,
            )
        except BlobNotFoundError as exc:
            log.warning("global model of round %d: %s", round_, exc)
            now = self.options.clock()
            since = self._unfetchable_since.setdefault(round_, now)
            patience = self.options.dispute_after
            if patience is None:
                patience = self.config.update_duration / 2
            if self._finishing:  # dispute a completed task's last round before giving up on it
                patience = min(patience, self.options.final_model_timeout / 2)
            if now - since >= patience:
                self._dispute(round_, f"{exc} (unavailable for {now - since:.0f} s)")
            return None
        except BlobInvalidError as exc:
            log.warning("global model of round %d: %s", round_, exc)
            self._dispute(round_, f"{exc} (invalid)")
            return None
        self._unfetchable_since.pop(round_, None)
        return vector

    def _dispute(self, round_: int, reason: str) -> None:
        """Dispute finalized ``round_`` on chain (once; only a contributor of it has a vote)."""
        progress = self.state.round(self.task_id, round_)
        if progress.disputed:
            return
        try:
            self.coordinator.dispute_round(self.account, self.task_id, round_)
            self.report(f"warning: disputed round {round_}: its global model {reason}")
        except ContractRevertError as exc:
            if exc.name not in (
                "FLCoordinatorNotAContributor",
                "FLCoordinatorAlreadyDisputed",
                "FLCoordinatorNotDisputable",
            ):
                raise
            log.info("round %d: dispute not taken (%s)", round_, exc.name)
        progress.disputed = True
        self.state.save_round(self.task_id, round_, progress)

    def _connect_all(self) -> None:
        others = [p for p in self._peers.participants() if p.account != self.address]
        connect_to_participants(
            self.storage, self.coordinator, self.task_id, [p.account for p in others], participants=others
        )

    # -- update phase ---------------------------------------------------------------------------

    def _update_phase(self, round_: int, info: RoundInfo, base: np.ndarray) -> Step:
        progress = self.state.round(self.task_id, round_)
        now = self.options.clock()
        if now >= info.update_deadline:
            return self._advance()
        if progress.update_committed:
            self.observers.wait(self.task_id, round_)
            return Step.IDLE
        update, _ = self._trained_update(round_, base, progress)
        with self.observers.phase(self.task_id, round_, Phase.PUBLISH_UPDATE):
            digest, _ = publish_vector(
                self.storage,
                update,
                blob_kind=BlobKind.UPDATE,
                task_id=self.task_id,
                round_=round_,
                partitions=self.config.partitions,
                contributor=self.address,
                evaluation=self._base_evaluation(),
            )
        assert progress.samples is not None
        return self._commit_update(round_, digest, int(progress.samples), progress)

    def _trained_update(self, round_: int, base: np.ndarray, progress: RoundProgress) -> tuple[np.ndarray, int]:
        """This round's trained model and sample count: trained now, or as kept before a restart."""
        update = self.state.load_vector(self.task_id, f"update-{round_}")
        if update is None or progress.samples is None:
            seed = training_seed(self.spec.model_seed, self.task_id, round_, self.address)
            with self.observers.phase(self.task_id, round_, Phase.TRAIN):
                update, samples, metrics = self.trainer.train(base, seed=seed)
            if self.rule.dp is not None:  # DP-FedAvg: the whole change clipped to C before it is split
                update = clip_update(update, base, self.rule.dp)
            self.state.save_vector(self.task_id, f"update-{round_}", update)
            progress.samples = samples
            self.state.save_round(self.task_id, round_, progress)
            log.info("round %d: trained on %d samples %s", round_, samples, metrics)
        return update, int(progress.samples)

    def _commit_update(self, round_: int, digest: bytes, samples: int, progress: RoundProgress) -> Step:
        """Commit the published update ``digest`` with ``samples`` (once; a restart finds it committed)."""
        progress.update_digest = digest.hex()
        self.state.save_round(self.task_id, round_, progress)
        try:
            with self.observers.phase(self.task_id, round_, Phase.COMMIT_UPDATE):
                self._transact("commit_update", round_, digest, samples)
        except ContractRevertError as exc:
            if exc.name == "FLCoordinatorUpdateAlreadyCommitted":
                log.info("round %d: update was already committed before a restart", round_)
            elif exc.name == "FLCoordinatorKeySetNotFinal":  # the chain's clock lags this node's: retry
                log.info("round %d: key check window still open on chain; retrying the update", round_)
                return Step.IDLE
            elif exc.name in ("FLCoordinatorUpdatePhaseClosed", "FLCoordinatorNotInKeySet", *_BENIGN_REVERTS):
                log.warning("round %d: update too late (%s)", round_, exc.name)
                return Step.PROGRESS
            else:
                raise
        progress.update_committed = True
        self.state.save_round(self.task_id, round_, progress)
        self.state.delete_vector(self.task_id, f"update-{round_}")
        self.report(f"round {round_}: update committed ({samples} samples, {cid_from_digest(digest)[:16]}…)")
        return Step.PROGRESS

    # -- aggregation phase ----------------------------------------------------------------------

    def _aggregation_phase(self, round_: int, info: RoundInfo, config: TaskConfig, base: np.ndarray) -> Step:
        now = self.options.clock()
        if now >= info.fallback_deadline:
            return self._advance()
        fallback = now >= info.aggregation_deadline
        commits = self._round_commits(round_)
        mine = next((c for c in commits if c.contributor == self.address), None)
        if mine is None:
            self.observers.wait(self.task_id, round_)
            return Step.IDLE  # only the round's contributors aggregate (and vote in its fallback)
        if info.assignment_key is None:
            # The first contributor draws it; the others only if it is still missing a while later
            # (on a chain with a block time the next block makes it readable without a transaction).
            seen = self._key_missing_since.setdefault(round_, now)
            if mine.index == 0 or now - seen >= 2 * self.options.poll_interval:
                return self._draw_assignment(round_)
            return Step.IDLE
        final = self.coordinator.get_final_digests(self.task_id, round_)
        progress = self.state.round(self.task_id, round_)
        if fallback or self.secure is not None:  # exclusions: in the fallback phase, or a secure round's check window
            commits = self._without_excluded(round_, commits, progress)
            if all(c.contributor != self.address for c in commits):
                return Step.IDLE  # this node's own update was excluded: it has no vote left
        todo = assigned_partitions(
            mine.index,
            contributors=info.contributors,
            key=info.assignment_key,
            partitions=config.partitions,
            replication=config.replication,
        )
        if fallback:
            start = (mine.index if mine else 0) % config.partitions
            rotation = [(start + i) % config.partitions for i in range(config.partitions)]
            todo += [p for p in rotation if p not in todo]
        todo = [p for p in todo if final[p] is None and p not in progress.aggregates_committed]
        if not todo:
            self.observers.wait(self.task_id, round_)
            self._prefetch_final_partitions(final, base.size)
            return Step.IDLE
        with self.observers.phase(self.task_id, round_, Phase.AGGREGATE):
            self._connect_all()
            ready: dict[int, bytes] = {}
            # Contributors found unavailable earlier this round are reported as soon as the fallback phase
            # begins, before another fetch timeout (they are still fetched: a slow peer may have caught up).
            seen_unavailable = self._unavailable.setdefault(round_, set())
            still_in = seen_unavailable & {c.contributor for c in commits}  # not excluded yet
            reporting = fallback and self.secure is None  # a secure round excludes only before its reveals
            reported = reporting and bool(still_in) and self._report_unavailable(round_, still_in, progress)
            unavailable: set[str] = set()
            self._round_updates(round_, base.size).prefetch(
                sorted(commits, key=lambda c: c.contributor.lower()),
                [p for p in todo if str(p) not in progress.aggregates],
            )
            for partition in todo:
                known = progress.aggregates.get(str(partition))
                if known is None:
                    aggregate = self._aggregate_partition(round_, partition, commits, base, unavailable)
                    if aggregate is None:
                        continue
                    bounds = partition_bounds(base.size, config.partitions)[partition]
                    blob = encode_partition(
                        aggregate,
                        kind=BlobKind.AGGREGATE,
                        task_id=self.task_id,
                        round_=round_,
                        partition=partition,
                        partitions=config.partitions,
                        offset=bounds.offset,
                    )
                    known = digest_from_cid(self.storage.put(blob)).hex()
                    progress.aggregates[str(partition)] = known
                    self.state.save_round(self.task_id, round_, progress)
                ready[partition] = bytes.fromhex(known)
            seen_unavailable |= unavailable
        if fallback and self.secure is None and unavailable:
            reported = self._report_unavailable(round_, unavailable, progress) or reported
        if not ready:
            return Step.PROGRESS if reported else Step.IDLE
        with self.observers.phase(self.task_id, round_, Phase.COMMIT_AGGREGATES):
            return self._commit_aggregates(round_, ready, progress, fallback)

    def _prefetch_final_partitions(self, final: list[bytes | None], dimension: int) -> None:
        """While waiting for the round to finalize, fetch its partitions that are final already.

        The bytes land in this node's storage peer, so the all-gather of the round's global model
        (which still fetches and verifies every partition, :func:`gather_partitions`) finds them
        locally and waits only for the partitions finalized last. Each digest is fetched once, with a
        short timeout, and nothing here fails: what does not arrive is fetched by the all-gather.
        """
        bounds = partition_bounds(dimension, len(final))
        wanted = [
            (digest, bounds[p].length) for p, digest in enumerate(final) if digest and digest not in self._prefetched
        ]
        if not wanted:
            return
        self._prefetched.update(digest for digest, _ in wanted)
        timeout = min(self.options.fetch_timeout, PREFETCH_TIMEOUT)
        run_gets(
            [
                partial(self.storage.get, cid_from_digest(digest), timeout=timeout, max_size=blob_size(length))
                for digest, length in wanted
            ],
            parallel=self.storage.parallel_gets,
        )

    def _without_excluded(
        self, round_: int, commits: list[UpdateCommit], progress: RoundProgress
    ) -> list[UpdateCommit]:
        """``commits`` minus the updates the chain excluded; forgets aggregates computed before an exclusion."""
        excluded = self.coordinator.get_excluded(self.task_id, round_)
        if excluded != progress.excluded:
            stale = [p for p in progress.aggregates if int(p) not in progress.aggregates_committed]
            for partition in stale:
                del progress.aggregates[partition]
            progress.excluded = excluded
            self.state.save_round(self.task_id, round_, progress)
            log.warning("round %d: updates of %s excluded as unavailable", round_, ", ".join(excluded))
        leave_out = set(excluded)
        return [c for c in commits if c.contributor not in leave_out]

    def _report_unavailable(self, round_: int, contributors: set[str], progress: RoundProgress) -> bool:
        """Report each contributor whose update this node could not fetch (once per round); whether any was new."""
        new = sorted(contributors - set(progress.reported) - {self.address})  # its own update: nothing to report
        for contributor in new:
            try:
                self._transact("report_unavailable", round_, contributor)
                self.report(f"round {round_}: reported the update of {contributor} unavailable")
            except ContractRevertError as exc:
                if exc.name == "FLCoordinatorReportTooEarly":
                    # This node's clock passed the aggregation deadline before the chain's blocks did
                    # (a loaded chain lags): not reported, so the next step tries again.
                    log.info("round %d: report on %s too early for the chain's clock; retrying", round_, contributor)
                    return False
                if exc.name not in (
                    "FLCoordinatorAlreadyReported",
                    "FLCoordinatorAlreadyExcluded",
                    "FLCoordinatorNotAContributor",
                    "FLCoordinatorReportWindowClosed",
                    *_BENIGN_REVERTS,
                ):
                    raise
                log.info("round %d: report on %s not taken (%s)", round_, contributor, exc.name)
            progress.reported.append(contributor)
            self.state.save_round(self.task_id, round_, progress)
        return bool(new)

    def _commit_aggregates(self, round_: int, ready: dict[int, bytes], progress: RoundProgress, fallback: bool) -> Step:
        partitions = sorted(ready)
        try:
            self._transact("commit_aggregates", round_, partitions, [ready[p] for p in partitions])
        except ContractRevertError as exc:
            if exc.name == "FLCoordinatorAggregateAlreadyCommitted":
                # Committed before a restart: find out which, then go on with the rest next step.
                done = {
                    c.partition
                    for c in self.coordinator.find_aggregate_commits(self.task_id, round_)
                    if c.aggregator == self.address
                }
                progress.aggregates_committed = sorted(set(progress.aggregates_committed) | done)
                self.state.save_round(self.task_id, round_, progress)
                return Step.PROGRESS
            if exc.name in ("FLCoordinatorNotAssigned", "FLCoordinatorNotAContributor", *_BENIGN_REVERTS):
                log.info("round %d: aggregates not taken (%s)", round_, exc.name)
                return Step.IDLE
            raise
        progress.aggregates_committed = sorted(set(progress.aggregates_committed) | set(partitions))
        self.state.save_round(self.task_id, round_, progress)
        kind = "fallback " if fallback else ""
        self.report(f"round {round_}: {kind}aggregates committed for partitions {partitions}")
        return Step.PROGRESS

    def _round_commits(self, round_: int) -> list[UpdateCommit]:
        if round_ not in self._commits:
            self._commits = {round_: self.coordinator.find_frozen_update_commits(self.task_id, round_)}
            self._updates = {}
        return self._commits[round_]

    def _aggregate_partition(
        self,
        round_: int,
        partition: int,
        commits: list[UpdateCommit],
        base: np.ndarray,
        unavailable: set[str] | None = None,
    ) -> np.ndarray | None:
        """The aggregate of ``partition``, or None while some contribution is unavailable.

        Contributors found unavailable are added to ``unavailable``; a contributor already in it
        is not fetched again (one timeout per contributor per step, not one per partition).
        """
        unavailable = set() if unavailable is None else unavailable
        if self.secure is not None:
            return self.secure.aggregate_partition(round_, partition, commits, base, unavailable)
        bounds = partition_bounds(base.size, self.config.partitions)[partition]
        updates = self._round_updates(round_, base.size)
        submissions = []
        for commit in sorted(commits, key=lambda c: c.contributor.lower()):
            if commit.contributor in unavailable:
                return None
            try:
                submissions.append(updates.submission(commit, partition))
            except BlobNotFoundError as exc:
                log.warning(
                    "round %d partition %d: contribution of %s unavailable (%s); retrying later",
                    round_,
                    partition,
                    commit.contributor,
                    exc,
                )
                unavailable.add(commit.contributor)
                return None
        result = self.rule.aggregate(
            base[bounds.offset : bounds.offset + bounds.length],
            submissions,
            noise_key=self._noise_key(round_),
            offset=bounds.offset,
        )
        for exclusion in result.excluded:
            log.warning(
                "round %d partition %d: excluding %s: %s", round_, partition, exclusion.contributor, exclusion.reason
            )
        if not result.counted:
            log.warning(
                "round %d partition %d: no valid contribution; keeping the previous global values", round_, partition
            )
        return result.values

    def _noise_key(self, round_: int) -> bytes | None:
        """The key of ``round_``'s DP noise (from its on-chain seed); None when the task adds no noise."""
        if self.rule.dp is None or not self.rule.dp.noisy:
            return None
        if round_ not in self._noise_keys:
            seed = self.coordinator.get_round(self.task_id, round_).seed
            self._noise_keys = {round_: noise_key(seed, self.task_id, round_)}
        return self._noise_keys[round_]

    def _round_updates(self, round_: int, dimension: int) -> RoundUpdates:
        """The fetcher of ``round_``'s updates (each contributor's manifest is fetched once per round)."""
        if round_ not in self._updates:
            self._updates[round_] = RoundUpdates(
                self.storage,
                task_id=self.task_id,
                round_=round_,
                partitions=self.config.partitions,
                dimension=dimension,
                timeout=self.options.fetch_timeout,
                blob_kind=BlobKind.MASKED_UPDATE if self.secure is not None else BlobKind.UPDATE,
            )
        return self._updates[round_]

    # -- deadlines ------------------------------------------------------------------------------

    def _draw_assignment(self, round_: int) -> Step:
        """Store the round's assignment key (the freezing block's hash) so aggregation can begin."""
        try:
            self._transact("draw_assignment", round_)
        except ContractRevertError as exc:
            if exc.name in _BENIGN_REVERTS:
                return Step.IDLE
            raise
        return Step.PROGRESS

    def _transact(self, name: str, *args: Any) -> dict[str, Any]:
        """Send coordinator transaction ``name`` for this task (after the account and task id: ``args``);
        observers see it with its receipt."""
        send = getattr(self.coordinator, name)
        if not self.observers:
            return send(self.account, self.task_id, *args)
        round_ = self._round if self._round is not None else -1
        started = time.perf_counter()
        receipt: dict[str, Any] | None = None
        try:
            receipt = send(self.account, self.task_id, *args)
            return receipt
        finally:
            self.observers.transaction_sent(self.task_id, round_, name, receipt, time.perf_counter() - started)

    def _advance(self) -> Step:
        try:
            self._transact("advance")
        except ContractRevertError as exc:
            if exc.name in _BENIGN_REVERTS:
                return Step.IDLE
            raise
        log.info("advanced the round past its deadline")
        return Step.PROGRESS


def _evaluation(round_: int, metrics: dict[str, float], samples: int) -> Evaluation | None:
    """The evaluation a node publishes of ``round_``'s global model (None without test accuracy and loss)."""
    accuracy, loss = metrics.get("test_accuracy"), metrics.get("test_loss")
    if accuracy is None or loss is None:
        return None
    return Evaluation.of(round_, float(accuracy), float(loss), int(samples))


def _manifest_digest(manifest: Manifest) -> bytes:
    from fl_chain.protocol.unixfs import unixfs_digest

    return unixfs_digest(manifest.to_bytes())
