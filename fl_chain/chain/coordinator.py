"""Typed access to a deployed FLCoordinator: one method per contract function."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import Contract

from fl_chain.chain.artifacts import Artifact, load_artifact
from fl_chain.chain.client import ChainClient, RevertDecoder
from fl_chain.chain.views import ViewFunctions
from fl_chain.errors import ConfigError, ContractNotFoundError, ContractRevertError
from fl_chain.protocol.task import SecureAggregationConfig, TaskConfig

ZERO_DIGEST = b"\x00" * 32
#: Participants read per ``getParticipants`` call (each costs ~25k gas of the call's budget).
PARTICIPANT_PAGE = 200


class TaskStatus(IntEnum):
    NONE = 0
    OPEN = 1
    RUNNING = 2
    COMPLETED = 3
    CANCELLED = 4


class RoundStatus(IntEnum):
    NONE = 0
    UPDATE = 1
    AGGREGATION = 2
    FINALIZED = 3
    FAILED = 4
    #: Secure aggregation: setups (the key set U1) before the update phase.
    SHARES = 5
    #: Secure aggregation: check window (exclusions) then reveal window, after the update phase.
    UNMASK = 6


class FailureReason(IntEnum):
    NONE = 0
    TOO_FEW_CONTRIBUTORS = 1
    AGGREGATION_TIMED_OUT = 2
    TASK_CANCELLED = 3
    DISPUTED = 4
    #: Secure aggregation: fewer than ``min_contributors`` members committed a setup.
    TOO_FEW_SETUPS = 5
    #: Secure aggregation: fewer than the threshold t of contributors committed a reveal.
    TOO_FEW_REVEALS = 6


@dataclass(frozen=True)
class TaskState:
    """A task's progress."""

    status: TaskStatus
    participant_count: int
    current_round: int
    finalized_rounds: int
    latest_finalized_round: int | None
    creator: str


@dataclass(frozen=True)
class RoundInfo:
    """One round's state, deadlines and seed (``FLCoordinator.RoundView``)."""

    round: int
    status: RoundStatus
    failure: FailureReason
    start_time: int
    update_deadline: int
    aggregation_deadline: int
    fallback_deadline: int
    contributors: int
    finalized_partitions: int
    excluded_count: int
    disputes: int
    total_samples: int
    seed: bytes
    #: Keys the aggregator assignment; ``None`` until the freezing block's hash is readable.
    assignment_key: bytes | None
    #: Secure aggregation only (0 otherwise): the shares deadline.
    shares_deadline: int = 0
    #: Secure aggregation only: the check window ends and the reveal window opens (0 until U2 froze).
    reveal_start: int = 0
    #: Secure aggregation only: the reveal window ends (0 until U2 froze).
    unmask_deadline: int = 0
    #: Secure aggregation only: members of the key set U1 (setups committed).
    setups: int = 0
    #: Secure aggregation only: members of the reveal set U3 (reveals committed).
    reveals: int = 0

    @property
    def frozen(self) -> bool:
        """Whether the contributor set is frozen (aggregation, or with secure aggregation unmasking, has begun).

        With secure aggregation ``aggregation_deadline`` is the latest it can be while the round unmasks,
        and the end of the unmask phase plus the aggregation duration once aggregation opened.
        """
        return self.aggregation_deadline != 0


@dataclass(frozen=True)
class ParticipantInfo:
    """A participant's registration."""

    account: str
    update_round: int
    index: int
    samples: int
    multiaddrs: tuple[str, ...]
    public_key: bytes


@dataclass(frozen=True)
class UpdateCommit:
    """An ``UpdateCommitted`` event: one contributor's update in one round."""

    contributor: str
    index: int
    digest: bytes
    samples: int
    block_number: int


@dataclass(frozen=True)
class SetupCommit:
    """A ``SetupCommitted`` event: a key-set (U1) member's setup blob digest in one round."""

    member: str
    index: int
    digest: bytes
    block_number: int


@dataclass(frozen=True)
class RevealCommit:
    """A ``RevealCommitted`` event: a contributor's reveal blob digest in one round (U3)."""

    member: str
    digest: bytes
    #: Reveals of the round so far, this one included.
    reveals: int
    block_number: int


@dataclass(frozen=True)
class SecureMember:
    """A member's secure-aggregation state in one round (``FLCoordinator.SecureMemberView``).

    Read for the member's latest round only; earlier rounds come from events.
    """

    #: In the key set U1 (committed a setup).
    in_key_set: bool
    #: In the contributor set U2 (committed an update).
    contributed: bool
    #: Its update was excluded: treated as dropped (key shares revealed, not self-mask shares).
    excluded: bool
    #: In the reveal set U3 (committed a reveal).
    revealed: bool
    setup_digest: bytes | None
    reveal_digest: bytes | None


@dataclass(frozen=True)
class AggregateCommit:
    """An ``AggregateCommitted`` event."""

    partition: int
    aggregator: str
    digest: bytes
    is_fallback: bool
    block_number: int


class Coordinator:
    """A deployed FLCoordinator reached through a :class:`ChainClient`.

    Writes take the signing account first and return the transaction receipt; reads return typed
    values; ``find_*`` methods read events and return lists.
    """

    def __init__(self, client: ChainClient, contract: Contract, artifact: Artifact, *, deploy_block: int = 0) -> None:
        self.client = client
        self.contract = contract
        self.artifact = artifact
        self.decoder = RevertDecoder(artifact.abi)
        self.deploy_block = deploy_block
        self._frozen_commits: dict[tuple[int, int], list[UpdateCommit]] = {}
        #: The contract's views, encoded and decoded without web3's per-call ABI search.
        self.views = ViewFunctions(artifact.abi)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def deploy(cls, client: ChainClient, account: LocalAccount, artifact: Artifact | None = None) -> Coordinator:
        """Deploy a new FLCoordinator with ``account`` as operator, and check its code landed."""
        artifact = artifact or load_artifact()
        receipt = client.deploy(account, artifact.abi, artifact.bytecode)
        coordinator = cls.at(client, receipt["contractAddress"], artifact)
        return cls(client, coordinator.contract, artifact, deploy_block=int(receipt["blockNumber"]))

    @classmethod
    def at(
        cls, client: ChainClient, address: str, artifact: Artifact | None = None, *, deploy_block: int = 0
    ) -> Coordinator:
        """The FLCoordinator at ``address``; raises if the address holds other code or none."""
        artifact = artifact or load_artifact()
        if not Web3.is_address(address):
            raise ContractNotFoundError(f"{address!r} is not an Ethereum address")
        code = client.code_at(address)
        if not code:
            raise ContractNotFoundError(
                f"no contract at {address} on chain {client.chain_id}; check the address or deploy one first"
            )
        if "0x" + code.hex() != artifact.deployed_bytecode.lower():
            raise ContractNotFoundError(
                f"the contract at {address} is not this version of FLCoordinator; redeploy or use its deployment file"
            )
        return cls(client, client.contract(address, artifact.abi), artifact, deploy_block=deploy_block)

    @property
    def address(self) -> str:
        """The contract address (checksummed)."""
        return str(self.contract.address)

    def _transact(self, account: LocalAccount, name: str, *args: Any) -> dict[str, Any]:
        return self.client.transact(account, getattr(self.contract.functions, name)(*args), decoder=self.decoder)

    def _call(self, name: str, *args: Any) -> Any:
        view = self.views.get(name)
        if view is None:
            return self.client.call(getattr(self.contract.functions, name)(*args), decoder=self.decoder)
        return view.decode(self.client.call_data(self.address, view.encode(args), decoder=self.decoder))

    # -- operator -------------------------------------------------------------------------------

    def transfer_operator(self, operator: LocalAccount, new_operator: str) -> dict[str, Any]:
        """Offer the operator role to ``new_operator`` (it takes it with :meth:`accept_operator`)."""
        return self._transact(operator, "transferOperator", Web3.to_checksum_address(new_operator))

    def accept_operator(self, new_operator: LocalAccount) -> dict[str, Any]:
        """Take the operator role offered to ``new_operator``."""
        return self._transact(new_operator, "acceptOperator")

    def admit(self, operator: LocalAccount, accounts: Sequence[str]) -> dict[str, Any]:
        """Admit ``accounts`` to the consortium."""
        return self._transact(operator, "admit", [Web3.to_checksum_address(a) for a in accounts])

    def revoke(self, operator: LocalAccount, account: str) -> dict[str, Any]:
        """Revoke ``account``."""
        return self._transact(operator, "revoke", Web3.to_checksum_address(account))

    def create_task(self, operator: LocalAccount, config: TaskConfig) -> int:
        """Create a task (``createSecureTask`` when ``config.secure_aggregation`` is set); returns its id."""
        if config.secure_aggregation is None:
            receipt = self._transact(operator, "createTask", config.as_tuple())
        else:
            receipt = self._transact(
                operator, "createSecureTask", config.as_tuple(), config.secure_aggregation.as_tuple()
            )
        (event,) = self.contract.events.TaskCreated().process_receipt(receipt)
        return int(event["args"]["taskId"])

    def start_task(self, operator: LocalAccount, task_id: int) -> dict[str, Any]:
        """Start the first round of ``task_id``."""
        return self._transact(operator, "startTask", task_id)

    def cancel_task(self, operator: LocalAccount, task_id: int) -> dict[str, Any]:
        """Cancel ``task_id``."""
        return self._transact(operator, "cancelTask", task_id)

    # -- participants ---------------------------------------------------------------------------

    def join(
        self, account: LocalAccount, task_id: int, multiaddrs: Sequence[str], public_key: bytes = b""
    ) -> dict[str, Any]:
        """Join ``task_id`` with this node's IPFS multiaddrs."""
        return self._transact(account, "join", task_id, list(multiaddrs), public_key)

    def update_peer(self, account: LocalAccount, task_id: int, multiaddrs: Sequence[str]) -> dict[str, Any]:
        """Replace this node's registered multiaddrs."""
        return self._transact(account, "updatePeer", task_id, list(multiaddrs))

    def remove_participant(self, sender: LocalAccount, task_id: int, account: str) -> dict[str, Any]:
        """Remove ``account`` from ``task_id`` (the operator, or anyone once it is revoked)."""
        return self._transact(sender, "removeParticipant", task_id, Web3.to_checksum_address(account))

    # -- rounds ---------------------------------------------------------------------------------

    def commit_update(
        self, account: LocalAccount, task_id: int, round_: int, digest: bytes, samples: int
    ) -> dict[str, Any]:
        """Commit an update manifest digest and its sample count."""
        return self._transact(account, "commitUpdate", task_id, round_, digest, samples)

    def commit_aggregate(
        self, account: LocalAccount, task_id: int, round_: int, partition: int, digest: bytes
    ) -> dict[str, Any]:
        """Commit one aggregate digest."""
        return self._transact(account, "commitAggregate", task_id, round_, partition, digest)

    def commit_aggregates(
        self, account: LocalAccount, task_id: int, round_: int, partitions: Sequence[int], digests: Sequence[bytes]
    ) -> dict[str, Any]:
        """Commit several aggregate digests in one transaction."""
        return self._transact(account, "commitAggregates", task_id, round_, list(partitions), list(digests))

    def report_unavailable(self, account: LocalAccount, task_id: int, round_: int, contributor: str) -> dict[str, Any]:
        """Report that ``contributor``'s update of ``round_`` could not be fetched (fallback phase only)."""
        return self._transact(account, "reportUnavailable", task_id, round_, Web3.to_checksum_address(contributor))

    def report_setup(self, account: LocalAccount, task_id: int, round_: int, member: str) -> dict[str, Any]:
        """Secure aggregation: report that ``member``'s setup of ``round_`` is unusable to this account
        (not served, not valid, or its share box for this account does not open); key check window only."""
        return self._transact(account, "reportSetup", task_id, round_, Web3.to_checksum_address(member))

    def commit_setup(self, account: LocalAccount, task_id: int, round_: int, digest: bytes) -> dict[str, Any]:
        """Secure aggregation: commit the digest of this member's setup blob (shares phase)."""
        return self._transact(account, "commitSetup", task_id, round_, digest)

    def commit_reveal(self, account: LocalAccount, task_id: int, round_: int, digest: bytes) -> dict[str, Any]:
        """Secure aggregation: commit the digest of this contributor's reveal blob (reveal window)."""
        return self._transact(account, "commitReveal", task_id, round_, digest)

    def draw_assignment(self, account: LocalAccount, task_id: int, round_: int) -> dict[str, Any]:
        """Store the assignment key of a frozen round (a no-op once stored)."""
        return self._transact(account, "drawAssignment", task_id, round_)

    def dispute_round(self, account: LocalAccount, task_id: int, round_: int) -> dict[str, Any]:
        """Dispute the latest finalized round, whose global model ``account`` cannot fetch or validate."""
        return self._transact(account, "disputeRound", task_id, round_)

    def advance(self, account: LocalAccount, task_id: int) -> dict[str, Any]:
        """Move the current round past an expired deadline."""
        return self._transact(account, "advance", task_id)

    # -- reads ----------------------------------------------------------------------------------

    def operator(self) -> str:
        """The operator account."""
        return str(self._call("operator"))

    def pending_operator(self) -> str | None:
        """The account offered the operator role, if any."""
        pending = str(self._call("pendingOperator"))
        return None if int(pending, 16) == 0 else pending

    def task_count(self) -> int:
        """Number of tasks created."""
        return int(self._call("taskCount"))

    def is_admitted(self, account: str) -> bool:
        """Whether ``account`` is admitted."""
        return bool(self._call("isAdmitted", Web3.to_checksum_address(account)))

    def has_joined(self, task_id: int, account: str) -> bool:
        """Whether ``account`` joined ``task_id``."""
        return bool(self._call("hasJoined", task_id, Web3.to_checksum_address(account)))

    def get_task(self, task_id: int) -> tuple[TaskConfig, TaskState]:
        """A task's configuration and state."""
        config, state, secure = self._call("getTask", task_id)
        finalized = int(state[3])
        return (
            TaskConfig(
                manifest_digest=bytes(config[0]),
                partitions=int(config[1]),
                replication=int(config[2]),
                quorum=int(config[3]),
                min_contributors=int(config[4]),
                update_duration=int(config[5]),
                aggregation_duration=int(config[6]),
                rounds=int(config[7]),
                max_participants=int(config[8]),
                max_samples=int(config[9]),
                open_admission=bool(config[10]),
                secure_aggregation=(
                    SecureAggregationConfig(int(secure[0]), int(secure[1]), int(secure[2])) if int(secure[0]) else None
                ),
            ),
            TaskState(
                status=TaskStatus(state[0]),
                participant_count=int(state[1]),
                current_round=int(state[2]),
                finalized_rounds=finalized,
                latest_finalized_round=int(state[4]) if finalized else None,
                creator=str(state[5]),
            ),
        )

    def get_participants(self, task_id: int) -> list[ParticipantInfo]:
        """Every participant of ``task_id`` (join order, but a removal moves the last one into its place)."""
        participants: list[ParticipantInfo] = []
        while True:
            page = self._call("getParticipants", task_id, len(participants), PARTICIPANT_PAGE)
            participants += [
                ParticipantInfo(str(p[0]), int(p[1]), int(p[2]), int(p[3]), tuple(p[4]), bytes(p[5])) for p in page
            ]
            if len(page) < PARTICIPANT_PAGE:
                return participants

    def get_round(self, task_id: int, round_: int) -> RoundInfo:
        """One round's state."""
        v = self._call("getRound", task_id, round_)
        return RoundInfo(
            round=int(v[0]),
            status=RoundStatus(v[1]),
            failure=FailureReason(v[2]),
            start_time=int(v[3]),
            update_deadline=int(v[4]),
            aggregation_deadline=int(v[5]),
            fallback_deadline=int(v[6]),
            contributors=int(v[7]),
            finalized_partitions=int(v[8]),
            excluded_count=int(v[9]),
            disputes=int(v[10]),
            total_samples=int(v[11]),
            seed=bytes(v[12]),
            assignment_key=None if bytes(v[13]) == ZERO_DIGEST else bytes(v[13]),
            shares_deadline=int(v[14]),
            reveal_start=int(v[15]),
            unmask_deadline=int(v[16]),
            setups=int(v[17]),
            reveals=int(v[18]),
        )

    def get_secure_member(self, task_id: int, round_: int, account: str) -> SecureMember:
        """``account``'s secure-aggregation state in ``round_`` (its latest round only; else use events)."""
        v = self._call("getSecureMember", task_id, round_, Web3.to_checksum_address(account))
        return SecureMember(
            in_key_set=bool(v[0]),
            contributed=bool(v[1]),
            excluded=bool(v[2]),
            revealed=bool(v[3]),
            setup_digest=None if bytes(v[4]) == ZERO_DIGEST else bytes(v[4]),
            reveal_digest=None if bytes(v[5]) == ZERO_DIGEST else bytes(v[5]),
        )

    def get_final_digests(self, task_id: int, round_: int) -> list[bytes | None]:
        """Final digest per partition of ``round_`` (``None`` where not final)."""
        return [None if bytes(d) == ZERO_DIGEST else bytes(d) for d in self._call("getFinalDigests", task_id, round_)]

    def get_excluded(self, task_id: int, round_: int) -> list[str]:
        """Contributors of ``round_`` whose updates were excluded as unavailable, in order of exclusion."""
        return [Web3.to_checksum_address(a) for a in self._call("getExcluded", task_id, round_)]

    def get_votes(self, task_id: int, round_: int, partition: int, digest: bytes) -> tuple[int, int]:
        """Aggregators that committed ``digest`` for ``partition``: ``(assigned, all)``.

        The contract reuses a partition's vote state round after round; once a later round committed
        an aggregate for ``partition``, ``getVotes`` refuses (``FLCoordinatorVotesReused``) and the
        counts come from the round's ``AggregateCommitted`` events (one per accepted commit).
        """
        try:
            assigned, total = self._call("getVotes", task_id, round_, partition, digest)
        except ContractRevertError as exc:
            if exc.name != "FLCoordinatorVotesReused":
                raise
            events = self.find_events("AggregateCommitted", taskId=task_id, round=round_, partition=partition)
            matching = [e for e in events if bytes(e["args"]["digest"]) == bytes(digest)]
            return sum(not e["args"]["isFallback"] for e in matching), len(matching)
        return int(assigned), int(total)

    def is_assigned(self, task_id: int, round_: int, partition: int, account: str) -> bool:
        """Whether ``account`` is an assigned aggregator of ``partition``."""
        return bool(self._call("isAssigned", task_id, round_, partition, Web3.to_checksum_address(account)))

    def get_assigned_partitions(self, task_id: int, round_: int, account: str) -> list[int]:
        """Partitions ``account`` must aggregate in ``round_``."""
        return [int(p) for p in self._call("getAssignedPartitions", task_id, round_, Web3.to_checksum_address(account))]

    # -- events ---------------------------------------------------------------------------------

    def find_events(
        self, name: str, *, from_block: int | None = None, to_block: int | None = None, **filters: Any
    ) -> list[Any]:
        """Every ``name`` event matching ``filters`` (indexed arguments), oldest first.

        The range is ``from_block`` (default: the deployment block) to ``to_block`` (default: the latest).
        """
        event = getattr(self.contract.events, name)()
        start = self.deploy_block if from_block is None else from_block
        end = "latest" if to_block is None else to_block
        return self.client.read(
            lambda: list(event.get_logs(from_block=start, to_block=end, argument_filters=filters or None)),
            keep=("events", self.address, name, start, end, tuple(sorted(filters.items()))),
        )

    def task_anchor(self, task_id: int) -> str:
        """Hex hash of the block whose transaction created ``task_id`` (unique to this chain's history)."""
        events = self.find_events("TaskCreated", taskId=task_id)
        if not events:
            raise ConfigError(f"task {task_id} does not exist on this coordinator")
        return "0x" + bytes(events[0]["blockHash"]).hex()

    def find_update_commits(self, task_id: int, round_: int) -> list[UpdateCommit]:
        """The contributors of ``round_`` with their digests, in commit-index order."""
        events = self.find_events("UpdateCommitted", taskId=task_id, round=round_)
        commits = [
            UpdateCommit(
                contributor=str(e["args"]["contributor"]),
                index=int(e["args"]["index"]),
                digest=bytes(e["args"]["digest"]),
                samples=int(e["args"]["samples"]),
                block_number=int(e["blockNumber"]),
            )
            for e in events
        ]
        return sorted(commits, key=lambda c: c.index)

    def find_frozen_update_commits(self, task_id: int, round_: int) -> list[UpdateCommit]:
        """:meth:`find_update_commits`, read once per coordinator object once the round is frozen.

        After the contributor set freezes (aggregation began) no update can be committed to the
        round, so the list is final; nodes simulated in one process share one coordinator object
        and read it once between them. A round that is not frozen yet is read afresh every time.
        """
        key = (task_id, round_)
        cached = self._frozen_commits.get(key)
        if cached is None:
            if not self.get_round(task_id, round_).frozen:
                return self.find_update_commits(task_id, round_)
            cached = self._frozen_commits[key] = self.find_update_commits(task_id, round_)
        return list(cached)

    def find_setup_commits(self, task_id: int, round_: int) -> list[SetupCommit]:
        """Secure aggregation: the key set U1 of ``round_`` with the setup digests, in commit order."""
        return [
            SetupCommit(
                member=str(e["args"]["member"]),
                index=int(e["args"]["index"]),
                digest=bytes(e["args"]["digest"]),
                block_number=int(e["blockNumber"]),
            )
            for e in self.find_events("SetupCommitted", taskId=task_id, round=round_)
        ]

    def find_setup_exclusions(self, task_id: int, round_: int) -> list[str]:
        """Secure aggregation: the key-set members of ``round_`` a key-set majority excluded in the key
        check window (``SetupExcluded``), in order of exclusion."""
        return [
            Web3.to_checksum_address(e["args"]["member"])
            for e in self.find_events("SetupExcluded", taskId=task_id, round=round_)
        ]

    def find_reported_contributors(self, task_id: int, round_: int) -> list[str]:
        """The contributors of ``round_`` someone reported unavailable (``UnavailabilityReported``), once each."""
        seen: dict[str, None] = {}
        for e in self.find_events("UnavailabilityReported", taskId=task_id, round=round_):
            seen.setdefault(Web3.to_checksum_address(e["args"]["contributor"]), None)
        return list(seen)

    def find_reveal_commits(self, task_id: int, round_: int) -> list[RevealCommit]:
        """Secure aggregation: the reveal set U3 of ``round_`` with the reveal digests, in commit order."""
        return [
            RevealCommit(
                member=str(e["args"]["member"]),
                digest=bytes(e["args"]["digest"]),
                reveals=int(e["args"]["reveals"]),
                block_number=int(e["blockNumber"]),
            )
            for e in self.find_events("RevealCommitted", taskId=task_id, round=round_)
        ]

    def find_aggregate_commits(self, task_id: int, round_: int) -> list[AggregateCommit]:
        """Every aggregate commit of ``round_``, in chain order."""
        return [
            AggregateCommit(
                partition=int(e["args"]["partition"]),
                aggregator=str(e["args"]["aggregator"]),
                digest=bytes(e["args"]["digest"]),
                is_fallback=bool(e["args"]["isFallback"]),
                block_number=int(e["blockNumber"]),
            )
            for e in self.find_events("AggregateCommitted", taskId=task_id, round=round_)
        ]

    def find_dissenting_aggregators(self, task_id: int, round_: int) -> list[AggregateCommit]:
        """Aggregate commits whose digest differs from their partition's final digest."""
        final = self.get_final_digests(task_id, round_)
        return [c for c in self.find_aggregate_commits(task_id, round_) if final[c.partition] not in (None, c.digest)]
