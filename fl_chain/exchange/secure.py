"""A secure-aggregation round's blobs, fetched from the sets the chain froze, and a partition's aggregate.

Shared by the node (its update, reveal and aggregation) and the audit, so both apply the same rules
(``fl_chain.protocol.secagg`` holds the formats; this module adds storage and the chain's sets):

* **Key set.** The usable setups of a round are those of the key set U1 (``SetupCommitted``) that the
  key set did not exclude in the key check window (``SetupExcluded``, after a majority or |U1| - t
  reports: members report setups that are not served, do not verify, or whose share box for them does
  not open or holds shares that do not verify, see :meth:`SecureRoundBlobs.setup_problems`), whose
  blob parses within its size bound, is the member's for this task and round, deals t-of-n Feldman
  shares for the task's threshold t (commitments that are secp256k1 points; the mask public key is
  ``C_0`` of the key sharing) with a proof of possession of that key, and does not repeat the mask key
  of a setup committed before it. Every honest node decides this alike (content is addressed by hash,
  exclusions are on chain); contributors mask towards exactly these members, and a contributor whose
  setup is unusable is left out of every sum (no honest member masked towards it).
* **Reveals.** The reveal blobs of U3 (``RevealCommitted``) that parse and are the revealer's for
  this round; a reveal that is not served is simply missing (every share is verified against its
  owner's Feldman commitments, so any t verified shares rebuild the same secret).
* **A partition.** The masked slices of the contributors U2 minus the chain's exclusions (and minus
  members without a usable setup) are summed in the ring, unmasked
  (:func:`~fl_chain.protocol.secagg.unmask_partition`) and divided by their committed sample counts
  (:func:`~fl_chain.protocol.secagg.weighted_average`): the same bytes on every honest node. A
  masked slice that does not verify, or secrets that cannot be rebuilt, make the partition
  impossible to unmask (:class:`SecureAggregateError`): an honest node then commits nothing for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fl_chain.chain.coordinator import Coordinator, RevealCommit, SetupCommit
from fl_chain.errors import BlobInvalidError, BlobNotFoundError, PrivacyError
from fl_chain.privacy.context import RoundContext
from fl_chain.privacy.dp import DpMechanism
from fl_chain.privacy.keys import KeyPair
from fl_chain.protocol.cid import cid_from_digest
from fl_chain.protocol.secagg import (
    RoundReveal,
    RoundSetup,
    check_blob_matches,
    open_boxes,
    reveal_size_bound,
    setup_size_bound,
    unmask_partition,
    weighted_average,
)
from fl_chain.protocol.task import TaskSpec
from fl_chain.storage.base import Storage


class SecureAggregateError(PrivacyError):
    """A secure partition that cannot be unmasked from what the chain's sets hold (alike on every honest node)."""


@dataclass(frozen=True)
class SecureParams:
    """What the task fixes for its secure rounds: Shamir threshold, clip, fixed-point scale, blob bounds."""

    threshold: int
    clip: float
    frac_bits: int
    max_participants: int
    max_samples: int
    #: Differential privacy (DP-FedAvg with contributor-side noise): unweighted mean of quantized changes.
    dp: DpMechanism | None = None
    #: With DP: each contributor's noise share has variance 1024**2 / this (the task's min_contributors),
    #: so a round of at least min_contributors has at least the noise the accountant counts.
    noise_shares: int = 1

    @classmethod
    def of(cls, spec: TaskSpec) -> SecureParams:
        """The parameters of a task with ``[privacy] secure_aggregation = true``."""
        config = spec.secure_aggregation
        if config is None:
            raise ValueError("the task has no secure aggregation")
        return cls(
            threshold=config.threshold,
            clip=spec.secagg_clip,
            frac_bits=spec.secagg_frac_bits,
            max_participants=int(spec.protocol["max_participants"]),
            max_samples=spec.max_samples,
            dp=spec.dp_mechanism,
            noise_shares=int(spec.protocol["min_contributors"]),
        )


def parse_setup(
    data: bytes, context: RoundContext, member: str, *, max_participants: int, threshold: int
) -> RoundSetup:
    """``member``'s setup blob, checked: :class:`BlobInvalidError` or :class:`PrivacyError` if unusable."""
    setup = RoundSetup.from_bytes(data, max_participants=max_participants, threshold=threshold)
    check_blob_matches(setup, context, member)
    return setup


def parse_reveal(data: bytes, context: RoundContext, member: str, *, max_participants: int) -> RoundReveal:
    """``member``'s reveal blob, checked: :class:`BlobInvalidError` if unusable."""
    reveal = RoundReveal.from_bytes(data, max_participants=max_participants)
    check_blob_matches(reveal, context, member)
    return reveal


class SecureRoundBlobs:
    """One secure round's setups (U1) and reveals (U3), each blob fetched once.

    Parameters
    ----------
    storage, coordinator, task_id, round_:
        Where to fetch from, and the round.
    max_participants:
        The task's participant cap: it bounds every setup and reveal blob before it is read.
    threshold:
        The task's threshold t: a setup that deals shares of another threshold is unusable.
    timeout:
        Seconds each fetch may take.
    """

    def __init__(
        self,
        storage: Storage,
        coordinator: Coordinator,
        *,
        task_id: int,
        round_: int,
        max_participants: int,
        threshold: int,
        timeout: float,
    ) -> None:
        self.storage = storage
        self.coordinator = coordinator
        self.context = RoundContext(task_id, round_)
        self.max_participants = max_participants
        self.threshold = threshold
        self.timeout = timeout
        self._setup_commits: list[SetupCommit] | None = None
        self._excluded: set[str] | None = None
        self._parsed: dict[str, RoundSetup | str] = {}  # member -> setup, or why it is unusable
        self._reveals: dict[str, RoundReveal | str] = {}

    def setup_commits(self) -> list[SetupCommit]:
        """The key set U1 in commit order (read once: call only after the shares phase closed)."""
        if self._setup_commits is None:
            commits = self.coordinator.find_setup_commits(self.context.task_id, self.context.round)
            self._setup_commits = sorted(commits, key=lambda c: c.index)
        return list(self._setup_commits)

    def key_set(self) -> list[str]:
        """U1's members (lower-case addresses), in commit order."""
        return [c.member.lower() for c in self.setup_commits()]

    def excluded_setups(self) -> set[str]:
        """U1 members a key-set majority excluded (lower-case), read once: call only after the key check
        window closed on chain (no exclusion can follow; the node checks the chain's time first)."""
        if self._excluded is None:
            found = self.coordinator.find_setup_exclusions(self.context.task_id, self.context.round)
            self._excluded = {m.lower() for m in found}
        return set(self._excluded)

    def _setup(self, commit: SetupCommit) -> RoundSetup | str:
        """``commit``'s setup blob parsed, or why it is unusable (fetched once; BlobNotFoundError while not served)."""
        member = commit.member.lower()
        if member not in self._parsed:
            try:
                data = self.storage.get(
                    cid_from_digest(commit.digest),
                    timeout=self.timeout,
                    max_size=setup_size_bound(self.max_participants),
                )  # BlobNotFoundError propagates: not served (yet)
                self._parsed[member] = parse_setup(
                    data, self.context, member, max_participants=self.max_participants, threshold=self.threshold
                )
            except (BlobInvalidError, PrivacyError) as exc:  # too large, or does not parse or verify
                self._parsed[member] = f"unusable setup: {exc}"
        return self._parsed[member]

    def setup_problems(self, me: str, long_term: KeyPair, long_term_publics: Mapping[str, bytes]) -> dict[str, str]:
        """The key set's other members whose setup ``me`` cannot use, and why: not served within the
        timeout, unusable (see the module docstring), or no share box for ``me`` that opens and verifies
        under ``me``'s long-term key. These are what ``me`` reports in the key check window."""
        me = me.lower()
        problems: dict[str, str] = {}
        usable: dict[str, RoundSetup] = {}
        seen_keys: set[bytes] = set()
        for commit in self.setup_commits():
            member = commit.member.lower()
            try:
                setup = self._setup(commit)
            except BlobNotFoundError:
                if member != me:
                    problems[member] = "setup not served"
                continue
            if isinstance(setup, str):
                problems[member] = setup
            elif setup.mask_public in seen_keys:
                problems[member] = "unusable setup: repeats the mask key of an earlier setup"
            else:
                seen_keys.add(setup.mask_public)
                usable[member] = setup
        opened = open_boxes(self.context, me, long_term, usable, long_term_publics)
        for member in usable:
            if member != me and member not in opened:
                problems[member] = "no share box for this member that opens"
        problems.pop(me, None)
        return problems

    def usable_setups(self) -> dict[str, RoundSetup]:
        """The usable setups of U1 (see the module docstring), by member. Call only once the key check
        window closed on chain (:meth:`excluded_setups`).

        Raises
        ------
        BlobNotFoundError
            If a U1 member's setup blob is not served within the timeout (no partial key set: a
            contributor that masked towards part of it would make the sum impossible to unmask).
        """
        usable: dict[str, RoundSetup] = {}
        seen_keys: set[bytes] = set()
        excluded = self.excluded_setups()
        for commit in self.setup_commits():
            if commit.member.lower() in excluded:
                continue
            member = commit.member.lower()
            setup = self._setup(commit)
            if isinstance(setup, RoundSetup) and setup.mask_public not in seen_keys:
                usable[member] = setup
                seen_keys.add(setup.mask_public)
        return usable

    def unusable(self) -> dict[str, str]:
        """Members of U1 fetched so far whose setup is unusable, and why."""
        return {m: s for m, s in self._parsed.items() if isinstance(s, str)}

    def reveal_commits(self) -> list[RevealCommit]:
        """The reveal set U3 (read afresh: it grows during the reveal window)."""
        return self.coordinator.find_reveal_commits(self.context.task_id, self.context.round)

    def reveals(self) -> tuple[list[RoundReveal], list[str]]:
        """The usable reveal blobs of U3 and the revealers whose blob was not served (tried again next call)."""
        found: list[RoundReveal] = []
        missing: list[str] = []
        for commit in self.reveal_commits():
            member = commit.member.lower()
            if member not in self._reveals:
                try:
                    data = self.storage.get(
                        cid_from_digest(commit.digest),
                        timeout=self.timeout,
                        max_size=reveal_size_bound(self.max_participants),
                    )
                    self._reveals[member] = parse_reveal(
                        data, self.context, member, max_participants=self.max_participants
                    )
                except BlobNotFoundError:
                    missing.append(member)
                    continue
                except BlobInvalidError as exc:  # too large, or does not parse or verify
                    self._reveals[member] = f"unusable reveal: {exc}"
            reveal = self._reveals[member]
            if isinstance(reveal, RoundReveal):
                found.append(reveal)
        return found, missing


def secure_partition(
    base: np.ndarray,
    masked: Mapping[str, np.ndarray | None],
    samples: Mapping[str, int],
    *,
    context: RoundContext,
    offset: int,
    setups: Mapping[str, RoundSetup],
    reveals: Sequence[RoundReveal],
    params: SecureParams,
) -> np.ndarray:
    """The weighted FedAvg of one partition of a secure round: ``float32(base + sum / total samples)``.

    ``masked`` maps every counted contributor (U2 minus exclusions, with a usable setup) to its
    verified masked slice, or None where the slice did not verify; ``samples`` to its committed
    sample count.

    Raises
    ------
    SecureAggregateError
        If a slice did not verify, a weight is out of range, or the shares cannot rebuild the masks.
    """
    bad = sorted(m for m, values in masked.items() if values is None)
    if bad:
        raise SecureAggregateError(f"masked slices of {', '.join(bad)} do not verify: the sum cannot be unmasked")
    if any(not 1 <= samples[m] <= params.max_samples for m in masked):
        raise SecureAggregateError("a committed sample count is outside 1..max_samples")
    slices = {m.lower(): v for m, v in masked.items() if v is not None}
    try:
        summed = unmask_partition(
            context, slices, offset=offset, setups=setups, reveals=reveals, threshold=params.threshold
        )
    except (PrivacyError, KeyError, ValueError) as exc:  # whatever peers' shares provoke: not unmaskable
        raise SecureAggregateError(f"cannot unmask: {exc}") from None
    if params.dp is not None:
        return dp_average(base, summed, len(slices), params.dp.grid)
    total = sum(int(samples[m]) for m in masked)
    return weighted_average(base, summed, total, frac_bits=params.frac_bits)


def dp_average(base: np.ndarray, summed: np.ndarray, count: int, grid: float) -> np.ndarray:
    """DP-FedAvg of a secure round: ``float32(float64(base) + float64(sum of units) * grid / count)``.

    ``summed`` is the ring sum of the contributors' quantized changes and noise shares; read as int64 it
    is their exact integer sum. The float steps are those of :func:`fl_chain.privacy.dp.noisy_mean`.

    Raises
    ------
    SecureAggregateError
        If the sum is beyond 2**53 units (no honest round gets there) or ``count`` is not positive.
    """
    total = np.asarray(summed, dtype=np.uint64).view(np.int64)
    if count <= 0 or (total.size and int(np.abs(total).max()) >= 1 << 53):
        raise SecureAggregateError("the quantized sum is beyond 2**53 grid units: a contributor is out of range")
    result = total.astype(np.float64)
    result *= grid
    result /= float(count)
    result += base
    return result.astype(np.float32)


__all__ = [
    "SecureAggregateError",
    "SecureParams",
    "SecureRoundBlobs",
    "dp_average",
    "parse_reveal",
    "parse_setup",
    "secure_partition",
]
