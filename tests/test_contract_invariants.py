"""Stateful property test of FLCoordinator: random call sequences must never break its invariants.

Hypothesis drives one task on a freshly deployed coordinator per example with random calls from
an operator and a pool of participants (some admitted, some not, admissions changing on the way):
joins, update commits for the right and wrong rounds, honest and lying aggregate commits for
assigned and unassigned partitions, batch commits, ``advance``, revocations, admissions, and time
jumps that land just before, on, or after the round deadlines.

After every step the machine checks:

(a) a final partition digest never changes (every ``(task, round, partition)`` ever seen final);
(b) every ``UpdateCommitted`` / ``AggregateCommitted`` event was sent by the account it names, and
    that account had joined and, unless the task has open admission, was admitted at that block;
(c) ``current_round`` never decreases, ``finalized_rounds`` never decreases and never exceeds the
    configured rounds; rounds below the current one are finished (finalized or failed);
(d) the contributor count of a round whose contributor set froze never changes.

A revert is an expected outcome of a random call, but it must be one of the contract's declared
custom errors, and one that the called function can raise: a ``TransactionFailedError`` (a revert
we cannot decode, a panic, an out-of-gas) fails the test.

One embedded chain serves the whole run; every example deploys its own coordinator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, settings
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
from fl_chain.errors import ContractRevertError
from tests.conftest import digest, multiaddr, task_config

#: Participant pool size (account 0 is the operator and never participates).
POOL = 6
#: Every custom error the contract declares.
DECLARED_ERRORS = frozenset(item["name"] for item in load_artifact().abi if item.get("type") == "error")

# Errors each entry point can raise (read off FLCoordinator.sol). Any other one is a failure.
E = "FLCoordinator"
JOIN_ERRORS = {f"{E}WrongTaskStatus", f"{E}NotAdmitted", f"{E}AlreadyJoined"}
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
}
AGGREGATE_ERRORS = {
    f"{E}WrongTaskStatus",
    f"{E}RoundNotCurrent",
    f"{E}AggregationNotOpen",
    f"{E}RoundExpired",
    f"{E}PartitionOutOfRange",
    f"{E}ZeroDigest",
    f"{E}NotAdmitted",
    f"{E}NotJoined",
    f"{E}NotAssigned",
    f"{E}AggregateAlreadyCommitted",
}
BATCH_ERRORS = AGGREGATE_ERRORS | {f"{E}LengthMismatch"}
ADVANCE_ERRORS = {f"{E}WrongTaskStatus", f"{E}NothingToAdvance"}
OPERATOR_ERRORS = {f"{E}UnauthorizedOperator"}

UPDATE_DIGESTS = [digest("update-a"), digest("update-b"), digest("update-c"), b"\x00" * 32]
LIES = [digest("lie-a"), digest("lie-b")]
# (replication, quorum) pairs with quorum > replication / 2.
REPLICATION_QUORUM = [(1, 1), (2, 2), (3, 2), (3, 3), (4, 3)]


def honest(round_: int, partition: int) -> bytes:
    """The digest honest aggregators agree on for ``partition`` of ``round_``."""
    return digest(f"aggregate:{round_}:{partition}")


configs = st.builds(
    lambda p, rq, extra, upd, agg, rounds, open_: task_config(
        partitions=p,
        replication=rq[0],
        quorum=rq[1],
        min_contributors=rq[1] + extra,
        update_duration=upd,
        aggregation_duration=agg,
        rounds=rounds,
        open_admission=open_,
    ),
    st.integers(1, 4),
    st.sampled_from(REPLICATION_QUORUM),
    st.integers(0, 1),
    st.sampled_from([30, 100]),
    st.sampled_from([30, 100]),
    st.integers(1, 3),
    st.booleans(),
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


class CoordinatorMachine(RuleBasedStateMachine):
    """One task on a fresh coordinator, driven by random calls; the model tracks only history."""

    def __init__(self, chain: Chain, client: ChainClient) -> None:
        super().__init__()
        self.chain = chain
        self.client = client
        accounts = dev_accounts(POOL + 1)
        self.operator: LocalAccount = accounts[0]
        self.pool: list[LocalAccount] = accounts[1:]
        self.coordinator: Coordinator | None = None
        self.task_id = 0
        self.config: TaskConfig | None = None
        # (block, account, admitted) in chain order: the operator's successful admit/revoke calls.
        self.admission_log: list[tuple[int, str, bool]] = []
        self.admitted: set[str] = set()
        self.joined_at: dict[str, int] = {}  # address -> block of its join, in join order
        self.updated: dict[int, list[str]] = {}  # round -> contributors, in commit order
        self.aggregated: set[tuple[int, str]] = set()  # (round, address) of honest batch commits
        self.by_address = {a.address: a for a in self.pool}
        # Observed history the invariants compare against.
        self.final_seen: dict[tuple[int, int, int], bytes] = {}
        self.frozen_contributors: dict[int, int] = {}
        self.last_round = 0
        self.last_finalized = 0
        self.events_checked_to = 0
        self.commit_events = 0
        self.reverts: dict[str, int] = {}
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
            (self.admitted.add if admitted else self.admitted.discard)(address)

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
        """Deploy, admit and create the task; usually also join enough participants and start it."""
        self.coordinator = Coordinator.deploy(self.client, self.operator)
        self.dirty = True
        self.events_checked_to = self.co.deploy_block
        self.config = config
        joiners = sorted(prejoined)
        if running:
            # Top up the joiners (admitting them) so that the task can start.
            joinable = [i for i in joiners if config.open_admission or i in admitted]
            extra = [i for i in range(POOL) if i not in joinable][: max(0, config.min_contributors - len(joinable))]
            admitted = admitted | (set() if config.open_admission else set(extra))
            joiners = sorted(set(joiners) | set(extra))
        if admitted:
            addresses = [self.pool[i].address for i in sorted(admitted)]
            self._set_admitted(self.co.admit(self.operator, addresses), addresses, True)
        self.task_id = self.co.create_task(self.operator, config)
        for i in joiners:
            self._join(i)
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

    # -- participants ---------------------------------------------------------------------------

    def _join(self, who: int) -> None:
        account = self.pool[who]
        receipt = self._attempt(JOIN_ERRORS, lambda: self.co.join(account, self.task_id, [multiaddr(who)]))
        if receipt is not None:
            assert account.address not in self.joined_at
            self.joined_at[account.address] = int(receipt["blockNumber"])

    @rule(who=members)
    def join(self, who: int) -> None:
        self._join(who)

    @rule(
        who=actors,
        delta=round_deltas,
        update=st.sampled_from(UPDATE_DIGESTS),
        samples=st.sampled_from([1, 10, 1000, 0]),
    )
    def commit_update(self, who: tuple[str, int], delta: int, update: bytes, samples: int) -> None:
        round_ = max(0, self._current_round() + delta)
        account = self._actor(who)
        receipt = self._attempt(
            UPDATE_ERRORS, lambda: self.co.commit_update(account, self.task_id, round_, update, samples)
        )
        if receipt is not None:
            assert account.address not in self.updated.get(round_, [])
            self.updated.setdefault(round_, []).append(account.address)

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
        if shape == "mismatch":
            digests.append(LIES[1])
        self._attempt(
            BATCH_ERRORS,
            lambda: self.co.commit_aggregates(account, self.task_id, round_, partitions, digests),
        )

    # -- honest behaviour ----------------------------------------------------------------------
    # Hypothesis enables only a random subset of rules per example (swarm testing) and random time
    # jumps often make rounds fail; these rules let examples reach aggregation and finalization.

    def _act_honestly(self, account: LocalAccount, samples: int, *, may_wait: bool) -> bool:
        """Do what an honest node would do now; returns whether it sent a transaction."""
        state = self.co.get_task(self.task_id)[1]
        current = state.current_round
        if account.address not in self.joined_at:
            self._join(self.pool.index(account))
            return True
        if state.status == TaskStatus.OPEN:
            self.start_task(by_operator=True)
            return True
        if state.status != TaskStatus.RUNNING:
            return False
        info = self.co.get_round(self.task_id, current)
        now = self.client.block_timestamp() + 1  # the next transaction's block time
        if info.status == RoundStatus.UPDATE and account.address not in self.updated.get(current, []):
            self.commit_update(("any", self.pool.index(account)), 0, digest(f"update:{account.address}"), samples)
            return True
        if info.status == RoundStatus.AGGREGATION and now < info.fallback_deadline:
            finals = self.co.get_final_digests(self.task_id, current)
            if now >= info.aggregation_deadline:
                todo = [p for p, d in enumerate(finals) if d is None]  # fallback: any open partition
            else:
                assigned = self.co.get_assigned_partitions(self.task_id, current, account.address)
                todo = [p for p in assigned if finals[p] is None]
            if todo and (current, account.address) not in self.aggregated:
                self.aggregated.add((current, account.address))
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

    @rule(who=actors, samples=st.sampled_from([10, 1000]))
    def honest_node(self, who: tuple[str, int], samples: int) -> None:
        """One node acts honestly: join, start, commit its update, aggregate, or wait and advance."""
        self._act_honestly(self._actor(who), samples, may_wait=True)

    @rule()
    def honest_everyone(self) -> None:
        """Every joined node acts honestly once, in join order (no waiting)."""
        for address in list(self.joined_at):
            self._act_honestly(self.by_address[address], 100, may_wait=False)

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

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def coordinator_invariants(self) -> None:
        if self.coordinator is None or not self.dirty:
            return
        self.dirty = False
        assert self.config is not None
        config, state = self.co.get_task(self.task_id)
        assert config == self.config

        # (c) rounds and finalized rounds only grow, within the configured rounds.
        assert state.current_round >= self.last_round, (state.current_round, self.last_round)
        assert self.last_finalized <= state.finalized_rounds <= config.rounds
        assert (state.status == TaskStatus.COMPLETED) == (state.finalized_rounds == config.rounds)
        self.last_round, self.last_finalized = state.current_round, state.finalized_rounds

        finalized = 0
        current_status = RoundStatus.NONE
        for round_ in range(state.current_round + 1):
            info = self.co.get_round(self.task_id, round_)
            if round_ < state.current_round:
                assert info.status in (RoundStatus.FINALIZED, RoundStatus.FAILED), (round_, info)
            finalized += info.status == RoundStatus.FINALIZED
            current_status = info.status

            # (d) a frozen contributor set never changes.
            if info.frozen or info.status == RoundStatus.FAILED:
                seen = self.frozen_contributors.setdefault(round_, info.contributors)
                assert info.contributors == seen, (round_, seen, info.contributors)
            if info.frozen:
                assert info.contributors >= config.min_contributors

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
        if state.status == TaskStatus.RUNNING:
            assert current_status in (RoundStatus.UPDATE, RoundStatus.AGGREGATION), current_status

        # (b) commits only from admitted (or, with open admission, joined) accounts.
        start = self.events_checked_to + 1
        latest = int(self.client.w3.eth.block_number)
        if latest < start:
            return
        events = self.co.find_events("UpdateCommitted", from_block=start) + self.co.find_events(
            "AggregateCommitted", from_block=start
        )
        for event in events:
            args = event["args"]
            sender = args["contributor"] if event["event"] == "UpdateCommitted" else args["aggregator"]
            block = int(event["blockNumber"])
            tx = self.client.w3.eth.get_transaction(event["transactionHash"])
            assert tx["from"] == sender, (event, tx["from"])
            assert sender in self.joined_at and self.joined_at[sender] < block, (event, self.joined_at)
            if not config.open_admission:
                assert self._admitted_at(sender, block), (event, self.admission_log)
            self.commit_events += 1
        self.events_checked_to = latest


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


def test_coordinator_invariants(embedded_chain: Chain) -> None:
    client = connect(embedded_chain)
    run_state_machine_as_test(
        lambda: CoordinatorMachine(embedded_chain, client),
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print("coverage:", ", ".join(f"{key}={value}" for key, value in sorted(COVERAGE.items())))
