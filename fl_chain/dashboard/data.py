"""What the dashboard shows, read from the chain (views and events) and from storage, nothing else.

:class:`DashboardData` answers the API's questions with plain JSON-ready dicts. It opens the
coordinator on first use and again after the chain failed, so the server starts, and says why, when
the chain is down or the address holds no FLCoordinator. Everything that cannot change any more is
kept: transaction receipts (gas), update manifests (the sites' evaluations), downloaded models (a
few), and audits, which run one at a time on a worker thread because they fetch every update of a
round.
"""

from __future__ import annotations

import io
import statistics
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from web3 import Web3

from fl_chain.chain.coordinator import Coordinator, RoundInfo, RoundStatus, TaskStatus
from fl_chain.errors import BlobInvalidError, BlobNotFoundError, ChainError, ConfigError, FLChainError, NotFoundError
from fl_chain.exchange.audit import Verdict, task_verdicts
from fl_chain.exchange.gather import gather_partitions
from fl_chain.exchange.peering import connect_to_participants
from fl_chain.exchange.transfer import fetch_manifest
from fl_chain.protocol.cid import cid_from_digest
from fl_chain.protocol.manifest import Manifest
from fl_chain.protocol.task import TaskSpec
from fl_chain.protocol.unixfs import unixfs_digest
from fl_chain.protocol.vector import vector_manifest
from fl_chain.storage.base import Storage

#: What the task table calls each on-chain task status.
TASK_STATES = {
    TaskStatus.NONE: "none",
    TaskStatus.OPEN: "created",
    TaskStatus.RUNNING: "running",
    TaskStatus.COMPLETED: "finished",
    TaskStatus.CANCELLED: "cancelled",
}
#: Events whose ``round`` argument ties them to one round of a task.
ROUND_EVENTS = (
    "RoundStarted",
    "UpdateCommitted",
    "UpdatePhaseClosed",
    "AssignmentDrawn",
    "AggregateCommitted",
    "PartitionFinalized",
    "AggregateDisputed",
    "UnavailabilityReported",
    "ContributionExcluded",
    "RoundDisputeFiled",
    "RoundFinalized",
    "RoundFailed",
    "SetupCommitted",
    "SharesPhaseClosed",
    "UnmaskPhaseStarted",
    "RevealCommitted",
    "UnmaskPhaseClosed",
)
#: Downloaded global models kept in memory (the most recent).
MODELS_KEPT = 4
#: Seconds before an audit that could not fetch what it needs, or a manifest fetch that timed out, is tried again.
AUDIT_RETRY_SECONDS = 30.0
#: Seconds between two attempts to connect the storage to a task's participants.
RECONNECT_SECONDS = 10.0


@dataclass
class AuditState:
    """A round's audit: ``pending``, ``equal``, ``not equal``, or ``unavailable`` (with why)."""

    status: str
    detail: str = ""
    digests: tuple[bytes, ...] = ()
    #: When the audit ended (``time.monotonic``); an unavailable one is tried again after AUDIT_RETRY_SECONDS.
    at: float = 0.0


@dataclass
class _TaskEvents:
    """A task's round events, by name and round, read in one query per event name."""

    by_round: dict[str, dict[int, list[Any]]] = field(default_factory=dict)
    joined: list[Any] = field(default_factory=list)
    removed: list[Any] = field(default_factory=list)

    def of(self, name: str, round_: int) -> list[Any]:
        return self.by_round.get(name, {}).get(round_, [])

    def all(self, name: str) -> list[Any]:
        return [e for events in self.by_round.get(name, {}).values() for e in events]


class DashboardData:
    """The chain and storage as the dashboard's pages and API see them.

    Parameters
    ----------
    open_coordinator:
        Opens the coordinator (called again after a chain failure); raises an FLChainError saying
        why it cannot (unreachable chain, no FLCoordinator at the address, another chain).
    open_storage:
        Opens the storage models and manifests are fetched from (a kubo peer of this dashboard, or a
        simulation's memory network); called once, on the first fetch.
    fetch_timeout:
        Seconds each storage fetch may take.
    audit_specs:
        Task id -> the task's spec and initial model, checked against the chain by the caller: rounds
        of those tasks are audited with the task's own contribution rule (strategy, bounds, DP, secure
        aggregation) exactly as ``flchain audit`` does; other tasks as plain FedAvg of the valid updates.
    """

    def __init__(
        self,
        open_coordinator: Callable[[], Coordinator],
        open_storage: Callable[[], Storage],
        *,
        fetch_timeout: float = 20.0,
        rpc_url: str | None = None,
        audit_specs: Mapping[int, tuple[TaskSpec, np.ndarray]] | None = None,
    ) -> None:
        self._audit_specs = dict(audit_specs or {})
        self._open_coordinator = open_coordinator
        self._open_storage = open_storage
        self.fetch_timeout = fetch_timeout
        self.rpc_url = rpc_url
        self._coordinator: Coordinator | None = None
        self._storage: Storage | None = None
        self._lock = threading.Lock()
        self._connected: dict[int, float] = {}
        self._gas: dict[bytes, int] = {}
        self._manifests: dict[bytes, Manifest | None] = {}
        self._unserved: dict[bytes, float] = {}  # manifest digest -> when a fetch of it last timed out
        self._models: OrderedDict[tuple[int, int, tuple[bytes, ...]], bytes] = OrderedDict()
        self._audits: dict[tuple[int, int], AuditState] = {}
        self._dimensions: dict[int, int] = {}  # task -> parameters, once a manifest or model told
        self._settled: dict[tuple[int, int], tuple[RoundInfo, list[bytes | None], list[str]]] = {}
        self._models_lock = threading.Lock()
        self._auditor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-audit")

    # -- connections ----------------------------------------------------------------------------

    def coordinator(self) -> Coordinator:
        """The coordinator, opened now if it is not yet (FLChainError saying why it cannot be)."""
        with self._lock:
            if self._coordinator is None:
                try:
                    self._coordinator = self._open_coordinator()
                except ChainError:
                    raise
                except FLChainError as exc:  # e.g. a deployment of another chain: the chain is not usable
                    raise ChainError(str(exc)) from None
            return self._coordinator

    def chain_failed(self) -> None:
        """Forget the coordinator: the next request opens it again (the chain may be back)."""
        with self._lock:
            self._coordinator = None

    def storage(self) -> Storage:
        with self._lock:
            if self._storage is None:
                self._storage = self._open_storage()
            return self._storage

    def close(self) -> None:
        """Stop the audit worker and close the storage this dashboard opened."""
        self._auditor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._storage is not None:
                self._storage.close()
                self._storage = None

    def _peered_storage(self, task_id: int) -> Storage:
        """The storage, connected to the task's participants (again every RECONNECT_SECONDS)."""
        storage = self.storage()
        now = time.monotonic()
        if now - self._connected.get(task_id, -RECONNECT_SECONDS) >= RECONNECT_SECONDS:
            coordinator = self.coordinator()
            accounts = [p.account for p in coordinator.get_participants(task_id)]
            connect_to_participants(storage, coordinator, task_id, accounts)
            self._connected[task_id] = now
        return storage

    # -- chain ----------------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """The chain and contract the dashboard reads."""
        c = self.coordinator()
        return {
            "rpc": self.rpc_url,
            "chain_id": c.client.chain_id,
            "contract": c.address,
            "deploy_block": c.deploy_block,
            "block": c.client.block_number(),
            "block_time": c.client.block_timestamp(),
            "operator": c.operator(),
            "tasks": c.task_count(),
        }

    def check_task(self, task_id: int) -> Coordinator:
        """The coordinator, after checking that ``task_id`` exists (NotFoundError if not)."""
        c = self.coordinator()
        count = c.task_count()
        if not 1 <= task_id <= count:
            raise NotFoundError(f"task {task_id} does not exist on {c.address} ({count} task(s))")
        return c

    def tasks(self) -> list[dict[str, Any]]:
        """Every task, newest first: state, rounds done of total, participants."""
        c = self.coordinator()
        return [self._task_row(c, task_id) for task_id in range(c.task_count(), 0, -1)]

    def _task_row(self, c: Coordinator, task_id: int) -> dict[str, Any]:
        config, state = c.get_task(task_id)
        return {
            "id": task_id,
            "state": TASK_STATES[state.status],
            "rounds_done": state.finalized_rounds,
            "rounds_total": config.rounds,
            "current_round": state.current_round,
            "latest_finalized_round": state.latest_finalized_round,
            "participants": state.participant_count,
            "partitions": config.partitions,
            "replication": config.replication,
            "quorum": config.quorum,
            "min_contributors": config.min_contributors,
            "max_participants": config.max_participants,
            "update_duration": config.update_duration,
            "aggregation_duration": config.aggregation_duration,
            "open_admission": config.open_admission,
            "secure_aggregation": config.secure_aggregation is not None,
            "creator": state.creator,
            "manifest_digest": "0x" + config.manifest_digest.hex(),
        }

    def _events(self, c: Coordinator, task_id: int) -> _TaskEvents:
        events = _TaskEvents()
        for name in ROUND_EVENTS:
            grouped: dict[int, list[Any]] = defaultdict(list)
            for event in c.find_events(name, taskId=task_id):
                grouped[int(event["args"]["round"])].append(event)
            events.by_round[name] = grouped
        events.joined = c.find_events("ParticipantJoined", taskId=task_id)
        events.removed = c.find_events("ParticipantRemoved", taskId=task_id)
        return events

    def task(self, task_id: int) -> dict[str, Any]:
        """A task with its round timeline (phase, deadlines, contributors, exclusions, outcome, gas, audit)."""
        c = self.check_task(task_id)
        row = self._task_row(c, task_id)
        events = self._events(c, task_id)
        gas = self._round_gas(c, events)
        rounds = []
        for round_ in range(row["current_round"] + 1):
            info, final, excluded = self._round_views(c, task_id, round_, row["latest_finalized_round"])
            if info.status == RoundStatus.NONE:
                continue
            commits = sorted(events.of("UpdateCommitted", round_), key=lambda e: int(e["args"]["index"]))
            aggregates = events.of("AggregateCommitted", round_)
            dissent = [
                e for e in aggregates if final[int(e["args"]["partition"])] not in (None, bytes(e["args"]["digest"]))
            ]
            finalized = info.status == RoundStatus.FINALIZED
            digests = tuple(d for d in final if d is not None) if finalized else ()
            rounds.append(
                {
                    "round": round_,
                    "phase": info.status.name.lower(),
                    "failure": info.failure.name.lower() if info.failure.value else None,
                    "start_time": info.start_time,
                    "update_deadline": info.update_deadline,
                    "aggregation_deadline": info.aggregation_deadline,
                    "fallback_deadline": info.fallback_deadline,
                    "contributors": [str(e["args"]["contributor"]) for e in commits],
                    "samples": info.total_samples,
                    "excluded": excluded,
                    "reports": len(events.of("UnavailabilityReported", round_)),
                    "disputes": info.disputes,
                    "aggregate_commits": len(aggregates),
                    "dissent": [
                        {"aggregator": str(e["args"]["aggregator"]), "partition": int(e["args"]["partition"])}
                        for e in dissent
                    ],
                    "partitions_final": info.finalized_partitions,
                    "gas": gas.get(round_, 0),
                    "model_cid": _model_cid(digests, self._dimensions.get(task_id), task_id, round_),
                    "audit": self.audit_status(task_id, round_, digests),
                }
            )
        now = c.client.block_timestamp()
        return {**row, "chain_time": now, "rounds": rounds}

    def _round_views(
        self, c: Coordinator, task_id: int, round_: int, latest_finalized: int | None
    ) -> tuple[RoundInfo, list[bytes | None], list[str]]:
        """A round's state, final digests and exclusions; kept once nothing can change them any more
        (a failed round, or a finalized one before the latest finalized round: only that one can be disputed)."""
        key = (task_id, round_)
        if key in self._settled:
            return self._settled[key]
        views = (c.get_round(task_id, round_), c.get_final_digests(task_id, round_), c.get_excluded(task_id, round_))
        status = views[0].status
        if status == RoundStatus.FAILED or (
            status == RoundStatus.FINALIZED and latest_finalized is not None and round_ < latest_finalized
        ):
            self._settled[key] = views
        return views

    def _round_gas(self, c: Coordinator, events: _TaskEvents) -> dict[int, int]:
        """Gas of the transactions that emitted each round's events (a transaction counts for its first round)."""
        first_round: dict[bytes, int] = {}
        for grouped in events.by_round.values():
            for round_, found in grouped.items():
                for e in found:
                    tx = bytes(e["transactionHash"])
                    first_round[tx] = min(round_, first_round.get(tx, round_))
        gas: dict[int, int] = defaultdict(int)
        for tx, round_ in first_round.items():
            if tx not in self._gas:
                receipt = c.client.read(lambda tx=tx: c.client.w3.eth.get_transaction_receipt(tx))  # type: ignore[misc]
                self._gas[tx] = int(receipt["gasUsed"])
            gas[round_] += self._gas[tx]
        return dict(gas)

    # -- participants ---------------------------------------------------------------------------

    def participants(self, task_id: int) -> list[dict[str, Any]]:
        """Each participant's record: updates and aggregates committed, dissent, reports, exclusions."""
        c = self.check_task(task_id)
        events = self._events(c, task_id)
        current = {p.account.lower(): p for p in c.get_participants(task_id)}
        accounts = list(
            dict.fromkeys([str(e["args"]["account"]) for e in events.joined] + [p.account for p in current.values()])
        )
        finals: dict[tuple[int, int], bytes] = {
            (r, int(e["args"]["partition"])): bytes(e["args"]["digest"])
            for r, found in events.by_round.get("PartitionFinalized", {}).items()
            for e in found
        }

        def by(name: str, arg: str, account: str) -> list[Any]:
            return [e for e in events.all(name) if str(e["args"][arg]).lower() == account.lower()]

        records = []
        for account in accounts:
            p = current.get(account.lower())
            updates = by("UpdateCommitted", "contributor", account)
            aggregates = by("AggregateCommitted", "aggregator", account)
            dissent = [
                e
                for e in aggregates
                if (key := (int(e["args"]["round"]), int(e["args"]["partition"]))) in finals
                and finals[key] != bytes(e["args"]["digest"])
            ]
            records.append(
                {
                    "account": _checksum(account),
                    "active": p is not None,
                    "multiaddrs": list(p.multiaddrs) if p is not None else [],
                    "samples": p.samples if p is not None else None,
                    "updates": len(updates),
                    "update_rounds": sorted(int(e["args"]["round"]) for e in updates),
                    "aggregates": len(aggregates),
                    "fallback_aggregates": sum(bool(e["args"]["isFallback"]) for e in aggregates),
                    "dissent": len(dissent),
                    "dissent_rounds": sorted({int(e["args"]["round"]) for e in dissent}),
                    "reports_filed": len(by("UnavailabilityReported", "reporter", account)),
                    "reported": len(by("UnavailabilityReported", "contributor", account)),
                    "excluded": len(by("ContributionExcluded", "contributor", account)),
                    "excluded_rounds": sorted(
                        int(e["args"]["round"]) for e in by("ContributionExcluded", "contributor", account)
                    ),
                    "disputes_filed": len(by("RoundDisputeFiled", "account", account)),
                }
            )
        return records

    def participant(self, task_id: int, account: str) -> dict[str, Any]:
        """One participant's record (NotFoundError if ``account`` never joined the task)."""
        for record in self.participants(task_id):
            if record["account"].lower() == account.lower():
                return record
        raise NotFoundError(f"{account} is not a participant of task {task_id}")

    # -- evaluations (from the update manifests) ------------------------------------------------

    def metrics(self, task_id: int) -> list[dict[str, Any]]:
        """Per evaluated global model: the sites' sample-weighted mean accuracy and loss, and their spread.

        A round's global model is evaluated by the nodes that train from it; their update manifests
        of a later round carry it. Manifests that are not served, or whose evaluation no honest node
        would publish, are left out.
        """
        c = self.check_task(task_id)
        config, state = c.get_task(task_id)
        if config.secure_aggregation is not None:
            return []  # masked updates carry no evaluation
        storage = self._peered_storage(task_id)
        found: dict[int, list[tuple[str, Any]]] = defaultdict(list)
        for round_ in range(1, state.current_round + 1):
            for commit in c.find_update_commits(task_id, round_):
                manifest = self._manifest(
                    storage, commit.digest, task_id, round_, config.partitions, commit.contributor
                )
                if manifest is not None:
                    self._dimensions.setdefault(task_id, manifest.dimension)
                e = manifest.evaluation if manifest is not None else None
                if e is not None and e.plausible(round_):
                    found[e.round].append((commit.contributor, e))
        rows = []
        for model_round in sorted(found):
            evaluations = [e for _, e in found[model_round]]
            weights = np.array([e.samples for e in evaluations], dtype=np.float64)
            accuracy = np.array([e.accuracy_value for e in evaluations])
            loss = np.array([e.loss_value for e in evaluations])
            rows.append(
                {
                    "round": model_round,
                    "sites": len(evaluations),
                    "samples": int(weights.sum()),
                    "accuracy": float(np.average(accuracy, weights=weights)),
                    "accuracy_min": float(accuracy.min()),
                    "accuracy_max": float(accuracy.max()),
                    "accuracy_std": float(statistics.pstdev(accuracy.tolist())),
                    "loss": float(np.average(loss, weights=weights)),
                    "loss_min": float(loss.min()),
                    "loss_max": float(loss.max()),
                    "by_site": {site: e.accuracy_value for site, e in found[model_round]},
                }
            )
        return rows

    def _manifest(
        self, storage: Storage, digest: bytes, task_id: int, round_: int, partitions: int, contributor: str
    ) -> Manifest | None:
        """An update manifest, fetched once (None if it is invalid; not kept if it was not served)."""
        if digest not in self._manifests:
            if time.monotonic() - self._unserved.get(digest, -AUDIT_RETRY_SECONDS) < AUDIT_RETRY_SECONDS:
                return None  # not served a moment ago: the chart does not wait for it on every poll
            try:
                self._manifests[digest] = fetch_manifest(
                    storage,
                    digest,
                    kind="update",
                    task_id=task_id,
                    round_=round_,
                    partitions=partitions,
                    contributor=contributor,
                    timeout=min(self.fetch_timeout, 5.0),
                )
            except BlobNotFoundError:
                self._unserved[digest] = time.monotonic()
                return None
            except BlobInvalidError:
                self._manifests[digest] = None
        return self._manifests[digest]

    # -- models and audits ----------------------------------------------------------------------

    def _final(self, c: Coordinator, task_id: int, round_: int) -> tuple[bytes, ...]:
        _, state = c.get_task(task_id)
        if not 0 <= round_ <= state.current_round:
            raise NotFoundError(
                f"round {round_} of task {task_id} does not exist (current round {state.current_round})"
            )
        if c.get_round(task_id, round_).status != RoundStatus.FINALIZED:
            raise NotFoundError(f"round {round_} of task {task_id} is not finalized: it has no global model")
        return tuple(d for d in c.get_final_digests(task_id, round_) if d is not None)

    def model_npy(self, task_id: int, round_: int) -> bytes:
        """The global model of a finalized round as .npy bytes, as ``flchain model get`` writes them."""
        c = self.check_task(task_id)
        digests = self._final(c, task_id, round_)
        key = (task_id, round_, digests)
        if key not in self._models:
            storage = self._peered_storage(task_id)
            vector = gather_partitions(
                storage, list(digests), task_id=task_id, round_=round_, timeout=self.fetch_timeout
            )
            self._dimensions[task_id] = vector.size
            buffer = io.BytesIO()
            np.save(buffer, vector)
            self._models[key] = buffer.getvalue()
            while len(self._models) > MODELS_KEPT:
                self._models.popitem(last=False)
        self._models.move_to_end(key)
        return self._models[key]

    def audit_status(self, task_id: int, round_: int, digests: tuple[bytes, ...]) -> dict[str, str]:
        """The round's audit as far as it went (``not yet`` until it is finalized; started on first ask)."""
        if not digests:
            return {"status": "not yet", "detail": "the round is not finalized"}
        key = (task_id, round_)
        with self._lock:
            state = self._audits.get(key)
            retry = (
                state is not None
                and state.status == "unavailable"
                and time.monotonic() - state.at > AUDIT_RETRY_SECONDS
            )
            if state is None or state.digests != digests or retry:
                state = self._audits[key] = AuditState("pending", "recomputing from the committed updates", digests)
                self._auditor.submit(self._audit, task_id, round_, digests)
        return {"status": state.status, "detail": state.detail}

    def audit(self, task_id: int, round_: int) -> dict[str, str]:
        """The audit status of one round (NotFoundError for a round that does not exist or is not finalized)."""
        c = self.check_task(task_id)
        return {"round": str(round_), **self.audit_status(task_id, round_, self._final(c, task_id, round_))}

    def _audit(self, task_id: int, round_: int, digests: tuple[bytes, ...]) -> None:
        """Audit a finalized round with the code ``flchain audit`` runs (``task_verdicts``): with the task's own
        rule when its file was given, else as plain FedAvg of the valid updates."""
        try:
            c = self.coordinator()
            spec, initial = self._audit_specs.get(task_id, (None, None))
            if spec is None and c.get_task(task_id)[0].secure_aggregation is not None:
                state = AuditState(
                    "not checked", "secure aggregation: start the dashboard with --task-file to audit it", digests
                )
            else:
                storage = self._peered_storage(task_id)
                verdict = next(
                    task_verdicts(storage, c, task_id, [round_], spec=spec, initial=initial, timeout=self.fetch_timeout)
                )
                status = {Verdict.EQUAL: "equal", Verdict.NOT_EQUAL: "not equal"}.get(verdict.verdict, "unavailable")
                rule = "the task's rule" if spec is not None else "plain FedAvg of the valid updates"
                detail = verdict.reason or f"recomputed with {rule} from the committed updates: same bytes"
                if spec is None and verdict.verdict is Verdict.NOT_EQUAL:
                    detail += (
                        f" (recomputed with {rule}; a task with another strategy, a norm bound or DP: start the "
                        "dashboard with --task-file)"
                    )
                state = AuditState(status, detail, digests)
        except (BlobNotFoundError, BlobInvalidError) as exc:
            state = AuditState("unavailable", str(exc).splitlines()[0][:300], digests)
        except ConfigError as exc:
            state = AuditState("not checked", str(exc).splitlines()[0][:300], digests)
        except FLChainError as exc:
            state = AuditState("unavailable", str(exc).splitlines()[0][:300], digests)
        except Exception as exc:  # noqa: BLE001 - an audit failure is shown, it never kills the worker
            state = AuditState("unavailable", f"audit failed: {type(exc).__name__}", digests)
        state.at = time.monotonic()
        with self._lock:
            self._audits[(task_id, round_)] = state


def _checksum(account: str) -> str:
    return str(Web3.to_checksum_address(account))


def _model_cid(digests: tuple[bytes, ...], dimension: int | None, task_id: int, round_: int) -> str | None:
    """CID of the model manifest of a round's global model, computed from its final digests (None: size unknown)."""
    if not digests or dimension is None:
        return None
    manifest = vector_manifest(
        [cid_from_digest(d) for d in digests], dimension=dimension, task_id=task_id, round_=round_
    )
    return cid_from_digest(unixfs_digest(manifest.to_bytes()))


__all__ = ["TASK_STATES", "AuditState", "DashboardData"]
