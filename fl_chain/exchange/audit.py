"""Recompute a finalized round from the chain and IPFS: the audit trail anyone can follow.

A round's global model is its final partitions. Each final partition must be what the task's
contribution rule (:class:`~fl_chain.aggregation.ContributionRule`: validation, norm bound, sample
cap, strategy, and with differential privacy the noise from the round's seed; the code every
aggregator runs) makes of the updates committed in that round, minus
the updates the chain excluded as unavailable *before that partition finalized*: exclusions happen
one at a time in the fallback phase, so a partition is checked against the frozen set minus each
prefix of the exclusion list, longest first (usually there is no exclusion and one candidate).

A secure-aggregation round is recomputed from its masked updates, setups and reveals with the same
code every aggregator runs (:func:`~fl_chain.exchange.secure.secure_partition`); its exclusions all
happened before its reveals, so there is one candidate set.

:func:`round_verdict` and :func:`task_verdicts` say what an audit found for any round, finalized or
not, as a :class:`RoundVerdict` (equal, not equal and why, unverifiable, failed on chain, not final):
``flchain audit`` prints them, and anything else that shows a task's audit trail reads the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from fl_chain.aggregation import ContributionRule, FedAvg, Submission
from fl_chain.chain.coordinator import Coordinator, RoundStatus, TaskStatus, UpdateCommit
from fl_chain.errors import AggregationError, BlobInvalidError, BlobNotFoundError, ConfigError, PrivacyError
from fl_chain.exchange.gather import fetch_global
from fl_chain.exchange.secure import SecureParams, SecureRoundBlobs, secure_partition
from fl_chain.exchange.updates import RoundUpdates
from fl_chain.privacy.context import RoundContext
from fl_chain.privacy.dp import noise_key
from fl_chain.protocol.blob import BlobKind
from fl_chain.protocol.partitioning import partition_bounds
from fl_chain.storage.base import Storage

if TYPE_CHECKING:
    from fl_chain.protocol.task import TaskSpec


@dataclass
class RoundAudit:
    """A finalized round's global model and what the contribution rule says it should be."""

    actual: np.ndarray
    expected: np.ndarray
    excluded: list[str]
    #: Excluded contributors whose update no connected peer served, where a partition matched no set
    #: this audit could fetch: it may have finalized before the exclusion with that update in it, so
    #: when ``ok`` is False and this is not empty the round is unverifiable here, not proven wrong.
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.actual.tobytes() == self.expected.tobytes()


def audit_round(
    storage: Storage,
    coordinator: Coordinator,
    task_id: int,
    round_: int,
    *,
    rule: ContributionRule | None = None,
    initial: np.ndarray | None = None,
    timeout: float = 60,
    secure: SecureParams | None = None,
) -> RoundAudit:
    """Fetch a finalized round's global model and recompute it from its committed updates.

    Parameters
    ----------
    rule:
        The task's rule, ``spec.contribution_rule()`` of its task file. None means plain FedAvg of
        the valid updates with no norm bound and no sample cap (right for a FedAvg task whose updates
        all stay within its bound).
    initial:
        The task's initial model: the base of a round with no finalized round before it. Needed to
        audit such a round under a norm bound; without it and without a bound, a partition where no
        update counts (its base values kept) is taken as it is.
    timeout:
        Seconds each fetch may take.
    secure:
        A secure-aggregation task's parameters (``SecureParams.of(spec)``); required for such a task.

    Validity is decided per partition, as every aggregator decides it: a contributor whose manifest
    is invalid is left out of every partition, one whose blob for a partition is invalid, or whose
    slice the rule refuses, of that partition only.

    Raises
    ------
    BlobNotFoundError
        If a blob the check needs is not served within ``timeout`` (an excluded update that is not
        served is recorded in ``unchecked`` instead).
    ConfigError
        If the round is not finalized, or its base is needed but unknown (``initial`` missing).
    """
    rule = rule if rule is not None else ContributionRule(strategy=FedAvg())
    config, _ = coordinator.get_task(task_id)
    dimension = initial.size if initial is not None else None
    actual = fetch_global(storage, coordinator, task_id, round_, timeout=timeout, dimension=dimension)
    base = _base_model(storage, coordinator, task_id, round_, initial, timeout=timeout, dimension=actual.size)
    if base is None and (rule.norm_bound is not None or rule.dp is not None):
        raise ConfigError(
            f"auditing round {round_} under a norm bound or DP needs the task's initial model (pass initial)"
        )
    commits = coordinator.find_update_commits(task_id, round_)
    excluded = coordinator.get_excluded(task_id, round_)
    if config.secure_aggregation is not None:
        if secure is None or base is None:
            raise ConfigError(f"auditing secure round {round_} needs the task's secure parameters and initial model")
        expected = _secure_expected(
            storage, coordinator, task_id, round_, commits, excluded, base, secure, config.partitions, timeout
        )
        return RoundAudit(actual=actual, expected=expected, excluded=excluded)
    # Differential privacy: the noise every aggregator added, recomputed from the round's on-chain seed.
    key = noise_key(coordinator.get_round(task_id, round_).seed, task_id, round_) if rule.dp is not None else None
    updates = RoundUpdates(
        storage, task_id=task_id, round_=round_, partitions=config.partitions, dimension=actual.size, timeout=timeout
    )
    fetched: dict[tuple[str, int], Submission] = {}
    # What was not served, not asked for twice: (contributor, None) for a manifest, (contributor,
    # partition) for one partition's blob. Per partition: an excluded update's blob of a partition
    # finalized before its exclusion is still held by that partition's aggregators, while the blob of
    # a partition finalized after it may be held by nobody.
    gone: set[tuple[str, int | None]] = set()

    def submission(commit: UpdateCommit, partition: int) -> Submission:
        key = (commit.contributor, partition)
        if key in gone or (commit.contributor, None) in gone:
            raise BlobNotFoundError(f"{commit.contributor}'s update for partition {partition} is not served")
        if key not in fetched:
            try:
                updates.manifest(commit)
            except BlobNotFoundError:
                gone.add((commit.contributor, None))
                raise
            try:
                fetched[key] = updates.submission(commit, partition)
            except BlobNotFoundError:
                gone.add(key)
                raise
        return fetched[key]

    unchecked: list[str] = []
    expected = np.empty_like(actual)
    for bounds in partition_bounds(actual.size, config.partitions):
        window = slice(bounds.offset, bounds.offset + bounds.length)
        # Unknown base (no bound to check): the actual values stand in, so only an empty set goes unchecked.
        partition_base = base[window] if base is not None else actual[window]
        candidates = []
        unfetched: list[str] = []  # excluded contributors a skipped candidate set needed
        for keep in range(len(excluded), -1, -1):  # all exclusions first, then shorter prefixes
            left_out = set(excluded[:keep])
            chosen = []
            for commit in commits:
                if commit.contributor in left_out:
                    continue
                try:
                    chosen.append(submission(commit, bounds.index))
                except BlobNotFoundError:
                    if commit.contributor not in excluded:
                        raise
                    unfetched.append(commit.contributor)
                    break  # a set with an update nobody serves now: it cannot be checked here
            else:
                candidates.append(rule.aggregate(partition_base, chosen, noise_key=key, offset=bounds.offset).values)
        matching = [c for c in candidates if c.tobytes() == actual[window].tobytes()]
        if not matching:
            unchecked.extend(c for c in unfetched if c not in unchecked)
        expected[window] = (matching or candidates or [actual[window]])[0]
    return RoundAudit(actual=actual, expected=expected, excluded=excluded, unchecked=unchecked)


def _secure_expected(
    storage: Storage,
    coordinator: Coordinator,
    task_id: int,
    round_: int,
    commits: list[UpdateCommit],
    excluded: list[str],
    base: np.ndarray,
    secure: SecureParams,
    partitions: int,
    timeout: float,
) -> np.ndarray:
    """A secure round's global model as the aggregators must have computed it (raises when it cannot be)."""
    blobs = SecureRoundBlobs(
        storage,
        coordinator,
        task_id=task_id,
        round_=round_,
        max_participants=secure.max_participants,
        threshold=secure.threshold,
        timeout=timeout,
    )
    setups = blobs.usable_setups()
    reveals, missing = blobs.reveals()
    if missing:
        raise BlobNotFoundError(f"reveal blobs of {', '.join(missing)} are not served")
    left_out = {e.lower() for e in excluded}
    counted = [c for c in commits if c.contributor.lower() not in left_out and c.contributor.lower() in setups]
    updates = RoundUpdates(
        storage,
        task_id=task_id,
        round_=round_,
        partitions=partitions,
        dimension=base.size,
        timeout=timeout,
        blob_kind=BlobKind.MASKED_UPDATE,
    )
    expected = np.empty_like(base)
    for bounds in partition_bounds(base.size, partitions):
        window = slice(bounds.offset, bounds.offset + bounds.length)
        expected[window] = secure_partition(
            base[window],
            {c.contributor.lower(): updates.submission(c, bounds.index).values for c in counted},
            {c.contributor.lower(): c.samples for c in counted},
            context=RoundContext(task_id, round_),
            offset=bounds.offset,
            setups=setups,
            reveals=reveals,
            params=secure,
        )
    return expected


def _base_model(
    storage: Storage,
    coordinator: Coordinator,
    task_id: int,
    round_: int,
    initial: np.ndarray | None,
    *,
    timeout: float,
    dimension: int,
) -> np.ndarray | None:
    """The model ``round_`` was trained from: the latest finalized round before it, else ``initial``.

    (A disputed round is failed, and only the latest finalized round can be disputed, so a finalized
    round was always trained from the latest round finalized before it.)
    """
    for earlier in range(round_ - 1, -1, -1):
        if coordinator.get_round(task_id, earlier).status == RoundStatus.FINALIZED:
            return fetch_global(storage, coordinator, task_id, earlier, timeout=timeout, dimension=dimension)
    return initial


# -- per-round verdicts (``flchain audit``, the dashboard's audit column) ----------------------------


class Verdict(str, Enum):
    """What an audit says of one round."""

    #: Finalized, and its global model is exactly what the contribution rule makes of its updates.
    EQUAL = "equal"
    #: Finalized, but its global model is not what the rule makes of its updates (or does not verify).
    NOT_EQUAL = "not equal"
    #: Finalized, but content the check needs is not served: neither proven right nor wrong here.
    UNVERIFIABLE = "unverifiable"
    #: Failed on chain (too few contributors, timed out, disputed, cancelled): no global model.
    FAILED = "failed"
    #: Still running (or not started): nothing to check yet.
    NOT_FINAL = "not final"


@dataclass(frozen=True)
class RoundVerdict:
    """One round's audit outcome.

    Attributes
    ----------
    round:
        The round.
    verdict:
        What the audit found.
    reason:
        Why, in words: empty for :attr:`Verdict.EQUAL`; the largest difference and the partitions
        that differ, the content that did not verify or was not served, the chain's failure reason,
        or the round's phase.
    max_abs_difference:
        :attr:`Verdict.NOT_EQUAL` with both models at hand: the largest absolute difference between
        the global model on chain and the recomputed one (None otherwise).
    partitions:
        The partitions whose final content differs from the recomputed one (empty when none or unknown).
    """

    round: int
    verdict: Verdict
    reason: str = ""
    max_abs_difference: float | None = None
    partitions: tuple[int, ...] = ()

    @property
    def verified(self) -> bool:
        """False when the round finalized but did not verify (not equal, or unverifiable here)."""
        return self.verdict not in (Verdict.NOT_EQUAL, Verdict.UNVERIFIABLE)

    def line(self) -> str:
        """``round R: <verdict>[: <reason>]``, as ``flchain audit`` prints it."""
        return f"round {self.round}: {self.verdict.value}" + (f": {self.reason}" if self.reason else "")


def round_verdict(
    storage: Storage,
    coordinator: Coordinator,
    task_id: int,
    round_: int,
    *,
    rule: ContributionRule | None = None,
    initial: np.ndarray | None = None,
    secure: SecureParams | None = None,
    timeout: float = 60,
) -> RoundVerdict:
    """Audit ``round_`` of ``task_id`` whatever its state, and say what was found.

    A finalized round is recomputed with :func:`audit_round` (``rule``, ``initial``, ``secure`` and
    ``timeout`` as there); a failed or running round is reported with the chain's reason or phase.
    Content that does not verify (a final partition, an update, a secure round's keys or shares)
    makes the round not equal; content that is not served makes it unverifiable.

    Raises
    ------
    ConfigError
        As :func:`audit_round`, if the task's parameters it needs are missing.
    """
    info = coordinator.get_round(task_id, round_)
    if info.status == RoundStatus.FAILED:
        return RoundVerdict(round_, Verdict.FAILED, info.failure.name.lower().replace("_", " "))
    if info.status != RoundStatus.FINALIZED:
        phase = "not started" if info.status == RoundStatus.NONE else f"{info.status.name.lower()} phase"
        return RoundVerdict(round_, Verdict.NOT_FINAL, phase)
    try:
        audit = audit_round(
            storage, coordinator, task_id, round_, rule=rule, initial=initial, timeout=timeout, secure=secure
        )
    except BlobNotFoundError as exc:
        return RoundVerdict(round_, Verdict.UNVERIFIABLE, f"not served: {exc}")
    except BlobInvalidError as exc:
        return RoundVerdict(round_, Verdict.NOT_EQUAL, f"content does not verify: {exc}")
    except AggregationError as exc:
        return RoundVerdict(round_, Verdict.NOT_EQUAL, f"its updates cannot be aggregated: {exc}")
    except PrivacyError as exc:
        return RoundVerdict(round_, Verdict.NOT_EQUAL, f"its secure-aggregation material does not unmask: {exc}")
    if audit.ok:
        return RoundVerdict(round_, Verdict.EQUAL)
    config, _ = coordinator.get_task(task_id)
    differing = tuple(
        b.index
        for b in partition_bounds(audit.actual.size, config.partitions)
        if audit.actual[b.offset : b.offset + b.length].tobytes()
        != audit.expected[b.offset : b.offset + b.length].tobytes()
    )
    listed = ", ".join(str(p) for p in differing)
    if audit.unchecked:
        return RoundVerdict(
            round_,
            Verdict.UNVERIFIABLE,
            f"partition(s) {listed} match no set of updates served here; the excluded update(s) of "
            f"{', '.join(audit.unchecked)} are not served",
            partitions=differing,
        )
    with np.errstate(invalid="ignore", over="ignore"):
        difference = float(np.max(np.abs(audit.actual.astype(np.float64) - audit.expected.astype(np.float64))))
    return RoundVerdict(
        round_,
        Verdict.NOT_EQUAL,
        f"max abs difference {difference:.6g} in partition(s) {listed} of {config.partitions}",
        max_abs_difference=difference,
        partitions=differing,
    )


def task_verdicts(
    storage: Storage,
    coordinator: Coordinator,
    task_id: int,
    rounds: Iterable[int] | None = None,
    *,
    spec: TaskSpec | None = None,
    initial: np.ndarray | None = None,
    timeout: float = 60,
) -> Iterator[RoundVerdict]:
    """:func:`round_verdict` of each of ``rounds`` (default: every round up to the current one), in order.

    Parameters
    ----------
    spec:
        The task's spec (checked against the chain by the caller): its contribution rule and, for a
        secure task, its secure parameters. None audits as plain FedAvg with no bound (see :func:`audit_round`).
    initial:
        The task's initial model (the base of its first finalized round).
    """
    if rounds is None:
        _, state = coordinator.get_task(task_id)
        rounds = range(state.current_round + 1) if state.status != TaskStatus.OPEN else range(0)
    rule = spec.contribution_rule() if spec is not None else None
    secure = SecureParams.of(spec) if spec is not None and spec.secure_aggregation is not None else None
    for round_ in rounds:
        yield round_verdict(
            storage, coordinator, task_id, round_, rule=rule, initial=initial, secure=secure, timeout=timeout
        )
