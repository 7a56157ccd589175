"""Fault injection on a local network: stop nodes at chosen phases (SIGKILL, SIGTERM or SIGINT),
restart some, check.

One run (:func:`run_faults`) starts a :class:`~fl_chain.federation.localnet.LocalNetwork` (a chain process,
the contract, N ``flchain node`` processes with kubo peers) on a small fast task and, from a seeded
RNG, plans up to ``floor((N - 1) / 2)`` stops. Each names a node, a round, a phase and a signal:
SIGKILL is a crash (restarted about half of the time), SIGTERM and SIGINT are an operator stopping
the node (it must exit 143 or 130 by itself, its peer and logs closed) and starting it again. The
phases:

``training``
    the round is in its update phase and the node has not finished training for it yet (it is
    fetching the global model or training);
``uploading``
    the node finished training for the round (its phase file shows a later phase of the round) but
    its ``UpdateCommitted`` is not on chain yet (it is putting its partitions into IPFS or waiting
    for its commit to be mined);
``committed``
    its ``UpdateCommitted`` is on chain and it has not committed an aggregate (its blobs may not have
    been fetched by anyone yet);
``aggregating``
    the round is in its aggregation phase and the node has no ``AggregateCommitted`` yet;
``waiting``
    the node committed its aggregates, or the round already ended: it is idle until the next round.

Phases are read from the chain (round status, ``UpdateCommitted`` / ``AggregateCommitted`` events)
and from the phase the node writes to its state directory (``phase.json``, see
:class:`fl_chain.node.state.PhaseFile`), polled every
:data:`POLL` seconds. A crash fires at the first poll where its phase holds in its round or a later
one (a crash whose round was retried or skipped fires in the next round in that phase). A node is
killed with SIGKILL (:meth:`LocalNetwork.kill_node`) or sent SIGTERM / SIGINT and waited for and, if
the plan says so, restarted on its state directory after a random delay while the task is still
running. A node that does not exit on SIGTERM / SIGINT within ``NODE_STOP_TIMEOUT`` is killed and
recorded as a failed stop.

A run records rounds finalized and failed (retried), whether the task *hung* (did not complete
within a bound computed from the durations; the run then stops everything and reports, it never
blocks), *wrong global models* (every finalized round's global model, fetched from IPFS by the
harness's own kubo peer, is compared byte for byte with the weighted FedAvg of the updates committed
on chain, also fetched from IPFS), rounds that could not be verified (a blob no live peer served),
the exit code of every node process, and nodes still running long after the task ended.

Every process a run starts is stopped by pid in a ``finally`` (:meth:`LocalNetwork.close`).
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fl_chain.chain.coordinator import Coordinator, RoundStatus, TaskStatus
from fl_chain.exchange.audit import audit_round
from fl_chain.federation.localnet import LINGER_STOPPED, NODE_STOP_TIMEOUT, LocalNetwork
from fl_chain.node.hooks import Phase
from fl_chain.node.runtime import NodeOptions
from fl_chain.node.state import PhaseFile, PhaseRecord
from tests.helpers.task_files import task_toml

#: The phases a crash can hit, in the order a round goes through them.
PHASES: tuple[str, ...] = ("training", "uploading", "committed", "aggregating", "waiting")
#: How a node is stopped: a crash, or an operator's SIGTERM / Ctrl-C (then always restarted).
STOP_SIGNALS: tuple[str, ...] = ("SIGKILL", "SIGTERM", "SIGINT")
#: Phases a node goes through before its update is trained (see ``Phase``).
BEFORE_TRAINED = frozenset({Phase.FETCH_GLOBAL, Phase.TRAIN})
#: Seconds between two looks at the chain and the nodes' phase files.
POLL = 0.15
#: Seconds a node gets to exit by itself after the task ended (its linger plus fetching the final model).
EXIT_GRACE = 45.0
#: A node that cannot fetch the final model of an ended task gives up after this long (then exits 1);
#: a node restarted just before the task ended first boots (up to ~90 s on a loaded machine).
FINAL_MODEL_GRACE = NodeOptions.final_model_timeout + 90
#: Exit codes of a node that ended normally after the task: by itself at the end of its linger, or
#: stopped during it by ``LocalNetwork.end_nodes`` once every node had the final model.
ENDED = (0, LINGER_STOPPED)
#: Times the chain-restart run restarts one crashed node.
MAX_SUPERVISOR_RESTARTS = 3
#: Seconds the harness's verifier waits for one blob.
VERIFY_TIMEOUT = 10.0

#: The task's model: logistic regression, the cheapest to train.
TASK_MODEL = {"name": "logreg", "seed": 11}
#: One epoch of SGD with batch 32 and lr 0.1.
TASK_TRAINING = {"epochs": 1, "batch_size": 32, "lr": 0.1}


@dataclass(frozen=True)
class FaultConfig:
    """The federation a fault run plays, and its timing."""

    nodes: int = 4
    rounds: int = 3
    replication: int = 2
    quorum: int = 2
    min_contributors: int = 2
    #: Deadlines long enough for a loaded machine: a healthy phase ends when everyone committed, so
    #: they cost time only in a round a fault stalls (12 s and 6 s were missed under load).
    update_duration: int = 30
    aggregation_duration: int = 15
    chain: str = "anvil"
    fetch_timeout: float = 3.0
    poll_interval: float = 0.2
    #: Seconds between blocks of the chain process (sub-second: a transaction waits less for its block).
    block_time: float = 0.2
    #: Seconds nodes keep serving blobs after the task ended: the harness audits the last round meanwhile
    #: (12 s were too short on a loaded machine for an excluded update only the other nodes still held).
    linger: float = 30.0

    @property
    def max_faults(self) -> int:
        """At most floor((N - 1) / 2) nodes are killed."""
        return (self.nodes - 1) // 2

    def task_toml(self) -> str:
        """The task file (P = N)."""
        return task_toml(
            protocol={
                "rounds": self.rounds,
                "partitions": self.nodes,
                "replication": self.replication,
                "quorum": self.quorum,
                "min_contributors": self.min_contributors,
                "update_duration": self.update_duration,
                "aggregation_duration": self.aggregation_duration,
            },
            model=TASK_MODEL,
            training=TASK_TRAINING,
        )

    def hang_bound(self, faults: int) -> float:
        """Seconds after the task started within which it must complete.

        Every round may run to its fallback deadline (update + 2 x aggregation), each crash may cost
        two failed rounds (the round it hit and one more while its blobs were missing), plus two
        spare rounds and a minute of slack for slow machines.
        """
        worst_round = self.update_duration + 2 * self.aggregation_duration + 5
        return (self.rounds + 2 * faults + 2) * worst_round + 60.0


@dataclass(frozen=True)
class Fault:
    """One planned crash."""

    node: int
    round: int
    phase: str
    #: Seconds after the kill to restart the node; None: it stays down.
    restart_after: float | None
    #: How it is stopped (one of STOP_SIGNALS).
    signal: str = "SIGKILL"


@dataclass
class Kill:
    """What happened to one planned crash."""

    node: int
    phase: str
    planned_round: int
    round: int | None = None
    at: float | None = None  # seconds since the task started
    restarted_at: float | None = None
    restart_skipped: str | None = None
    signal: str = "SIGKILL"
    #: Exit status after a SIGTERM / SIGINT (128 + signal when it stopped cleanly), and its seconds.
    exit_status: int | None = None
    stop_seconds: float | None = None
    #: The node ignored SIGTERM / SIGINT and had to be killed.
    forced: bool = False


@dataclass
class RunResult:
    """The outcome of one fault run."""

    seed: int
    nodes: int
    faults: list[Fault]
    kills: list[Kill] = field(default_factory=list)
    status: str = "not started"
    completed: bool = False
    hung: bool = False
    rounds_finalized: int = 0
    rounds_failed: int = 0
    failures: list[str] = field(default_factory=list)  # failure reason per failed round
    wrong_models: int = 0
    unverified_rounds: int = 0
    verified_rounds: int = 0
    excluded_updates: int = 0  # updates the chain excluded as unavailable, over the finalized rounds
    checks: dict[int, str] = field(default_factory=dict)  # finalized round -> ok | wrong | unverified: why
    exit_codes: list[int | None] = field(default_factory=list)
    stuck_nodes: list[int] = field(default_factory=list)
    unexpected_exits: list[int] = field(default_factory=list)
    #: Nodes the final shutdown had to SIGKILL because they ignored SIGTERM.
    forced_stops: list[int] = field(default_factory=list)
    #: Restarted nodes that came back after the task ended and the other peers had stopped serving
    #: its final model: they exit 1 with that warning, as designed (not an unexpected exit).
    came_back_late: list[int] = field(default_factory=list)
    task_seconds: float | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def restarts(self) -> int:
        return sum(1 for k in self.kills if k.restarted_at is not None)

    @property
    def ok(self) -> bool:
        """Completed, no hang, no wrong model, every round checked, every node exited cleanly."""
        return (
            self.completed
            and not self.hung
            and self.wrong_models == 0
            and self.unverified_rounds == 0
            and not self.stuck_nodes
            and not self.unexpected_exits
            and not self.failed_stops
            and not self.forced_stops
            and self.error is None
        )

    @property
    def failed_stops(self) -> list[int]:
        """Nodes that did not exit cleanly (status 128 + signal) on a SIGTERM or SIGINT."""
        return [k.node for k in self.kills if k.signal != "SIGKILL" and k.at is not None and not _clean_stop(k)]

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["restarts"] = self.restarts
        data["failed_stops"] = self.failed_stops
        data["ok"] = self.ok
        return data


def _clean_stop(kill: Kill) -> bool:
    return not kill.forced and kill.exit_status == 128 + int(signal.Signals[kill.signal])


def plan_faults(seed: int, config: FaultConfig, signals: tuple[str, ...] = STOP_SIGNALS) -> list[Fault]:
    """The stops of run ``seed``: 1..floor((N-1)/2) distinct nodes, each at a random round and
    phase, by one of ``signals``; about half of the SIGKILLed nodes and every node stopped by
    SIGTERM or SIGINT are restarted after 0.5..8 s. (The signal is drawn from a second stream, so
    a seed's nodes, rounds and phases are those it had before signals were added.)"""
    rng = random.Random(seed)
    how = random.Random(f"{seed}:signal")
    count = rng.randint(1, max(1, config.max_faults)) if config.max_faults else 0
    victims = rng.sample(range(config.nodes), count)
    faults = []
    for node in victims:
        phase = rng.choice(PHASES)
        round_ = rng.randrange(config.rounds)
        restart_after = round(rng.uniform(0.5, 8.0), 2) if rng.random() < 0.5 else None
        stop_signal = how.choice(signals)
        if stop_signal != "SIGKILL" and restart_after is None:
            restart_after = round(how.uniform(0.5, 8.0), 2)
        faults.append(Fault(node, round_, phase, restart_after, stop_signal))
    return faults


def _missed_final_model(net: LocalNetwork, index: int) -> bool:
    """Whether node ``index`` stopped because no peer served the final model of the ended task."""
    stdout = net.nodes[index].state_dir / "stdout.log"
    return stdout.exists() and "no peer served its final model" in stdout.read_text(errors="replace")


def _signal_stop(net: LocalNetwork, fault: Fault, kill: Kill) -> None:
    """Send the fault's SIGTERM or SIGINT to its node and wait for the exit (SIGKILL after
    ``NODE_STOP_TIMEOUT``, recorded as ``forced``)."""
    node = net.nodes[fault.node]
    assert node.process is not None
    started = time.monotonic()
    node.process.send_signal(signal.Signals[fault.signal])
    try:
        kill.exit_status = node.process.wait(NODE_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        kill.forced = True
        node.process.kill()
        kill.exit_status = node.process.wait(NODE_STOP_TIMEOUT)
    kill.stop_seconds = round(time.monotonic() - started, 2)


def trained_in_round(record: PhaseRecord | None, task_id: int, round_: int) -> bool:
    """Whether a node whose phase file holds ``record`` finished training in ``round_`` of ``task_id``
    (it is in a later phase of that round, or in a later round)."""
    if record is None or record.task != task_id or record.round < round_:
        return False
    return record.round > round_ or record.phase not in BEFORE_TRAINED


class _Observer:
    """Cached views of the chain and of the nodes' phase files for one poll."""

    def __init__(self, net: LocalNetwork) -> None:
        self.net = net
        self.coordinator: Coordinator = net.coordinator
        self.task_id = net.task_id
        _, self.task = self.coordinator.get_task(self.task_id)
        self.round = self.task.current_round
        self.info = self.coordinator.get_round(self.task_id, self.round)
        self._updates: set[str] | None = None
        self._aggregators: set[str] | None = None

    def committed_update(self, address: str) -> bool:
        if self._updates is None:
            self._updates = {c.contributor for c in self.coordinator.find_update_commits(self.task_id, self.round)}
        return address in self._updates

    def committed_aggregate(self, address: str) -> bool:
        if self._aggregators is None:
            self._aggregators = {
                c.aggregator for c in self.coordinator.find_aggregate_commits(self.task_id, self.round)
            }
        return address in self._aggregators

    def trained(self, node: int) -> bool:
        return trained_in_round(PhaseFile.read(self.net.nodes[node].state_dir), self.task_id, self.round)

    def in_phase(self, node: int, phase: str) -> bool:
        """Whether ``node`` is in ``phase`` of the current round."""
        address = self.net.nodes[node].account.address
        status = self.info.status
        if phase == "training":
            return status == RoundStatus.UPDATE and not self.committed_update(address) and not self.trained(node)
        if phase == "uploading":
            return status == RoundStatus.UPDATE and not self.committed_update(address) and self.trained(node)
        if phase == "committed":
            return self.committed_update(address) and not self.committed_aggregate(address)
        if phase == "aggregating":
            return status == RoundStatus.AGGREGATION and not self.committed_aggregate(address)
        if phase == "waiting":
            return status in (RoundStatus.FINALIZED, RoundStatus.FAILED) or self.committed_aggregate(address)
        raise ValueError(f"unknown phase {phase!r}")


class RoundChecker:
    """Checks every finalized round as soon as it finalizes, while the peers holding its blobs run.

    A check fetches, with the harness's own kubo peer, the round's final partitions and every
    update committed on chain, and compares the global model byte for byte with the reference
    weighted FedAvg of those updates. ``outcome`` maps each finalized round to ``"ok"``, ``"wrong"``
    or ``"unverified: <why>"`` (a blob no live peer served; retried once by :meth:`finish`).
    """

    def __init__(self, storage, coordinator: Coordinator, task_id: int) -> None:  # type: ignore[no-untyped-def]
        self.storage = storage
        self.coordinator = coordinator
        self.task_id = task_id
        self.outcome: dict[int, str] = {}
        self.excluded: dict[int, int] = {}  # finalized round -> updates excluded on chain as unavailable
        self._next = 0

    def check(self, round_: int) -> str:
        """Check one finalized round now."""
        from fl_chain.exchange.peering import connect_to_participants

        participants = [p.account for p in self.coordinator.get_participants(self.task_id)]
        connect_to_participants(self.storage, self.coordinator, self.task_id, participants)
        try:
            audit = audit_round(self.storage, self.coordinator, self.task_id, round_, timeout=VERIFY_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - unavailable blob: recorded, not a wrong model
            return f"unverified: {exc.__class__.__name__}: {exc}"
        self.excluded[round_] = len(audit.excluded)
        if not audit.ok and audit.unchecked:
            return f"unverified: the excluded update of {audit.unchecked[0]} is no longer served"
        return "ok" if audit.ok else "wrong"

    def poll(self, current_round: int, *, ended: bool = False) -> None:
        """Check the rounds before ``current_round`` (and it too if the task ``ended``) not seen yet."""
        last = current_round if ended else current_round - 1
        while self._next <= last:
            if self.coordinator.get_round(self.task_id, self._next).status == RoundStatus.FINALIZED:
                self.outcome[self._next] = self.check(self._next)
            self._next += 1

    def finish(self, current_round: int) -> None:
        """Check what is left after the task ended and retry unverified rounds once."""
        self.poll(current_round, ended=True)
        for round_, outcome in sorted(self.outcome.items()):
            if outcome.startswith("unverified"):
                self.outcome[round_] = self.check(round_)

    @property
    def wrong(self) -> int:
        return sum(o == "wrong" for o in self.outcome.values())

    @property
    def unverified(self) -> int:
        return sum(o.startswith("unverified") for o in self.outcome.values())

    @property
    def verified(self) -> int:
        return sum(o == "ok" for o in self.outcome.values())

    def notes(self) -> list[str]:
        return [f"round {r}: {o}" for r, o in sorted(self.outcome.items()) if o != "ok"]


def run_faults(
    seed: int,
    root: str | Path,
    config: FaultConfig | None = None,
    *,
    faults: list[Fault] | None = None,
    report: Callable[[str], None] = lambda message: None,
) -> RunResult:
    """One seeded fault run under ``root``; never raises for what happens in the federation."""
    config = config or FaultConfig()
    faults = plan_faults(seed, config) if faults is None else faults
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    task_file = root / "task.toml"
    task_file.write_text(config.task_toml())
    result = RunResult(seed=seed, nodes=config.nodes, faults=faults)
    result.kills = [Kill(f.node, f.phase, f.round, signal=f.signal) for f in faults]
    started = time.monotonic()
    net: LocalNetwork | None = None
    verifier = None
    try:
        net = LocalNetwork(
            root / "net",
            nodes=config.nodes,
            task_file=task_file,
            chain=config.chain,
            poll_interval=config.poll_interval,
            fetch_timeout=config.fetch_timeout,
            linger=config.linger,
            block_time=config.block_time,
            report=report,
        )
        from fl_chain.storage.kubo import KuboStorage

        verifier = KuboStorage(root / "verifier-ipfs", log_dir=root / "verifier-logs")
        checker = RoundChecker(verifier, net.coordinator, net.task_id)
        net.start()
        task_started = time.monotonic()
        deadline = task_started + config.hang_bound(len(faults))
        pending = list(range(len(faults)))
        restarts: dict[int, float] = {}  # kill index -> monotonic time to restart
        killed_by_us: set[int] = set()
        status = TaskStatus.RUNNING
        while True:
            now = time.monotonic()
            if now > deadline:
                result.hung = True
                report(f"seed {seed}: task did not complete within {config.hang_bound(len(faults)):.0f} s")
                break
            observer = _Observer(net)
            status = observer.task.status
            if status in (TaskStatus.COMPLETED, TaskStatus.CANCELLED):
                break
            for i in list(pending):
                fault, kill = faults[i], result.kills[i]
                if observer.round < fault.round or not net.nodes[fault.node].running:
                    continue
                if observer.in_phase(fault.node, fault.phase):
                    kill.round, kill.at = observer.round, round(time.monotonic() - task_started, 2)
                    if fault.signal == "SIGKILL":
                        net.kill_node(fault.node)
                    else:
                        _signal_stop(net, fault, kill)
                    killed_by_us.add(fault.node)
                    pending.remove(i)
                    report(
                        f"seed {seed}: {fault.signal} to node {fault.node} in round {observer.round} ({fault.phase})"
                        + (f": exit {kill.exit_status} after {kill.stop_seconds} s" if kill.exit_status else "")
                    )
                    if fault.restart_after is not None:
                        restarts[i] = time.monotonic() + fault.restart_after
            for i, when in list(restarts.items()):
                if time.monotonic() >= when:
                    del restarts[i]
                    net.start_node(faults[i].node)
                    result.kills[i].restarted_at = round(time.monotonic() - task_started, 2)
                    report(f"seed {seed}: restarted node {faults[i].node}")
            crashed = [
                n.index
                for n in net.nodes
                if n.process is not None and n.process.poll() not in (None, 0) and n.index not in killed_by_us
            ]
            if crashed:
                result.unexpected_exits = sorted(set(result.unexpected_exits) | set(crashed))
            checker.poll(observer.round)
            time.sleep(POLL)
        for i in restarts:
            result.kills[i].restart_skipped = "task over before the restart was due"
        for i in pending:
            result.kills[i].restart_skipped = "never fired: task over before the phase came"
        result.task_seconds = round(time.monotonic() - task_started, 2)
        result.status = TaskStatus(status).name.lower()
        result.completed = status == TaskStatus.COMPLETED
        _, task = net.coordinator.get_task(net.task_id)
        finalized = []
        for r in range(task.current_round + 1):
            info = net.coordinator.get_round(net.task_id, r)
            if info.status == RoundStatus.FINALIZED:
                finalized.append(r)
            elif info.status == RoundStatus.FAILED:
                result.failures.append(info.failure.name.lower())
        result.rounds_finalized = len(finalized)
        result.rounds_failed = len(result.failures)
        checker.finish(task.current_round)
        result.wrong_models, result.unverified_rounds = checker.wrong, checker.unverified
        result.verified_rounds = checker.verified
        result.excluded_updates = sum(checker.excluded.values())
        result.checks = dict(checker.outcome)
        for note in checker.notes():
            report(f"seed {seed}: {note}")
        if not result.hung:  # every finalized round is checked: stop the nodes once all have the final model
            codes = net.end_nodes(timeout=max(EXIT_GRACE, config.linger + 30, FINAL_MODEL_GRACE))
        else:
            codes = [n.process.poll() if n.process else None for n in net.nodes]
        result.exit_codes = codes
        result.stuck_nodes = [i for i, code in enumerate(codes) if code is None]
        result.came_back_late = [
            i for i, code in enumerate(codes) if code == 1 and i in killed_by_us and _missed_final_model(net, i)
        ]
        # A node we stopped and did not restart (the task ended first) ends as our stop left it:
        # -9 after SIGKILL, 128 + signal after SIGTERM / SIGINT.
        left_down = {k.node: -9 if k.exit_status is None else k.exit_status for k in result.kills if k.at is not None}
        left_down = {
            node: status
            for node, status in left_down.items()
            if all(k.restarted_at is None for k in result.kills if k.node == node)
        }
        result.unexpected_exits = sorted(
            set(result.unexpected_exits)
            | {
                i
                for i, code in enumerate(codes)
                if code not in ENDED and left_down.get(i) != code and i not in result.came_back_late
            }
        )
    except Exception as exc:  # noqa: BLE001 - a harness run reports, it does not raise
        result.error = f"{exc.__class__.__name__}: {exc}"
        report(f"seed {seed}: error: {result.error}\n{traceback.format_exc()}")
    finally:
        if verifier is not None:
            verifier.close()
        if net is not None:
            net.close()
            result.forced_stops = list(net.forced_stops)
        result.seconds = round(time.monotonic() - started, 2)
    return result


@dataclass
class ChainRestartResult:
    """The outcome of a run whose chain process was stopped and restarted mid-task."""

    chain: str
    stopped_in_round: int | None = None
    stopped_in_phase: str | None = None
    down_seconds: float = 0.0
    same_port: bool = False
    block_before: int | None = None
    block_after_restart: int | None = None
    status: str = "not started"
    completed: bool = False
    hung: bool = False
    rounds_finalized: int = 0
    rounds_failed: int = 0
    failures: list[str] = field(default_factory=list)
    wrong_models: int = 0
    unverified_rounds: int = 0
    verified_rounds: int = 0
    exit_codes: list[int | None] = field(default_factory=list)
    #: Last stderr line of each node process that exited with an error (crashed) during the run.
    node_errors: dict[int, str] = field(default_factory=dict)
    #: Nodes the harness restarted (as a supervisor would) after they crashed.
    supervisor_restarts: list[int] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


def _last_error(path: Path) -> str:
    """The last line of a node's stderr (the exception of a traceback)."""
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return lines[-1] if lines else ""


def run_chain_restart(
    root: str | Path,
    config: FaultConfig | None = None,
    *,
    stop_in_round: int = 1,
    stop_in_phase: str = "aggregation",
    down_seconds: float = 5.0,
    restart_crashed: bool = True,
    report: Callable[[str], None] = lambda message: None,
) -> ChainRestartResult:
    """Stop the chain process (SIGTERM) when round ``stop_in_round`` reaches ``stop_in_phase``
    (``update`` or ``aggregation``), keep it down ``down_seconds``, start it again on the same port
    with the same data directory, and let the node processes go on. A node process that exits with
    an error is recorded in ``node_errors`` and, with ``restart_crashed``, started again on its state
    directory (what a supervisor such as systemd would do). Never raises for what happens in the
    federation; every process is stopped by pid at the end."""
    config = config or FaultConfig(chain="ganache")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    task_file = root / "task.toml"
    task_file.write_text(config.task_toml())
    result = ChainRestartResult(chain=config.chain, down_seconds=down_seconds)
    want = RoundStatus.UPDATE if stop_in_phase == "update" else RoundStatus.AGGREGATION
    started = time.monotonic()
    net: LocalNetwork | None = None
    verifier = None
    try:
        net = LocalNetwork(
            root / "net",
            nodes=config.nodes,
            task_file=task_file,
            chain=config.chain,
            poll_interval=config.poll_interval,
            fetch_timeout=config.fetch_timeout,
            linger=config.linger,
            block_time=config.block_time,
            report=report,
        )
        from fl_chain.storage.kubo import KuboStorage

        verifier = KuboStorage(root / "verifier-ipfs", log_dir=root / "verifier-logs")
        checker = RoundChecker(verifier, net.coordinator, net.task_id)
        net.start()
        deadline = time.monotonic() + config.hang_bound(2) + down_seconds
        process = net.chain.process
        port = process.port
        while time.monotonic() < deadline:
            _, task = net.coordinator.get_task(net.task_id)
            if task.status != TaskStatus.RUNNING:
                break
            info = net.coordinator.get_round(net.task_id, task.current_round)
            if task.current_round >= stop_in_round and info.status == want:
                result.stopped_in_round = task.current_round
                result.stopped_in_phase = info.status.name.lower()
                break
            checker.poll(task.current_round)
            time.sleep(POLL)
        result.block_before = int(net.chain.w3.eth.block_number)
        process.stop()
        report(f"chain stopped in round {result.stopped_in_round} ({result.stopped_in_phase})")
        time.sleep(down_seconds)
        process.start()
        result.same_port = process.port == port
        result.block_after_restart = int(net.chain.w3.eth.block_number)
        report(
            f"chain restarted on port {process.port} at block {result.block_after_restart} (was {result.block_before})"
        )
        status = TaskStatus.RUNNING
        while time.monotonic() < deadline:
            _, task = net.coordinator.get_task(net.task_id)
            status = task.status
            if status != TaskStatus.RUNNING:
                break
            for node in net.nodes:
                if node.process is not None and node.process.poll() not in (None, 0):
                    result.node_errors.setdefault(node.index, _last_error(node.state_dir / "stderr.log"))
                    if restart_crashed and result.supervisor_restarts.count(node.index) < MAX_SUPERVISOR_RESTARTS:
                        net.start_node(node.index)
                        result.supervisor_restarts.append(node.index)
                        report(f"node {node.index} crashed ({result.node_errors[node.index]}); restarted it")
            checker.poll(task.current_round)
            time.sleep(0.5)
        else:
            result.hung = True
        result.status = TaskStatus(status).name.lower()
        result.completed = status == TaskStatus.COMPLETED
        _, task = net.coordinator.get_task(net.task_id)
        finalized = []
        for r in range(task.current_round + 1):
            info = net.coordinator.get_round(net.task_id, r)
            if info.status == RoundStatus.FINALIZED:
                finalized.append(r)
            elif info.status == RoundStatus.FAILED:
                result.failures.append(info.failure.name.lower())
        result.rounds_finalized, result.rounds_failed = len(finalized), len(result.failures)
        checker.finish(task.current_round)
        result.wrong_models, result.unverified_rounds = checker.wrong, checker.unverified
        result.verified_rounds = checker.verified
        for note in checker.notes():
            report(note)
        codes = (
            net.end_nodes(timeout=max(EXIT_GRACE, config.linger + 30, FINAL_MODEL_GRACE))
            if not result.hung
            else [n.process.poll() if n.process else None for n in net.nodes]
        )
        result.exit_codes = codes
        for node in net.nodes:
            if node.process is not None and node.process.poll() not in (None, *ENDED):
                result.node_errors.setdefault(node.index, _last_error(node.state_dir / "stderr.log"))
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        result.error = f"{exc.__class__.__name__}: {exc}"
        report(f"error: {result.error}\n{traceback.format_exc()}")
    finally:
        if verifier is not None:
            verifier.close()
        if net is not None:
            net.close()
        result.seconds = round(time.monotonic() - started, 2)
    return result


__all__ = [
    "ENDED",
    "PHASES",
    "STOP_SIGNALS",
    "ChainRestartResult",
    "Fault",
    "FaultConfig",
    "Kill",
    "RoundChecker",
    "RunResult",
    "plan_faults",
    "run_chain_restart",
    "run_faults",
    "trained_in_round",
]
