"""Stateful property test of FLCoordinator: random call sequences must never break its invariants.

Hypothesis drives one task on a freshly deployed coordinator per example with random calls from
an operator and a pool of participants (some admitted, some not, admissions changing on the way):
joins (with valid and oversized registrations), removals, update commits for the right and wrong
rounds (with sample counts around ``maxSamples``), assignment draws, honest and lying aggregate
commits for assigned and unassigned partitions by contributors and non-contributors, batch commits,
unavailability reports, disputes, ``advance``, revocations, admissions, and time jumps that land
just before, on, or after the round deadlines.

After every step the machine replays the contract's events in chain order against a model of the
rules and checks:

(a) a final partition digest never changes (every ``(task, round, partition)`` ever seen final);
(b) every ``UpdateCommitted`` / ``AggregateCommitted`` / ``UnavailabilityReported`` /
    ``RoundDisputeFiled`` event was sent by the account it names, and that account was joined and,
    unless the task has open admission, admitted at that point; an update claims 1..maxSamples;
(c) ``current_round`` never decreases, ``finalized_rounds`` stays within the configured rounds and
    falls only when a dispute fails a finalized round; a round's status moves only forward
    (a finalized round fails only by a dispute) and ``latestFinalizedRound`` is the newest
    finalized round; rounds below the current one are finished (finalized or failed);
(d) the contributor count of a round whose contributor set froze never changes; the assignment key
    is keccak(seed, hash of the freezing block) and is known before any aggregate of the round;
(e) only non-excluded contributors of a round commit aggregates, report or dispute in it (members
    who did not contribute have no vote; a disputer committed no update since); an aggregate is
    assigned (``isFallback`` false) exactly when the Python mirror of the assignment says so, and a
    fallback one comes after the aggregation deadline;
(f) no partition finalizes without ``q`` assigned votes for its digest unless, after the
    aggregation deadline, a strict majority of the round's contributors voted for it;
(g) no update is excluded without reports from a strict majority of the round's contributors,
    and no round is undone by disputes of fewer than a strict majority of its contributors;
(h) ``getVotes`` equals the (assigned, total) votes counted from the events for every digest
    anyone tried to commit, so a refused commit (by a non-contributor, say) changes no count;
(i) the participant list is the set of joined accounts, within ``maxParticipants``.

A revert is an expected outcome of a random call, but it must be one of the contract's declared
custom errors, and one that the called function can raise: a ``TransactionFailedError`` (a revert
we cannot decode, a panic, an out-of-gas) fails the test. ``FLCoordinatorAssignmentNotDrawn`` is
not among the allowed ones: every transaction mines its own block here, so a commit after the
freezing transaction can always read the key.

One embedded chain serves the whole run; every example starts from the same fresh coordinator: the
chain reverted to the snapshot taken right after one deployment (cheaper than a deployment per example).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic, keccak
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from fl_chain.chain import (
    Chain,
    ChainClient,
    Coordinator,
    RoundStatus,
    TaskConfig,
    TaskStatus,
    connect,
    dev_accounts,
    load_artifact,
    open_chain,
)
from fl_chain.chain.coordinator import FailureReason
from fl_chain.errors import ContractRevertError
from fl_chain.protocol.assignment import aggregator_slot
from tests.conftest import DeployedCoordinator, digest, multiaddr, task_config

#: Participant pool size (account 0 is the operator and never participates).
POOL = 6
#: Every custom error the contract declares.
DECLARED_ERRORS = frozenset(item["name"] for item in load_artifact().abi if item.get("type") == "error")

# Errors each entry point can raise (read off FLCoordinator.sol). Any other one is a failure.
E = "FLCoordinator"
JOIN_ERRORS = {
    f"{E}WrongTaskStatus",
    f"{E}NotAdmitted",
    f"{E}AlreadyJoined",
    f"{E}TaskFull",
    f"{E}InvalidMultiaddrs",
    f"{E}MultiaddrTooLong",
    f"{E}PublicKeyTooLong",
}
REMOVE_ERRORS = {f"{E}NotJoined", f"{E}StillAdmitted"}
START_ERRORS = {f"{E}UnauthorizedOperator", f"{E}WrongTaskStatus", f"{E}NotEnoughParticipants"}
UPDATE_ERRORS = {
    f"{E}WrongTaskStatus",
    f"{E}RoundNotCurrent",
    f"{E}UpdatePhaseClosed",
    f"{E}NotJoined",
    f"{E}NotAdmitted",
    f"{E}UpdateAlreadyCommitted",
    f"{E}ZeroDigest",
    f"{E}ZeroSamples",
    f"{E}TooManySamples",
}
DRAW_ERRORS = {f"{E}WrongTaskStatus", f"{E}RoundNotCurrent", f"{E}AggregationNotOpen"}
AGGREGATE_ERRORS = {
    f"{E}WrongTaskStatus",
    f"{E}RoundNotCurrent",
    f"{E}AggregationNotOpen",
    f"{E}RoundExpired",
    f"{E}PartitionOutOfRange",
    f"{E}ZeroDigest",
    f"{E}NotAdmitted",
    f"{E}NotJoined",
    f"{E}NotAContributor",
    f"{E}NotAssigned",
    f"{E}AggregateAlreadyCommitted",
}
BATCH_ERRORS = AGGREGATE_ERRORS | {f"{E}LengthMismatch"}
REPORT_ERRORS = {
    f"{E}WrongTaskStatus",
    f"{E}RoundNotCurrent",
    f"{E}AggregationNotOpen",
    f"{E}RoundExpired",
    f"{E}ReportTooEarly",
    f"{E}NotAdmitted",
    f"{E}NotJoined",
    f"{E}NotAContributor",
    f"{E}SelfReport",
    f"{E}AlreadyReported",
    f"{E}AlreadyExcluded",
}
DISPUTE_ERRORS = {
    f"{E}NotDisputable",
    f"{E}NotAdmitted",
    f"{E}NotJoined",
    f"{E}NotAContributor",
    f"{E}AlreadyDisputed",
}
ADVANCE_ERRORS = {f"{E}WrongTaskStatus", f"{E}NothingToAdvance"}
OPERATOR_ERRORS = {f"{E}UnauthorizedOperator"}

UPDATE_DIGESTS = [digest("update-a"), digest("update-b"), digest("update-c"), b"\x00" * 32]
LIES = [digest("lie-a"), digest("lie-b")]
# (replication, quorum) pairs with quorum > replication / 2.
REPLICATION_QUORUM = [(1, 1), (2, 2), (3, 2), (3, 3), (4, 3)]
MAX_SAMPLES = [100, 1_000_000]
#: Registrations: valid ones most of the time, else one of each bound broken.
REGISTRATIONS = ["ok", "ok", "ok", "ok", "none", "five", "long", "key"]
#: Where a round's status may be at the next check (one step may make several moves, e.g. the last
#: update freezes the set and aggregates finalize the round): only forward, and a finalized round
#: may still fail (by a dispute), a failed one never changes.
STATUS_MOVES = {
    RoundStatus.NONE: set(RoundStatus),
    RoundStatus.UPDATE: {RoundStatus.UPDATE, RoundStatus.AGGREGATION, RoundStatus.FINALIZED, RoundStatus.FAILED},
    RoundStatus.AGGREGATION: {RoundStatus.AGGREGATION, RoundStatus.FINALIZED, RoundStatus.FAILED},
    RoundStatus.FINALIZED: {RoundStatus.FINALIZED, RoundStatus.FAILED},
    RoundStatus.FAILED: {RoundStatus.FAILED},
}


def honest(round_: int, partition: int) -> bytes:
    """The digest honest aggregators agree on for ``partition`` of ``round_``."""
    return digest(f"aggregate:{round_}:{partition}")


def registration(kind: str, who: int) -> tuple[list[str], bytes]:
    """Multiaddrs and public key of a join: valid, or breaking one of the contract's bounds."""
    if kind == "none":
        return [], b""
    if kind == "five":
        return [multiaddr(who)] * 5, b""
    if kind == "long":
        return [multiaddr(who) + "x" * 250], b""
    if kind == "key":
        return [multiaddr(who)], b"\x02" * 65
    return [multiaddr(who)], b"\x02" * 33


configs = st.builds(
    lambda p, rq, extra, upd, agg, rounds, open_, spare, cap: task_config(
        partitions=p,
        replication=rq[0],
        quorum=rq[1],
        min_contributors=rq[1] + extra,
        update_duration=upd,
        aggregation_duration=agg,
        rounds=rounds,
        open_admission=open_,
        max_participants=rq[1] + extra + spare,
        max_samples=cap,
    ),
    st.integers(1, 4),
    st.sampled_from(REPLICATION_QUORUM),
    st.integers(0, 1),
    st.sampled_from([30, 100]),
    st.sampled_from([30, 100]),
    st.integers(1, 3),
    st.booleans(),
    st.sampled_from([0, 1, POOL, POOL, POOL]),
    st.sampled_from(MAX_SAMPLES),
)
members = st.integers(0, POOL - 1)
#: Who acts: any pool member, or (so that examples get past the update phase) one that joined, or
#: one that contributed to the current round; the integer picks within that group.
actors = st.tuples(st.sampled_from(["joined", "contributor", "joined", "any"]), st.integers(0, 63))
#: Operator-only calls come from the operator most of the time.
by_operators = st.sampled_from([True, True, True, False])
round_deltas = st.sampled_from([0, 0, 0, 0, -1, 1])

#: How deep the examples got, summed over the run (printed at the end; see with ``pytest -s``).
COVERAGE: Counter[str] = Counter()


class RoundModel:
    """What the events of one round say, replayed in chain order."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}  # contributor -> commit index
        self.contributors = 0  # frozen count (UpdatePhaseClosed)
        self.freeze_block = 0
        self.aggregation_deadline = 0
        self.seed = b""
        self.key: bytes | None = None
        self.excluded: list[str] = []
        self.reports: Counter[str] = Counter()
        self.disputes = 0
        self.votes: dict[tuple[int, bytes], list[int]] = {}  # (partition, digest) -> [assigned, total]
        self.final: dict[int, bytes] = {}

    def voter(self, account: str) -> bool:
        """A non-excluded contributor of the round: the only accounts with a vote in it."""
        return account in self.index and account not in self.excluded


class CoordinatorMachine(RuleBasedStateMachine):
    """One task on a fresh coordinator, driven by random calls; the model tracks only history."""

    def __init__(self, chain: Chain, client: ChainClient, deployment: DeployedCoordinator) -> None:
        super().__init__()
        self.chain = chain
        self.client = client
        self.deployment = deployment
        accounts = dev_accounts(POOL + 1)
        self.operator: LocalAccount = accounts[0]
        assert deployment.deployer == self.operator.address, "the deployment has another operator"
        self.pool: list[LocalAccount] = accounts[1:]
        self.coordinator: Coordinator | None = None
        self.task_id = 0
        self.config: TaskConfig | None = None
        # (block, account, admitted) in chain order: the operator's successful admit/revoke calls.
        self.admission_log: list[tuple[int, str, bool]] = []
        self.joined_at: dict[str, int] = {}  # address -> block of its join, while joined, in join order
        self.updated: dict[int, list[str]] = {}  # round -> contributors, in commit order
        self.aggregated: set[tuple[int, str]] = set()  # (round, address) of honest batch commits
        self.by_address = {a.address: a for a in self.pool}
        # Observed history the invariants compare against.
        self.final_seen: dict[tuple[int, int, int], bytes] = {}
        self.frozen_contributors: dict[int, int] = {}
        self.status_seen: dict[int, RoundStatus] = {}
        self.last_round = 0
        self.last_finalized = 0
        self.events_checked_to = 0
        self.rounds: dict[int, RoundModel] = {}
        self.event_joined: set[str] = set()  # joined accounts, per the events replayed so far
        self.attempted: set[tuple[int, int, bytes]] = set()  # (round, partition, digest) anyone tried
        self.timestamps: dict[int, int] = {}
        self.topics: dict[bytes, Any] = {}
        self.commit_events = 0
        self.reverts: dict[str, int] = {}
        # The chain's phase at the last invariant check (it changes only by our transactions).
        self.round_status = RoundStatus.NONE
        self.has_final = False
        # Contract state changes only through mined transactions: a reverted call is rejected at gas
        # estimation and never mined, and a time jump mines an empty block. The invariants re-read
        # the chain only after a step that mined one of our transactions.
        self.dirty = False

    # -- helpers --------------------------------------------------------------------------------

    def _attempt(self, allowed: set[str], action: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Run a write; a revert must be a declared error that this entry point can raise."""
        try:
            receipt = action()
        except ContractRevertError as exc:
            assert exc.name in DECLARED_ERRORS, f"undeclared error {exc.name}"
            assert exc.name in allowed, f"unexpected {exc}"
            self.reverts[exc.name] = self.reverts.get(exc.name, 0) + 1
            return None
        self.dirty = True
        return receipt

    def _set_admitted(self, receipt: dict[str, Any], addresses: list[str], admitted: bool) -> None:
        block = int(receipt["blockNumber"])
        for address in addresses:
            self.admission_log.append((block, address, admitted))

    def _admitted_at(self, address: str, block: int) -> bool:
        """Whether ``address`` was admitted when ``block`` executed (changes in earlier blocks)."""
        state = False
        for changed_at, account, admitted in self.admission_log:
            if changed_at >= block:
                break
            if account == address:
                state = admitted
        return state

    @property
    def co(self) -> Coordinator:
        assert self.coordinator is not None
        return self.coordinator

    def _current_round(self) -> int:
        return self.co.get_task(self.task_id)[1].current_round

    def _actor(self, actor: tuple[str, int], current: int | None = None) -> LocalAccount:
        """The account ``actor`` designates (falls back to a wider group when the group is empty)."""
        kind, n = actor
        group = list(self.joined_at) if kind in ("joined", "contributor") else []
        if kind == "contributor" and self.updated.get(current if current is not None else self._current_round()):
            group = self.updated[current if current is not None else self._current_round()]
        return self.by_address[group[n % len(group)]] if group else self.pool[n % POOL]

    # -- setup ----------------------------------------------------------------------------------

    @initialize(
        config=configs,
        admitted=st.sets(members, max_size=POOL),
        prejoined=st.sets(members, max_size=POOL),
        running=st.sampled_from([True, True, True, False]),
    )
    def setup(self, config: TaskConfig, admitted: set[int], prejoined: set[int], running: bool) -> None:
        """Start from a fresh deployment (the chain reverted to the snapshot taken right after the module's
        one), admit and create the task; usually also join enough participants and start it."""
        self.coordinator = self.deployment.fresh()
        self.dirty = True
        self.events_checked_to = self.co.deploy_block
        self.topics = {
            event_abi_to_log_topic(item): getattr(self.co.contract.events, item["name"])()
            for item in self.co.contract.abi
            if item.get("type") == "event"
        }
        self.config = config
        joiners = sorted(prejoined)
        if running:
            # Top up the joiners (admitting them) so that the task can start.
            joinable = [i for i in joiners if config.open_admission or i in admitted]
            extra = [i for i in range(POOL) if i not in joinable][: max(0, config.min_contributors - len(joinable))]
            admitted = admitted | (set() if config.open_admission else set(extra))
            joiners = sorted(set(joiners) | set(extra))
            # Admitted, joinable accounts first, so that maxParticipants keeps room for enough of them.
            joiners.sort(key=lambda i: not (config.open_admission or i in admitted))
        if admitted:
            addresses = [self.pool[i].address for i in sorted(admitted)]
            self._set_admitted(self.co.admit(self.operator, addresses), addresses, True)
        self.task_id = self.co.create_task(self.operator, config)
        for i in joiners:
            self._join(i, "ok")
        if running:
            self.co.start_task(self.operator, self.task_id)

    # -- operator -------------------------------------------------------------------------------

    @rule(who=st.sets(members, min_size=1, max_size=3), by_operator=by_operators)
    def admit(self, who: set[int], by_operator: bool) -> None:
        sender = self.operator if by_operator else self.pool[min(who)]
        addresses = [self.pool[i].address for i in sorted(who)]
        receipt = self._attempt(OPERATOR_ERRORS, lambda: self.co.admit(sender, addresses))
        assert (receipt is not None) == by_operator
        if receipt is not None:
            self._set_admitted(receipt, addresses, True)
            assert all(self.co.is_admitted(a) for a in addresses)

    @rule(who=members, by_operator=by_operators)
    def revoke(self, who: int, by_operator: bool) -> None:
        sender = self.operator if by_operator else self.pool[(who + 1) % POOL]
        address = self.pool[who].address
        receipt = self._attempt(OPERATOR_ERRORS, lambda: self.co.revoke(sender, address))
        assert (receipt is not None) == by_operator
        if receipt is not None:
            self._set_admitted(receipt, [address], False)
            assert not self.co.is_admitted(address)

    @rule(by_operator=by_operators)
    def start_task(self, by_operator: bool) -> None:
        sender = self.operator if by_operator else self.pool[0]
        self._attempt(START_ERRORS, lambda: self.co.start_task(sender, self.task_id))

    @rule(who=members, sender=st.integers(-1, POOL - 1))
    def remove_participant(self, who: int, sender: int) -> None:
        """The operator, or anyone (which works only for a revoked member of a closed task), removes ``who``."""
        account = self.pool[who].address
        remover = self.operator if sender < 0 else self.pool[sender]
        receipt = self._attempt(REMOVE_ERRORS, lambda: self.co.remove_participant(remover, self.task_id, account))
        if receipt is not None:
            assert account in self.joined_at
            del self.joined_at[account]

    # -- participants ---------------------------------------------------------------------------

    def _join(self, who: int, kind: str) -> None:
        account = self.pool[who]
        addresses, key = registration(kind, who)
        receipt = self._attempt(JOIN_ERRORS, lambda: self.co.join(account, self.task_id, addresses, key))
        if receipt is not None:
            assert kind == "ok", f"join with a {kind!r} registration succeeded"
            assert account.address not in self.joined_at
            self.joined_at[account.address] = int(receipt["blockNumber"])

    @rule(who=members, kind=st.sampled_from(REGISTRATIONS))
    def join(self, who: int, kind: str) -> None:
        self._join(who, kind)

    @rule(
        who=actors,
        delta=round_deltas,
        update=st.sampled_from(UPDATE_DIGESTS),
        samples=st.sampled_from(["one", "ten", "cap", "above", "zero"]),
    )
    def commit_update(self, who: tuple[str, int], delta: int, update: bytes, samples: str) -> None:
        assert self.config is not None
        cap = self.config.max_samples
        count = {"one": 1, "ten": 10, "cap": cap, "above": cap + 1, "zero": 0}[samples]
        round_ = max(0, self._current_round() + delta)
        account = self._actor(who)
        receipt = self._attempt(
            UPDATE_ERRORS, lambda: self.co.commit_update(account, self.task_id, round_, update, count)
        )
        if receipt is not None:
            assert 1 <= count <= cap
            assert account.address not in self.updated.get(round_, [])
            self.updated.setdefault(round_, []).append(account.address)

    @rule(who=st.integers(-1, POOL - 1), delta=round_deltas)
    def draw_assignment(self, who: int, delta: int) -> None:
        """Anyone (even an account that never joined) may store the key of a frozen round."""
        account = self.operator if who < 0 else self.pool[who]
        round_ = max(0, self._current_round() + delta)
        self._attempt(DRAW_ERRORS, lambda: self.co.draw_assignment(account, self.task_id, round_))

    @rule(
        who=actors,
        delta=round_deltas,
        target_assigned=st.booleans(),
        pick=st.integers(0, 7),
        lie=st.sampled_from([None, None, LIES[0], LIES[1]]),
    )
    def commit_aggregate(
        self, who: tuple[str, int], delta: int, target_assigned: bool, pick: int, lie: bytes | None
    ) -> None:
        """One aggregate: an assigned partition of ``who`` (if any) or any index up to P (out of range)."""
        assert self.config is not None
        current = self._current_round()
        account = self._actor(who, current)
        round_ = max(0, current + delta)
        assigned = self.co.get_assigned_partitions(self.task_id, current, account.address) if target_assigned else []
        partition = assigned[pick % len(assigned)] if assigned else pick % (self.config.partitions + 1)
        value = lie if lie is not None else honest(round_, partition)
        self.attempted.add((round_, partition, value))
        self._attempt(
            AGGREGATE_ERRORS,
            lambda: self.co.commit_aggregate(account, self.task_id, round_, partition, value),
        )

    @rule(
        who=actors,
        delta=round_deltas,
        liar_at=st.sampled_from([None, None, 0, 1]),
        shape=st.sampled_from(["assigned", "assigned", "all", "mismatch"]),
    )
    def commit_aggregates(self, who: tuple[str, int], delta: int, liar_at: int | None, shape: str) -> None:
        """A batch: ``who``'s assigned partitions, every partition, or arrays of different lengths."""
        assert self.config is not None
        current = self._current_round()
        account = self._actor(who, current)
        round_ = max(0, current + delta)
        if shape == "assigned":
            partitions = self.co.get_assigned_partitions(self.task_id, current, account.address)
        else:
            partitions = list(range(self.config.partitions))
        digests = [LIES[0] if i == liar_at else honest(round_, p) for i, p in enumerate(partitions)]
        self.attempted.update((round_, p, d) for p, d in zip(partitions, digests))
        if shape == "mismatch":
            digests.append(LIES[1])
        self._attempt(
            BATCH_ERRORS,
            lambda: self.co.commit_aggregates(account, self.task_id, round_, partitions, digests),
        )

    @rule(who=actors, reported=members, delta=round_deltas)
    def report_unavailable(self, who: tuple[str, int], reported: int, delta: int) -> None:
        """A (usually false) report that the ``reported``-th contributor's update cannot be fetched."""
        current = self._current_round()
        reporter = self._actor(who, current)
        contributors = self.updated.get(current, [])
        contributor = contributors[reported % len(contributors)] if contributors else self.pool[reported].address
        round_ = max(0, current + delta)
        self._attempt(REPORT_ERRORS, lambda: self.co.report_unavailable(reporter, self.task_id, round_, contributor))

    @rule(who=actors, delta=st.sampled_from([0, 0, 0, -1, 1]))
    def dispute_round(self, who: tuple[str, int], delta: int) -> None:
        """A contributor of the latest finalized round (or anyone) disputes it (or another round)."""
        state = self.co.get_task(self.task_id)[1]
        latest = state.latest_finalized_round or 0  # None before any round finalized
        account = self._actor(who, latest)
        round_ = max(0, latest + delta)
        self._attempt(DISPUTE_ERRORS, lambda: self.co.dispute_round(account, self.task_id, round_))

    # -- coalitions ------------------------------------------------------------------------------
    # Random single calls rarely line up a majority; these rules make every contributor (but
    # ``spare`` of them) act together, so exclusions, fallback majorities and disputes happen.

    def _to_fallback(self) -> RoundModel | None:
        """If the current round aggregates, move time past its aggregation deadline (not its fallback one)."""
        info = self.co.get_round(self.task_id, self._current_round())
        if info.status != RoundStatus.AGGREGATION:
            return None
        now = self.client.block_timestamp()
        if now >= info.fallback_deadline - 2:
            return None
        if now + 1 < info.aggregation_deadline:
            self.chain.increase_time(info.aggregation_deadline - now)
        return self.rounds.get(info.round)

    @rule(reported=members, spare=st.integers(0, 2))
    def coalition_reports(self, reported: int, spare: int) -> None:
        """In the fallback phase, all contributors but ``spare`` report the ``reported``-th one."""
        if self._to_fallback() is None:
            return
        current = self._current_round()
        contributors = self.updated.get(current, [])
        if not contributors:
            return
        target = contributors[reported % len(contributors)]
        reporters = [c for c in contributors if c != target]
        for reporter in reporters[: max(0, len(reporters) - spare)]:
            account = self.by_address[reporter]
            self._attempt(REPORT_ERRORS, lambda a=account: self.co.report_unavailable(a, self.task_id, current, target))

    @rule(spare=st.integers(0, 2), lie=st.booleans())
    def coalition_fallback(self, spare: int, lie: bool) -> None:
        """In the fallback phase, all contributors but ``spare`` commit one digest for every open partition."""
        if self._to_fallback() is None:
            return
        current = self._current_round()
        contributors = self.updated.get(current, [])
        finals = self.co.get_final_digests(self.task_id, current)
        todo = [p for p, d in enumerate(finals) if d is None]
        digests = [LIES[1] if lie else honest(current, p) for p in todo]
        self.attempted.update((current, p, d) for p, d in zip(todo, digests))
        for address in contributors[: max(0, len(contributors) - spare)]:
            account = self.by_address[address]
            if self.co.get_round(self.task_id, current).status != RoundStatus.AGGREGATION or not todo:
                return
            self._attempt(
                BATCH_ERRORS, lambda a=account: self.co.commit_aggregates(a, self.task_id, current, todo, digests)
            )

    @rule(spare=st.integers(0, 2))
    def coalition_disputes(self, spare: int) -> None:
        """All contributors of the latest finalized round but ``spare`` dispute it."""
        state = self.co.get_task(self.task_id)[1]
        if state.latest_finalized_round is None:
            return
        latest = state.latest_finalized_round
        contributors = self.updated.get(latest, [])
        for address in contributors[: max(0, len(contributors) - spare)]:
            account = self.by_address[address]
            self._attempt(DISPUTE_ERRORS, lambda a=account: self.co.dispute_round(a, self.task_id, latest))

    # -- honest behaviour ----------------------------------------------------------------------
    # Hypothesis enables only a random subset of rules per example (swarm testing) and random time
    # jumps often make rounds fail; these rules let examples reach aggregation and finalization.

    def _act_honestly(self, account: LocalAccount, *, may_wait: bool) -> bool:
        """Do what an honest node would do now; returns whether it sent a transaction."""
        state = self.co.get_task(self.task_id)[1]
        current = state.current_round
        if account.address not in self.joined_at:
            self._join(self.pool.index(account), "ok")
            return True
        if state.status == TaskStatus.OPEN:
            self.start_task(by_operator=True)
            return True
        if state.status != TaskStatus.RUNNING:
            return False
        info = self.co.get_round(self.task_id, current)
        now = self.client.block_timestamp() + 1  # the next transaction's block time
        if info.status == RoundStatus.UPDATE and account.address not in self.updated.get(current, []):
            self.commit_update(("any", self.pool.index(account)), 0, digest(f"update:{account.address}"), "ten")
            return True
        contributor = account.address in self.updated.get(current, [])
        if info.status == RoundStatus.AGGREGATION and now < info.fallback_deadline and contributor:
            if info.assignment_key is None:  # the freezing block's hash is read from a later block
                self._attempt(DRAW_ERRORS, lambda: self.co.draw_assignment(account, self.task_id, current))
                return True
            finals = self.co.get_final_digests(self.task_id, current)
            if now >= info.aggregation_deadline:
                todo = [p for p, d in enumerate(finals) if d is None]  # fallback: any open partition
            else:
                assigned = self.co.get_assigned_partitions(self.task_id, current, account.address)
                todo = [p for p in assigned if finals[p] is None]
            if todo and (current, account.address) not in self.aggregated:
                self.aggregated.add((current, account.address))
                self.attempted.update((current, p, honest(current, p)) for p in todo)
                self._attempt(
                    BATCH_ERRORS,
                    lambda: self.co.commit_aggregates(
                        account, self.task_id, current, todo, [honest(current, p) for p in todo]
                    ),
                )
                return True
        if not may_wait:
            return False
        # Nothing left to do in this phase: wait for its deadline, then move the round on.
        deadline = {RoundStatus.UPDATE: info.update_deadline, RoundStatus.AGGREGATION: info.fallback_deadline}
        wait = deadline.get(info.status, 0) - self.client.block_timestamp()
        if wait > 1:
            self.chain.increase_time(wait)
        self._attempt(ADVANCE_ERRORS, lambda: self.co.advance(account, self.task_id))
        return True

    @rule(who=actors)
    def honest_node(self, who: tuple[str, int]) -> None:
        """One node acts honestly: join, start, commit its update, draw, aggregate, or wait and advance."""
        self._act_honestly(self._actor(who), may_wait=True)

    @rule()
    def honest_everyone(self) -> None:
        """Every joined node acts honestly once, in join order (no waiting)."""
        for address in list(self.joined_at):
            self._act_honestly(self.by_address[address], may_wait=False)

    @rule(who=st.integers(-1, POOL - 1))
    def advance(self, who: int) -> None:
        """Anyone may call ``advance``, even the operator or an account that never joined."""
        account = self.operator if who < 0 else self.pool[who]
        self._attempt(ADVANCE_ERRORS, lambda: self.co.advance(account, self.task_id))

    # -- time -----------------------------------------------------------------------------------

    @rule(seconds=st.one_of(st.integers(1, 20), st.integers(21, 150)))
    def increase_time(self, seconds: int) -> None:
        self.chain.increase_time(seconds)

    @rule(offset=st.integers(-2, 2))
    def jump_to_deadline(self, offset: int) -> None:
        """Land the next transaction around the current round's next deadline."""
        info = self.co.get_round(self.task_id, self._current_round())
        if info.status == RoundStatus.UPDATE:
            deadline = info.update_deadline
        elif info.status == RoundStatus.AGGREGATION:
            now = self.client.block_timestamp()
            deadline = info.aggregation_deadline if now < info.aggregation_deadline else info.fallback_deadline
        else:
            return
        # increase_time(s) mines a block s seconds after the latest; the next transaction lands 1 s later.
        seconds = deadline + offset - self.client.block_timestamp() - 1
        if seconds > 0:
            self.chain.increase_time(seconds)

    # -- event replay ---------------------------------------------------------------------------

    def _timestamp(self, block: int) -> int:
        if block not in self.timestamps:
            self.timestamps[block] = int(self.client.w3.eth.get_block(block)["timestamp"])
        return self.timestamps[block]

    def _round(self, round_: int) -> RoundModel:
        return self.rounds.setdefault(round_, RoundModel())

    def _sender_ok(self, sender: str, log: Any) -> None:
        """(b) the transaction's sender is the account the event names, joined and (closed task) admitted."""
        assert self.config is not None
        block = int(log["blockNumber"])
        tx = self.client.w3.eth.get_transaction(log["transactionHash"])
        assert tx["from"] == sender, (log, tx["from"])
        assert sender in self.event_joined, (log, sorted(self.event_joined))
        if not self.config.open_admission:
            assert self._admitted_at(sender, block), (log, self.admission_log)

    def _replay(self, logs: list[Any]) -> set[tuple[int, int, bytes]]:
        """Check every event against the rules, in chain order; returns the vote counts it changed."""
        assert self.config is not None
        config = self.config
        changed: set[tuple[int, int, bytes]] = set()
        for log in logs:
            name, args = log["event"], log["args"]
            block = int(log["blockNumber"])
            if name == "ParticipantJoined":
                assert args["account"] not in self.event_joined
                self.event_joined.add(args["account"])
                assert len(self.event_joined) <= config.max_participants
            elif name == "ParticipantRemoved":
                self.event_joined.remove(args["account"])
            elif name == "RoundStarted":
                self._round(int(args["round"])).seed = bytes(args["seed"])
            elif name == "UpdateCommitted":
                r = self._round(int(args["round"]))
                self._sender_ok(args["contributor"], log)
                assert 1 <= args["samples"] <= config.max_samples, args
                assert args["contributor"] not in r.index and args["index"] == len(r.index), (args, r.index)
                r.index[args["contributor"]] = int(args["index"])
                self.commit_events += 1
            elif name == "UpdatePhaseClosed":
                r = self._round(int(args["round"]))
                assert args["contributors"] == len(r.index) >= config.min_contributors
                r.contributors, r.freeze_block = int(args["contributors"]), block
                r.aggregation_deadline = int(args["aggregationDeadline"])
            elif name == "AssignmentDrawn":
                r = self._round(int(args["round"]))
                assert r.key is None and r.freeze_block and block > r.freeze_block
                if block - r.freeze_block <= 256:  # else the contract re-anchors to a later block (no event)
                    freezing = bytes(self.client.w3.eth.get_block(r.freeze_block)["hash"])
                    assert bytes(args["key"]) == keccak(encode(["bytes32", "bytes32"], [r.seed, freezing]))
                r.key = bytes(args["key"])
            elif name == "AggregateCommitted":
                self._aggregate(log, changed)
            elif name == "PartitionFinalized":
                round_, partition, value = int(args["round"]), int(args["partition"]), bytes(args["digest"])
                r = self._round(round_)
                assigned, total = r.votes.get((partition, value), [0, 0])
                late = self._timestamp(block) >= r.aggregation_deadline
                # (f) a quorum of assigned votes, or after the deadline a strict contributor majority.
                assert assigned >= config.quorum or (late and 2 * total > r.contributors), (
                    round_,
                    partition,
                    assigned,
                    total,
                    r.contributors,
                    late,
                )
                assert partition not in r.final
                r.final[partition] = value
            elif name == "UnavailabilityReported":
                r = self._round(int(args["round"]))
                self._sender_ok(args["reporter"], log)
                assert r.voter(args["reporter"]), (args, r.index, r.excluded)  # (e)
                assert r.voter(args["contributor"]) and args["contributor"] != args["reporter"]
                assert self._timestamp(block) >= r.aggregation_deadline
                r.reports[args["contributor"]] += 1
                assert args["reports"] == r.reports[args["contributor"]]
            elif name == "ContributionExcluded":
                r = self._round(int(args["round"]))
                # (g) a strict majority of the round's contributors reported it.
                assert 2 * r.reports[args["contributor"]] > r.contributors, (args, r.reports, r.contributors)
                assert args["contributor"] not in r.excluded
                r.excluded.append(args["contributor"])
            elif name == "RoundDisputeFiled":
                r = self._round(int(args["round"]))
                self._sender_ok(args["account"], log)
                assert r.voter(args["account"]), (args, r.index, r.excluded)  # (e)
                disputed = int(args["round"])  # and it committed no update since (it fetched no later model)
                assert not any(args["account"] in m.index for n, m in self.rounds.items() if n > disputed)
                r.disputes += 1
                assert args["disputes"] == r.disputes
            elif name == "RoundFailed" and args["reason"] == FailureReason.DISPUTED:
                r = self._round(int(args["round"]))
                if len(r.final) == config.partitions:  # the disputed round itself, not the one failing with it
                    assert 2 * r.disputes > r.contributors, (args, r.disputes, r.contributors)  # (g)
        return changed

    def _aggregate(self, log: Any, changed: set[tuple[int, int, bytes]]) -> None:
        """(b), (d), (e) for one AggregateCommitted event, and its vote."""
        assert self.config is not None
        args = log["args"]
        round_, partition, value = int(args["round"]), int(args["partition"]), bytes(args["digest"])
        r = self._round(round_)
        aggregator = args["aggregator"]
        self._sender_ok(aggregator, log)
        assert r.voter(aggregator), (args, r.index, r.excluded)  # (e) only contributors vote
        assert r.key is not None, f"aggregate of round {round_} before its key was drawn"  # (d)
        slot = aggregator_slot(
            r.index[aggregator], partition, contributors=r.contributors, key=r.key, replication=self.config.replication
        )
        assert args["isFallback"] == (slot is None), (args, slot)
        if args["isFallback"]:
            assert self._timestamp(int(log["blockNumber"])) >= r.aggregation_deadline
        votes = r.votes.setdefault((partition, value), [0, 0])
        votes[0] += slot is not None
        votes[1] += 1
        changed.add((round_, partition, value))
        self.commit_events += 1

    def _new_logs(self, start: int, end: int) -> list[Any]:
        raw = self.client.w3.eth.get_logs({"address": self.co.address, "fromBlock": start, "toBlock": end})
        logs = [self.topics[bytes(entry["topics"][0])].process_log(entry) for entry in raw]
        return sorted(logs, key=lambda e: (e["blockNumber"], e["transactionIndex"], e["logIndex"]))

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def coordinator_invariants(self) -> None:
        if self.coordinator is None or not self.dirty:
            return
        self.dirty = False
        assert self.config is not None
        config, state = self.co.get_task(self.task_id)
        assert config == self.config

        # (b), (d)-(g): replay the new events against the rules.
        start = self.events_checked_to + 1
        latest = int(self.client.w3.eth.block_number)
        changed: set[tuple[int, int, bytes]] = set()
        if latest >= start:
            changed = self._replay(self._new_logs(start, latest))
            self.events_checked_to = latest

        # (h) getVotes equals the event count for every digest committed or tried (a refused commit
        # changes nothing), checked once per step for what changed or was tried since.
        for round_, partition, value in changed | self.attempted:
            if partition >= config.partitions:
                continue
            counted = self.rounds.get(round_, RoundModel()).votes.get((partition, value), [0, 0])
            assert self.co.get_votes(self.task_id, round_, partition, value) == tuple(counted), (
                round_,
                partition,
                value,
                counted,
            )
        self.attempted.clear()

        # (i) the participant list is the joined set, within maxParticipants.
        participants = self.co.get_participants(self.task_id)
        assert {p.account for p in participants} == self.event_joined == set(self.joined_at)
        assert len(participants) == state.participant_count <= config.max_participants

        # (c) rounds only grow; finalized rounds fall only by a dispute.
        assert state.current_round >= self.last_round, (state.current_round, self.last_round)
        assert state.finalized_rounds <= config.rounds
        assert (state.status == TaskStatus.COMPLETED) == (state.finalized_rounds == config.rounds)
        self.last_round = state.current_round

        finalized = 0
        newest_final = None
        current_status = RoundStatus.NONE
        undone = 0
        for round_ in range(state.current_round + 1):
            info = self.co.get_round(self.task_id, round_)
            previous = self.status_seen.get(round_, RoundStatus.NONE)
            assert info.status in STATUS_MOVES[previous], (round_, previous, info.status)
            if previous == RoundStatus.FINALIZED and info.status == RoundStatus.FAILED:
                assert info.failure == FailureReason.DISPUTED, (round_, info)
                undone += 1
            self.status_seen[round_] = info.status
            if round_ < state.current_round:
                assert info.status in (RoundStatus.FINALIZED, RoundStatus.FAILED), (round_, info)
            if info.status == RoundStatus.FINALIZED:
                finalized += 1
                newest_final = round_
            current_status = info.status

            # (d) a frozen contributor set never changes; the key is the one drawn from the freezing block.
            if info.frozen or info.status == RoundStatus.FAILED:
                seen = self.frozen_contributors.setdefault(round_, info.contributors)
                assert info.contributors == seen, (round_, seen, info.contributors)
            if info.frozen:
                assert info.contributors >= config.min_contributors
            model = self.rounds.get(round_)
            if model is not None and model.key is not None:
                assert info.assignment_key == model.key
            if model is not None:
                assert self.co.get_excluded(self.task_id, round_) == model.excluded
                assert (info.excluded_count, info.disputes) == (len(model.excluded), model.disputes)

            # (a) a final digest never changes (and a finalized round has every partition final).
            if info.status == RoundStatus.FINALIZED:
                assert info.finalized_partitions == config.partitions
            seen_final = any((self.task_id, round_, p) in self.final_seen for p in range(config.partitions))
            if info.finalized_partitions == 0 and not seen_final:
                continue  # nothing final in this round now or before (saves a call per round)
            finals = self.co.get_final_digests(self.task_id, round_)
            assert sum(d is not None for d in finals) == info.finalized_partitions
            for partition, value in enumerate(finals):
                key = (self.task_id, round_, partition)
                if key in self.final_seen:
                    assert value == self.final_seen[key], f"final digest of {key} changed"
                elif value is not None:
                    self.final_seen[key] = value
        assert finalized == state.finalized_rounds
        # Finalized rounds fall only by the rounds a dispute failed since the last check.
        assert state.finalized_rounds >= self.last_finalized - undone, (state, self.last_finalized, undone)
        self.last_finalized = state.finalized_rounds
        assert state.latest_finalized_round == newest_final, (state, newest_final)
        self.round_status, self.has_final = current_status, newest_final is not None
        if state.status == TaskStatus.RUNNING:
            assert current_status in (RoundStatus.UPDATE, RoundStatus.AGGREGATION), current_status

    def teardown(self) -> None:
        """Record how deep the example got."""
        if self.coordinator is None:
            return
        state = self.co.get_task(self.task_id)[1]
        COVERAGE["examples"] += 1
        COVERAGE[f"task ended {state.status.name}"] += 1
        COVERAGE["finalized rounds"] += state.finalized_rounds
        COVERAGE["rounds started"] += state.current_round + (state.status != TaskStatus.OPEN)
        COVERAGE["final partitions"] += len(self.final_seen)
        COVERAGE["frozen rounds"] += len(self.frozen_contributors)
        COVERAGE["commit events"] += self.commit_events
        COVERAGE["fallback votes"] += sum(
            total - assigned for r in self.rounds.values() for assigned, total in r.votes.values()
        )
        COVERAGE["exclusions"] += sum(len(r.excluded) for r in self.rounds.values())
        COVERAGE["disputes"] += sum(r.disputes for r in self.rounds.values())
        for name, count in self.reverts.items():
            COVERAGE[f"revert {name.removeprefix(E)}"] += count


@pytest.fixture(scope="module")
def embedded_chain() -> Iterator[Chain]:
    """One embedded chain for the whole property run."""
    opened = open_chain("embedded", accounts=POOL + 1)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def embedded_deployment(embedded_chain: Chain) -> DeployedCoordinator:
    """One FLCoordinator deployment that every example starts from (by a revert, not a new deployment)."""
    client = connect(embedded_chain)
    return DeployedCoordinator(embedded_chain, client, dev_accounts(POOL + 1)[0])


@pytest.mark.long
def test_invariants_hold_through_exclusion_fallback_majority_and_dispute(
    embedded_chain: Chain, embedded_deployment: DeployedCoordinator
) -> None:
    """A fixed run through the paths random examples reach only sometimes, invariants checked after
    every step: five contributors; two reports exclude nobody, four exclude one; the others finalize
    round 0 by a fallback majority; three of its contributors dispute it, which undoes it and fails
    round 1; the task then completes."""
    machine = CoordinatorMachine(embedded_chain, embedded_deployment.client, embedded_deployment)
    config = task_config(
        partitions=2,
        replication=2,
        quorum=2,
        min_contributors=2,
        update_duration=100,
        aggregation_duration=100,
        rounds=2,
        max_participants=POOL,
        max_samples=1000,
    )

    def step(action: Callable[[], None]) -> None:
        action()
        machine.dirty = True
        machine.coordinator_invariants()

    step(lambda: machine.setup(config=config, admitted=set(range(5)), prejoined=set(range(5)), running=True))
    step(machine.honest_everyone)  # five updates: the last one freezes round 0
    assert machine.round_status == RoundStatus.AGGREGATION
    step(lambda: machine.coalition_reports(reported=1, spare=2))  # 2 of 5 reports: no exclusion
    step(lambda: machine.coalition_reports(reported=0, spare=0))  # 4 of 5: excluded
    step(lambda: machine.coalition_fallback(spare=0, lie=False))  # 4 of 5 votes per open partition
    assert machine.rounds[0].excluded == [machine.updated[0][0]]
    assert len(machine.rounds[0].final) == 2 and machine.has_final
    step(lambda: machine.coalition_disputes(spare=0))
    assert machine.rounds[0].disputes == 3  # the third of five is a majority; the fourth finds it undone
    assert machine.status_seen[0] == machine.status_seen[1] == RoundStatus.FAILED
    for _ in range(12):
        if machine.co.get_task(machine.task_id)[1].status == TaskStatus.COMPLETED:
            break
        step(lambda: machine.honest_node(("joined", 0)))
        step(machine.honest_everyone)
    state = machine.co.get_task(machine.task_id)[1]
    assert (state.status, state.finalized_rounds) == (TaskStatus.COMPLETED, 2)
    fallback = sum(total - assigned for r in machine.rounds.values() for assigned, total in r.votes.values())
    assert fallback > 0
    machine.teardown()


#: The state machine's runs are split into shards so parallel test workers share them (18 runs in all).
INVARIANT_SHARDS = 3
#: The first shard's seed; shard k draws from INVARIANT_SEED + k.
INVARIANT_SEED = 20261202


@pytest.mark.long
@pytest.mark.parametrize("shard", range(INVARIANT_SHARDS))
def test_coordinator_invariants(embedded_chain: Chain, embedded_deployment: DeployedCoordinator, shard: int) -> None:
    """Random sequences of every contract call by members, outsiders and the operator keep every invariant.

    Each shard draws its own runs from its own seed: the same runs on every machine and in CI (where
    Hypothesis's CI profile would otherwise derandomize every shard to the same runs)."""
    run_state_machine_as_test(
        seed(INVARIANT_SEED + shard)(
            lambda: CoordinatorMachine(embedded_chain, embedded_deployment.client, embedded_deployment)
        ),
        settings=settings(
            max_examples=6,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print("coverage:", ", ".join(f"{key}={value}" for key, value in sorted(COVERAGE.items())))
