"""The node's part in secure-aggregation rounds (docs/protocol.md, "Secure aggregation rounds").

Per round, driven by the chain's phase, one idempotent unit of work per step like the rest of the node:

- SHARES: make a setup (fresh mask key pair and self seed, shares boxed to every participant with a
  usable registered key), keep it with its secrets in the state directory *before* publishing it (a
  restart publishes the same blob, never a second setup), publish, ``commitSetup``.
- UPDATE, key check window (key-set members only): fetch every other key-set member's setup and open
  the share box addressed to this node; report each that is not served, not valid or whose box does
  not open with ``reportSetup``; train meanwhile.
- UPDATE, after the window: mask the weighted, clipped change from the global model towards every
  usable setup of the final key set, publish it as uint64 partition blobs, ``commitUpdate`` with the
  weight (the sample count capped at ``max_samples``).
- UNMASK, check window: fetch every other contributor's masked manifest and the slices of this node's
  assigned partitions; report those not served, or not verifying, with ``reportUnavailable``. A
  contributor someone else reported is checked in every partition (the reporter may be the only one
  assigned a slice that does not verify), so an honest majority forms whenever the report is true.
- UNMASK, reveal window: open the boxes addressed to this node and reveal exactly one share per
  key-set member (self seed for the contributors minus the exclusions, mask key for the rest),
  publish, ``commitReveal``.
- AGGREGATION: the node's usual aggregation loop, with :meth:`SecureRounds.aggregate_partition` in
  place of the contribution rule (``fl_chain.exchange.secure``, shared with the audit).

Nothing a peer sends can crash this: unusable setups and reveals are left out alike on every honest
node, and a partition that cannot be unmasked is simply not committed (the round then fails by its
deadline and the next one starts).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from fl_chain.chain.coordinator import RoundInfo, UpdateCommit
from fl_chain.errors import BlobNotFoundError, ContractRevertError, InvalidPublicKeyError
from fl_chain.exchange.secure import SecureAggregateError, SecureParams, SecureRoundBlobs, secure_partition
from fl_chain.exchange.transfer import publish_vector
from fl_chain.node.hooks import Phase
from fl_chain.node.step import Step
from fl_chain.privacy.context import RoundContext
from fl_chain.privacy.dp import contributor_noise_units
from fl_chain.privacy.keys import KeyPair, MaskKeyPair, validate_public_key
from fl_chain.privacy.share_box import ShareBundle
from fl_chain.privacy.vss import Share
from fl_chain.protocol.assignment import assigned_partitions
from fl_chain.protocol.blob import BlobKind
from fl_chain.protocol.cid import digest_from_cid
from fl_chain.protocol.partitioning import partition_bounds
from fl_chain.protocol.secagg import (
    RoundReveal,
    RoundSecrets,
    make_reveal,
    make_setup,
    masked_units,
    masked_update,
    open_boxes,
)

if TYPE_CHECKING:
    from fl_chain.node.runtime import Node

log = logging.getLogger("fl_chain.node")

#: Reverts that only mean the phase moved on or another node got there first.
_LATE = {
    "FLCoordinatorSharesPhaseClosed",
    "FLCoordinatorReportWindowClosed",
    "FLCoordinatorRevealWindowClosed",
    "FLCoordinatorNothingToAdvance",
    "FLCoordinatorRoundNotCurrent",
    "FLCoordinatorWrongTaskStatus",
    "FLCoordinatorRoundExpired",
    "FLCoordinatorAggregationNotOpen",
}


def _usable_key(public: bytes) -> bool:
    try:
        validate_public_key(public)
    except InvalidPublicKeyError:
        return False
    return True


class SecureRounds:
    """The secure-aggregation side of one :class:`~fl_chain.node.runtime.Node` (one task)."""

    def __init__(self, node: Node, params: SecureParams) -> None:
        self.node = node
        self.params = params
        self.long_term = KeyPair.from_private(node.state.long_term_key())
        self.me = node.address.lower()
        self._blobs: dict[int, SecureRoundBlobs] = {}
        self._checked: dict[int, set[str]] = {}  # round -> contributors whose check-window fetch succeeded
        self._checked_in_full: dict[int, set[str]] = {}  # round -> reported contributors verified in every partition
        self._setups_checked: set[int] = set()  # rounds whose key check this node has done
        self._warned: set[tuple[int, str]] = set()

    # -- helpers --------------------------------------------------------------------------------

    def context(self, round_: int) -> RoundContext:
        return RoundContext(self.node.task_id, round_)

    def blobs(self, round_: int) -> SecureRoundBlobs:
        """The round's setups and reveals (one fetcher per round; the key set is read once it is final)."""
        if round_ not in self._blobs:
            self._blobs = {
                round_: SecureRoundBlobs(
                    self.node.storage,
                    self.node.coordinator,
                    task_id=self.node.task_id,
                    round_=round_,
                    max_participants=self.params.max_participants,
                    threshold=self.params.threshold,
                    timeout=self.node.options.fetch_timeout,
                )
            }
        return self._blobs[round_]

    def _warn_once(self, round_: int, message: str) -> None:
        if (round_, message) not in self._warned:
            self._warned.add((round_, message))
            log.warning("round %d: %s", round_, message)
            self.node.report(f"warning: round {round_}: {message}")

    def _secrets(self, round_: int) -> RoundSecrets | None:
        record = self.node.state.load_secagg_round(self.node.task_id, round_)
        if record is None:
            return None
        return RoundSecrets(
            mask_key=MaskKeyPair.from_private(bytes.fromhex(record["mask_private"])),
            self_seed=bytes.fromhex(record["self_seed"]),
            own_shares=ShareBundle(
                self_seed=Share.from_bytes(bytes.fromhex(record["own_seed_share"])),
                private_key=Share.from_bytes(bytes.fromhex(record["own_key_share"])),
            ),
        )

    def _publics(self) -> dict[str, bytes]:
        """Every participant's registered long-term key, by lower-case address."""
        return {p.account.lower(): p.public_key for p in self.node.coordinator.get_participants(self.node.task_id)}

    def setup_blob(self, round_: int, record: dict[str, str]) -> bytes:
        """The bytes of this node's setup of ``round_`` as kept in its state directory (tests' hostile
        nodes override it)."""
        return bytes.fromhex(record["setup"])

    def reveal_blob(self, round_: int, reveal: RoundReveal) -> bytes:
        """The bytes of this node's reveal (tests' hostile nodes override it)."""
        return reveal.to_bytes()

    # -- shares phase ---------------------------------------------------------------------------

    def shares_phase(self, round_: int, info: RoundInfo) -> Step:
        node = self.node
        if node.options.clock() >= info.shares_deadline:
            return node._advance()
        progress = node.state.round(node.task_id, round_)
        if progress.setup_committed:
            node.observers.wait(node.task_id, round_)
            return Step.IDLE
        record = node.state.load_secagg_round(node.task_id, round_)
        with node.observers.phase(node.task_id, round_, Phase.SETUP):
            if record is None:
                publics = self._publics()
                if publics.get(self.me) != self.long_term.public:
                    self._warn_once(
                        round_,
                        "the key registered for this account is not this state directory's key: sitting secure "
                        "rounds out (join the task from the state directory that joined it)",
                    )
                    return Step.IDLE
                participants = {
                    m: k for m, k in publics.items() if m == self.me or (k != self.long_term.public and _usable_key(k))
                }
                if len(participants) < self.params.threshold:
                    self._warn_once(round_, f"fewer than t = {self.params.threshold} members with usable keys")
                    return Step.IDLE
                setup, secrets = make_setup(
                    self.context(round_), self.me, self.long_term, participants, self.params.threshold
                )
                record = {
                    "setup": setup.to_bytes().hex(),
                    "mask_private": secrets.mask_key.private.hex(),
                    "self_seed": secrets.self_seed.hex(),
                    "own_seed_share": secrets.own_shares.self_seed.to_bytes().hex(),
                    "own_key_share": secrets.own_shares.private_key.to_bytes().hex(),
                }
                # Kept before anything leaves this node: a restart publishes this setup, never a second one.
                node.state.save_secagg_round(node.task_id, round_, record)
            digest = digest_from_cid(node.storage.put(self.setup_blob(round_, record)))
            progress.setup_digest = digest.hex()
            node.state.save_round(node.task_id, round_, progress)
            try:
                node._transact("commit_setup", round_, digest)
            except ContractRevertError as exc:
                if exc.name in _LATE:
                    log.warning("round %d: setup too late (%s)", round_, exc.name)
                    return Step.PROGRESS
                if exc.name != "FLCoordinatorSetupAlreadyCommitted":
                    raise
        progress.setup_committed = True
        node.state.save_round(node.task_id, round_, progress)
        node.state.forget_secagg_rounds(node.task_id, before=round_)
        node.report(f"round {round_}: secure-aggregation setup committed")
        return Step.PROGRESS

    # -- update phase ---------------------------------------------------------------------------

    def update_phase(self, round_: int, info: RoundInfo, base: np.ndarray) -> Step:
        node = self.node
        if node.options.clock() >= info.update_deadline:
            return node._advance()
        progress = node.state.round(node.task_id, round_)
        if progress.update_committed:
            node.observers.wait(node.task_id, round_)
            return Step.IDLE
        blobs = self.blobs(round_)
        secrets = self._secrets(round_)
        if self.me not in blobs.key_set() or secrets is None:
            node.observers.wait(node.task_id, round_)
            return Step.IDLE  # not in the key set U1: this node sits the round out
        if round_ not in self._setups_checked:
            return self._key_check(round_, blobs)
        update, samples = node._trained_update(round_, base, progress)
        # Masks go towards the final key set only: wait until the chain's own time closed the key check
        # window (no exclusion can land after that).
        if node.coordinator.client.block_timestamp() < info.update_deadline - node.config.update_duration:
            node.observers.wait(node.task_id, round_)
            return Step.IDLE
        node._connect_all()
        try:
            setups = blobs.usable_setups()
        except BlobNotFoundError as exc:
            log.warning("round %d: a setup of the key set is not served yet (%s); retrying", round_, exc)
            return Step.IDLE
        if self.me not in setups:
            reason = "excluded by the key set" if self.me in blobs.excluded_setups() else blobs.unusable().get(self.me)
            self._warn_once(round_, f"this node's own setup is unusable ({reason}): sitting the round out")
            return Step.IDLE
        for member, reason in blobs.unusable().items():
            self._warn_once(round_, f"leaving out {member}: {reason}")
        weight = min(int(samples), self.params.max_samples)
        masks = {m: s.mask_public for m, s in setups.items()}
        with node.observers.phase(node.task_id, round_, Phase.PUBLISH_UPDATE):
            if self.params.dp is not None:
                masked = self._dp_masked(round_, update, base, secrets, masks)
            else:
                change = np.asarray(update, dtype=np.float64) - np.asarray(base, dtype=np.float64)
                change = np.nan_to_num(change, nan=0.0, posinf=self.params.clip, neginf=-self.params.clip)
                masked = masked_update(
                    self.context(round_),
                    self.me,
                    change,
                    weight,
                    secrets,
                    masks,
                    clip=self.params.clip,
                    frac_bits=self.params.frac_bits,
                )
            digest, _ = publish_vector(
                node.storage,
                masked,
                blob_kind=BlobKind.MASKED_UPDATE,
                task_id=node.task_id,
                round_=round_,
                partitions=node.config.partitions,
                contributor=node.address,
            )
        return node._commit_update(round_, digest, weight, progress)

    def _key_check(self, round_: int, blobs: SecureRoundBlobs) -> Step:
        """Fetch every other key-set member's setup and open this node's box in it; report those it
        cannot use (``reportSetup``), once per round."""
        node = self.node
        with node.observers.phase(node.task_id, round_, Phase.SETUP):
            node._connect_all()
            problems = blobs.setup_problems(self.me, self.long_term, self._publics())
            for member, reason in sorted(problems.items()):
                try:
                    node._transact("report_setup", round_, member)
                    node.report(f"round {round_}: reported the setup of {member} ({reason})")
                except ContractRevertError as exc:
                    if exc.name in _LATE:
                        log.warning("round %d: setup report on %s too late (%s)", round_, member, exc.name)
                        break
                    if exc.name not in ("FLCoordinatorAlreadyReported", "FLCoordinatorNotInKeySet"):
                        raise
                    log.info("round %d: setup report on %s not taken (%s)", round_, member, exc.name)
        self._setups_checked.add(round_)
        return Step.PROGRESS

    def _dp_masked(
        self, round_: int, update: np.ndarray, base: np.ndarray, secrets: RoundSecrets, masks: dict[str, bytes]
    ) -> np.ndarray:
        """DP-FedAvg under secure aggregation: the change (already clipped to C by the node) on the
        mechanism's grid, plus this contributor's secret noise share, masked."""
        dp = self.params.dp
        assert dp is not None
        units = dp.quantize(np.asarray(update, dtype=np.float32), np.asarray(base, dtype=np.float32))
        if units is None:  # cannot happen after clip_update; a zero change is the safe fallback
            units = np.zeros(base.size, dtype=np.int64)
        if dp.noisy:
            # A fresh secret key per update: nobody, the aggregators included, can recompute this share.
            key = os.urandom(32)
            units = units + contributor_noise_units(key, 0, base.size, contributors=self.params.noise_shares)
        return masked_units(self.context(round_), self.me, units, secrets, masks)

    # -- unmask phase ---------------------------------------------------------------------------

    def unmask_phase(self, round_: int, info: RoundInfo, base: np.ndarray) -> Step:
        node = self.node
        now = node.options.clock()
        if now >= info.unmask_deadline:
            return node._advance()
        commits = node._round_commits(round_)
        mine = next((c for c in commits if c.contributor.lower() == self.me), None)
        if mine is None:
            node.observers.wait(node.task_id, round_)
            return Step.IDLE
        excluded = {e.lower() for e in node.coordinator.get_excluded(node.task_id, round_)}
        if self.me in excluded:
            node.observers.wait(node.task_id, round_)
            return Step.IDLE
        progress = node.state.round(node.task_id, round_)
        if now < info.reveal_start:
            if info.assignment_key is None:
                seen = node._key_missing_since.setdefault(round_, now)
                if mine.index == 0 or now - seen >= 2 * node.options.poll_interval:
                    return node._draw_assignment(round_)
                return Step.IDLE
            return self._check_window(round_, info, commits, excluded, base, mine)
        if progress.reveal_committed:
            node.observers.wait(node.task_id, round_)
            return Step.IDLE
        # No share leaves this node before the chain's own time reached the reveal window: until then a
        # report could still exclude a contributor whose self-seed share a reveal made now would carry.
        if node.coordinator.client.block_timestamp() < info.reveal_start:
            return Step.IDLE
        excluded = {e.lower() for e in node.coordinator.get_excluded(node.task_id, round_)}  # final now
        if self.me in excluded:
            return Step.IDLE
        with node.observers.phase(node.task_id, round_, Phase.REVEAL):
            node._connect_all()
            try:
                setups = self.blobs(round_).usable_setups()
            except BlobNotFoundError as exc:
                log.warning("round %d: a setup of the key set is not served (%s); retrying", round_, exc)
                return Step.IDLE
            context = self.context(round_)
            bundles = open_boxes(context, self.me, self.long_term, setups, self._publics())
            survivors = [c.contributor.lower() for c in commits if c.contributor.lower() not in excluded]
            reveal = make_reveal(context, self.me, bundles, list(setups), survivors, self._secrets(round_))
            digest = digest_from_cid(node.storage.put(self.reveal_blob(round_, reveal)))
            try:
                node._transact("commit_reveal", round_, digest)
            except ContractRevertError as exc:
                if exc.name in _LATE or exc.name in ("FLCoordinatorNotAContributor", "FLCoordinatorAlreadyExcluded"):
                    log.warning("round %d: reveal not taken (%s)", round_, exc.name)
                    return Step.PROGRESS
                if exc.name != "FLCoordinatorRevealAlreadyCommitted":
                    raise
        progress.reveal_committed = True
        node.state.save_round(node.task_id, round_, progress)
        node.report(f"round {round_}: revealed {len(reveal.shares)} shares")
        return Step.PROGRESS

    def _check_window(
        self,
        round_: int,
        info: RoundInfo,
        commits: list[UpdateCommit],
        excluded: set[str],
        base: np.ndarray,
        mine: UpdateCommit,
    ) -> Step:
        """Fetch what this node will aggregate; report contributors whose masked update is not served
        (or does not verify) while exclusion is still possible."""
        node = self.node
        progress = node.state.round(node.task_id, round_)
        checked = self._checked.setdefault(round_, set())
        in_full = self._checked_in_full.setdefault(round_, set())
        done = excluded | {self.me} | {c.lower() for c in progress.reported}
        others = [c for c in sorted(commits, key=lambda c: c.contributor.lower()) if c.contributor.lower() not in done]
        accused = {a.lower() for a in node.coordinator.find_reported_contributors(node.task_id, round_)}
        in_full_todo = [c for c in others if c.contributor.lower() in accused - in_full]
        others = [c for c in others if c.contributor.lower() not in checked]
        if not others and not in_full_todo:
            node.observers.wait(node.task_id, round_)
            return Step.IDLE
        assert info.assignment_key is not None
        todo = assigned_partitions(
            mine.index,
            contributors=info.contributors,
            key=info.assignment_key,
            partitions=node.config.partitions,
            replication=node.config.replication,
        )
        bad: set[str] = set()
        with node.observers.phase(node.task_id, round_, Phase.REVEAL):
            node._connect_all()
            updates = node._round_updates(round_, base.size)
            updates.prefetch(others, todo)
            every = list(range(node.config.partitions))
            for commit, partitions, ok in [(c, todo, checked) for c in others] + [
                (c, every, in_full) for c in in_full_todo
            ]:
                try:
                    if isinstance(updates.manifest(commit), str) or any(
                        updates.submission(commit, p).values is None for p in partitions
                    ):
                        bad.add(commit.contributor)
                        continue
                except BlobNotFoundError:
                    bad.add(commit.contributor)
                    continue
                ok.add(commit.contributor.lower())
        if bad:
            return Step.PROGRESS if node._report_unavailable(round_, bad, progress) else Step.IDLE
        return Step.PROGRESS

    # -- aggregation ----------------------------------------------------------------------------

    def aggregate_partition(
        self,
        round_: int,
        partition: int,
        commits: list[UpdateCommit],
        base: np.ndarray,
        unavailable: set[str],
    ) -> np.ndarray | None:
        """The secure aggregate of ``partition`` over ``commits`` (U2 minus exclusions), or None while
        something is not served, or for good when it cannot be unmasked (logged)."""
        node = self.node
        bounds = partition_bounds(base.size, node.config.partitions)[partition]
        blobs = self.blobs(round_)
        try:
            setups = blobs.usable_setups()
        except BlobNotFoundError as exc:
            log.warning("round %d partition %d: a setup is not served (%s); retrying later", round_, partition, exc)
            return None
        updates = node._round_updates(round_, base.size)
        masked: dict[str, np.ndarray | None] = {}
        samples: dict[str, int] = {}
        for commit in sorted(commits, key=lambda c: c.contributor.lower()):
            member = commit.contributor.lower()
            if member not in setups:
                continue  # no usable setup: no honest member masked towards it, so it is left out
            if commit.contributor in unavailable:
                return None
            try:
                submission = updates.submission(commit, partition)
            except BlobNotFoundError as exc:
                log.warning(
                    "round %d partition %d: masked update of %s unavailable (%s); retrying later",
                    round_,
                    partition,
                    commit.contributor,
                    exc,
                )
                unavailable.add(commit.contributor)
                return None
            masked[member] = submission.values
            samples[member] = commit.samples
        reveals, missing = blobs.reveals()
        try:
            return secure_partition(
                base[bounds.offset : bounds.offset + bounds.length],
                masked,
                samples,
                context=self.context(round_),
                offset=bounds.offset,
                setups=setups,
                reveals=reveals,
                params=self.params,
            )
        except SecureAggregateError as exc:
            if missing:
                log.warning("round %d partition %d: %s; waiting for the reveals of %s", round_, partition, exc, missing)
            else:
                self._warn_once(round_, f"partition {partition} cannot be unmasked, not committing it: {exc}")
            return None


__all__ = ["SecureRounds"]
