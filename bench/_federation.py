"""Bench-side instrumentation of an in-process federation, shared by the issue-7 benchmarks.

Nothing in ``fl_chain`` is changed or replaced: the federation is built by
:func:`fl_chain.federation.inprocess.build_federation` and run by
:class:`fl_chain.federation.inprocess.InProcessFederation` exactly as ``flchain simulate`` does. This
module hands the builder timed parts and listens to what the nodes report:

* the storage peer (``storage_factory``): :class:`TimedStorage` times ``put`` and ``get`` and counts
  the bytes each node downloads (blobs it neither stored nor fetched before) and uploads (bytes of
  the blobs it stored that other nodes downloaded, attributed to the node that stored them first);
* the trainer (``trainer_factory``): :class:`TimedTrainer` times ``train`` and ``evaluate``;
* each node's phase hooks (:class:`fl_chain.node.hooks.NodeObserver`): :class:`PhaseTimer` records
  every transaction a node sends (``commit``, its gas, and the round ends its receipt shows) and
  the node's ``aggregate`` phase (minus the fetches, puts, transactions and chain reads inside it:
  validation, the strategy and blob encoding);
* the chain connection: :class:`RequestTimer`, a web3 middleware, times every JSON-RPC request; those
  made outside a transaction are ``chain_read`` (the nodes' reads, and the runner's few).

Every timed call is an :class:`Event` tagged with the node and the round that node was in (the
round of its last phase or transaction). A round's wall time runs from the end of the transaction
that finalized (or failed) the previous round, or the task start, to the end of the one that
finalized it.

In-process federations run their nodes one step at a time in one thread, so within a round the
categories of all nodes add up to (almost) the wall time; ``other`` is the rest (blob decoding and
header checks outside aggregation, state files). ``finalize wait`` of a node is the time from its
own last commit of the round to the round's end: here it is mostly other nodes' work, on a real
network it is the wait for the slowest aggregator.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fl_chain.node.hooks import NodeObserver, Phase

ROOT = Path(__file__).resolve().parents[1]

#: Categories of timed work, in the order of a round.
CATEGORIES = ("fetch", "train", "put", "commit", "aggregate", "evaluate", "chain_read")
_ROUND_END_EVENTS = ("RoundFinalized", "RoundFailed")


def mlp_hidden_for(parameters: int, inputs: int = 64, classes: int = 10) -> int:
    """Hidden units of the one-hidden-layer MLP (digits: 64 inputs, 10 classes) closest to ``parameters``."""
    return max(1, round((parameters - classes) / (inputs + 1 + classes)))


def mlp_parameters(hidden: int, inputs: int = 64, classes: int = 10) -> int:
    return inputs * hidden + hidden + hidden * classes + classes


# ------------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------------


@dataclass
class Event:
    node: int
    round: int
    category: str
    start: float
    end: float
    nbytes: int = 0
    detail: str = ""
    source: int | None = None  # fetch: the node that stored the blob first
    gas: int = 0

    @property
    def seconds(self) -> float:
        return self.end - self.start


def busy_seconds(events: list[Event]) -> float:
    """Wall time covered by ``events``: overlapping calls (gets run concurrently) count once."""
    total = 0.0
    reach = float("-inf")
    for event in sorted(events, key=lambda e: e.start):
        if event.end > reach:
            total += event.end - max(event.start, reach)
            reach = event.end
    return total


@dataclass
class Recorder:
    """Every timed call of every node, plus round ends and per-transaction gas."""

    events: list[Event] = field(default_factory=list)
    current_round: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    round_end: dict[int, float] = field(default_factory=dict)
    round_outcome: dict[int, str] = field(default_factory=dict)
    round_end_cpu: dict[int, float] = field(default_factory=dict)  # process CPU seconds at the round's end
    origin: dict[str, int] = field(default_factory=dict)  # cid -> node that stored it first
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self,
        node: int,
        category: str,
        start: float,
        end: float,
        nbytes: int = 0,
        detail: str = "",
        source: int | None = None,
        gas: int = 0,
    ) -> Event:
        event = Event(node, self.current_round[node], category, start, end, nbytes, detail, source, gas)
        with self.lock:
            self.events.append(event)
        return event

    def forget_requests_since(self, start: float) -> None:
        """Drop the chain requests recorded since ``start`` (they were part of a transaction)."""
        with self.lock:
            i = len(self.events)
            while i > 0 and self.events[i - 1].start >= start:
                i -= 1
            self.events[i:] = [e for e in self.events[i:] if e.category != "chain_read"]


class TimedStorage:
    """Delegates to a storage peer; times ``put``/``get`` and counts new bytes (see the module docstring)."""

    def __init__(self, inner: Any, node: int, recorder: Recorder) -> None:
        self._inner = inner
        self._node = node
        self._rec = recorder
        self._held: set[str] = set()

    def put(self, data: bytes) -> str:
        start = time.perf_counter()
        cid = self._inner.put(data)
        self._rec.record(self._node, "put", start, time.perf_counter(), len(data))
        self._held.add(cid)
        self._rec.origin.setdefault(cid, self._node)
        return cid

    def get(self, cid: str, **kwargs: Any) -> bytes:
        start = time.perf_counter()
        data = self._inner.get(cid, **kwargs)
        end = time.perf_counter()
        new = cid not in self._held
        self._held.add(cid)
        self._rec.record(
            self._node, "fetch", start, end, len(data) if new else 0, source=self._rec.origin.get(cid) if new else None
        )
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedTrainer:
    """Delegates to a trainer; times ``train`` and ``evaluate``."""

    def __init__(self, inner: Any, recorder: Recorder) -> None:
        self._inner = inner
        self._rec = recorder
        self.node = -1  # set once the node index is known

    def initial_vector(self) -> np.ndarray:
        return self._inner.initial_vector()  # type: ignore[no-any-return]

    def train(self, vector: np.ndarray, *, seed: int) -> tuple[np.ndarray, int, dict[str, float]]:
        start = time.perf_counter()
        result = self._inner.train(vector, seed=seed)
        self._rec.record(self.node, "train", start, time.perf_counter())
        return result  # type: ignore[no-any-return]

    def evaluate(self, vector: np.ndarray) -> dict[str, float]:
        start = time.perf_counter()
        result = self._inner.evaluate(vector)
        self._rec.record(self.node, "evaluate", start, time.perf_counter())
        return result  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class PhaseTimer(NodeObserver):
    """The phase hooks of one node: its transactions (time, gas, round ends) and its ``aggregate`` phase."""

    #: Categories of timed work a phase may contain besides its own.
    NESTED = ("fetch", "put", "commit", "chain_read")

    def __init__(self, node: int, recorder: Recorder, coordinator: Any) -> None:
        self._node, self._rec, self._coordinator = node, recorder, coordinator
        self._phase_start: tuple[float, int] | None = None  # perf_counter and event count at the phase's start

    def phase_started(self, task_id: int, round_: int, phase: Phase) -> None:
        self._rec.current_round[self._node] = round_
        if phase is Phase.AGGREGATE:
            self._phase_start = (time.perf_counter(), len(self._rec.events))

    def phase_finished(self, task_id: int, round_: int, phase: Phase, seconds: float) -> None:
        if phase is not Phase.AGGREGATE or self._phase_start is None:
            return
        start, first = self._phase_start
        self._phase_start = None
        end = time.perf_counter()
        with self._rec.lock:
            inner = [e for e in self._rec.events[first:] if e.category in self.NESTED and e.node in (self._node, -1)]
        own = max(0.0, (end - start) - busy_seconds(inner))
        self._rec.record(self._node, "aggregate", start, start + own)

    def transaction_sent(
        self, task_id: int, round_: int, name: str, receipt: dict[str, Any] | None, seconds: float
    ) -> None:
        end = time.perf_counter()
        start = end - seconds
        self._rec.current_round[self._node] = round_
        self._rec.forget_requests_since(start)  # the transaction's own requests are not chain reads
        if receipt is None:
            self._rec.record(self._node, "commit", start, end, detail=name + " (reverted)")
            return
        self._rec.record(self._node, "commit", start, end, detail=name, gas=int(receipt["gasUsed"]))
        from web3.logs import DISCARD

        for event in _ROUND_END_EVENTS:
            for log in getattr(self._coordinator.contract.events, event)().process_receipt(receipt, errors=DISCARD):
                ended = int(log["args"]["round"])
                self._rec.round_end.setdefault(ended, end)
                self._rec.round_end_cpu.setdefault(ended, time.process_time())
                self._rec.round_outcome.setdefault(ended, "finalized" if event == "RoundFinalized" else "failed")


def request_timer(recorder: Recorder) -> type:
    """A web3 middleware class that records every JSON-RPC request as ``chain_read`` (node -1)."""
    from web3.middleware.base import Web3Middleware

    class RequestTimer(Web3Middleware):
        def wrap_make_request(self, make_request: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
            def timed(method: Any, params: Any) -> Any:
                start = time.perf_counter()
                try:
                    return make_request(method, params)
                finally:
                    recorder.record(-1, "chain_read", start, time.perf_counter(), detail=str(method))

            return timed

    return RequestTimer


# ------------------------------------------------------------------------------------------------
# Synthetic trainer (labelled as such wherever it is used)
# ------------------------------------------------------------------------------------------------


class SyntheticTrainer:
    """A deterministic numpy stand-in for training a model of ``parameters`` float32 values.

    ``train`` runs ``steps`` passes of ``w -= lr * (w - target_i)`` (one multiply-add pass over the
    vector per step, like an SGD step's parameter update, without any forward/backward pass). It is
    used when the point is the data path, not the learning; results say ``trainer: synthetic``.
    """

    def __init__(self, parameters: int, node: int, *, steps: int = 4, seed: int = 0) -> None:
        self.parameters = parameters
        self.steps = steps
        self._initial = np.random.default_rng(seed).standard_normal(parameters, dtype=np.float32) * np.float32(0.01)
        self._target = np.float32(0.001 * (node + 1))

    def initial_vector(self) -> np.ndarray:
        return self._initial.copy()

    def train(self, vector: np.ndarray, *, seed: int) -> tuple[np.ndarray, int, dict[str, float]]:
        w = np.array(vector, dtype=np.float32, copy=True)
        lr = np.float32(0.1 + (seed % 7) * 0.01)
        for _ in range(self.steps):
            w -= lr * (w - self._target)
        return w, 100, {}

    def evaluate(self, vector: np.ndarray) -> dict[str, float]:
        return {}


# ------------------------------------------------------------------------------------------------
# Building and running one instrumented federation
# ------------------------------------------------------------------------------------------------


def make_spec(
    *,
    parameters: int,
    nodes: int,
    rounds: int,
    partitions: int,
    replication: int,
    quorum: int | None = None,
    epochs: int = 1,
    batch_size: int = 16,
    seed: int = 0,
) -> Any:
    """A digits task with an MLP sized to about ``parameters`` (long phases: rounds end by completion)."""
    from fl_chain.protocol.task import TaskSpec

    q = quorum if quorum is not None else replication // 2 + 1
    return TaskSpec.from_dict(
        {
            "protocol": {
                "rounds": rounds,
                "partitions": partitions,
                "replication": replication,
                "quorum": q,
                "min_contributors": max(q, 1),
                "update_duration": 3600,
                "aggregation_duration": 3600,
            },
            "model": {"name": "mlp", "hidden": mlp_hidden_for(parameters), "seed": seed},
            "dataset": {"name": "digits", "split": "iid", "seed": seed},
            "training": {"epochs": epochs, "batch_size": batch_size, "lr": 0.1},
            "strategy": {"name": "fedavg"},
        },
        origin="bench",
    )


@dataclass
class FederationJob:
    nodes: int
    parameters: int
    rounds: int = 2
    partitions: int | None = None  # default: P = N
    replication: int = 2
    quorum: int | None = None
    chain: str = "embedded"  # embedded | anvil | ganache
    storage: str = "memory"  # memory | kubo
    trainer: str = "mlp"  # mlp (real torch MLP on digits) | synthetic
    seed: int = 0


def _status_kib(field_name: str, pid: str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_federation(job: FederationJob, workdir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Build, instrument and run one federation; returns per-round figures (see :func:`summarize`)."""
    from fl_chain.federation.inprocess import InProcessFederation, build_federation
    from fl_chain.training.trainer import TorchTrainer

    partitions = job.partitions if job.partitions is not None else job.nodes
    replication = min(job.replication, job.nodes)
    spec = make_spec(
        parameters=job.parameters,
        nodes=job.nodes,
        rounds=job.rounds,
        partitions=partitions,
        replication=replication,
        quorum=job.quorum,
        seed=job.seed,
    )
    recorder = Recorder()
    trainers: list[TimedTrainer] = []

    def trainer_factory(spec: Any, train: Any, test: Any) -> TimedTrainer:
        index = len(trainers)
        if job.trainer == "synthetic":
            inner: Any = SyntheticTrainer(job.parameters, index, seed=job.seed)
        else:
            inner = TorchTrainer(spec, train, test)
        wrapped = TimedTrainer(inner, recorder)
        wrapped.node = index
        trainers.append(wrapped)
        return wrapped

    with ExitStack() as cleanup:
        tmp = workdir or cleanup.enter_context(tempfile.TemporaryDirectory(prefix="flchain-bench-"))
        root = Path(tmp)
        chain = None
        if job.chain != "embedded":
            from fl_chain.chain.backends import open_chain

            chain = open_chain(job.chain, accounts=job.nodes + 1, log_dir=root / "chain-logs")
            cleanup.callback(chain.close)
        from fl_chain.storage.memory import MemoryNetwork, MemoryStorage

        network = MemoryNetwork()

        def storage_factory(i: int, state: Any) -> TimedStorage:
            if job.storage == "kubo":
                from fl_chain.storage.kubo import KuboStorage

                inner: Any = KuboStorage(state.ipfs_repo, port=0, log_dir=root / "kubo-logs")
                cleanup.callback(inner.close)
            else:
                inner = MemoryStorage(network)
            return TimedStorage(inner, i, recorder)

        setup_started = time.perf_counter()
        chain, coordinator, task_id, members = build_federation(
            spec,
            nodes=job.nodes,
            state_root=root / "nodes",
            chain=chain,
            storage_factory=storage_factory,
            trainer_factory=trainer_factory,
        )
        setup_seconds = time.perf_counter() - setup_started
        coordinator.client.assume_sole_writer()  # as flchain simulate does: the chain is this run's
        for i, node in enumerate(members):
            node.observers.add(PhaseTimer(i, recorder, coordinator))
        chain.w3.middleware_onion.add(request_timer(recorder), name="bench-request-timer")
        dimension = int(members[0].trainer.initial_vector().size)
        # Setup reads tagged round 0 would pollute round 0: drop them and start the clock here.
        recorder.events.clear()
        started = time.perf_counter()
        cpu_started = time.process_time()
        status = InProcessFederation(chain, coordinator, task_id, members).run()
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    return summarize(
        job,
        recorder,
        started=started,
        cpu_started=cpu_started,
        wall=wall,
        cpu=cpu,
        setup=setup_seconds,
        dimension=dimension,
        partitions=partitions,
        replication=replication,
        quorum=spec.protocol["quorum"],
        status=status.name.lower(),
    )


def summarize(
    job: FederationJob,
    rec: Recorder,
    *,
    started: float,
    cpu_started: float,
    wall: float,
    cpu: float,
    setup: float,
    dimension: int,
    partitions: int,
    replication: int,
    quorum: int,
    status: str,
) -> dict[str, Any]:
    n = job.nodes
    rounds = []
    previous_end = started
    previous_cpu = cpu_started
    for r in sorted(rec.round_end):
        end = rec.round_end[r]
        # Nodes run one step at a time, so a round is a window of wall time: every call that started
        # after the previous round ended and before this one ended.
        events = [e for e in rec.events if previous_end <= e.start < end]
        split = {c: busy_seconds([e for e in events if e.category == c]) for c in CATEGORIES}
        round_wall = end - previous_end
        waits = []
        for i in range(n):
            mine = [e.end for e in events if e.node == i and e.category == "commit" and e.end <= end]
            if mine:
                waits.append(end - max(mine))
        download = [sum(e.nbytes for e in events if e.category == "fetch" and e.node == i) for i in range(n)]
        upload = [sum(e.nbytes for e in events if e.category == "fetch" and e.source == i) for i in range(n)]
        gas = sum(e.gas for e in events)
        rounds.append(
            {
                "round": r,
                "outcome": rec.round_outcome.get(r),
                "wall_seconds": round_wall,
                "cpu_seconds": rec.round_end_cpu[r] - previous_cpu,
                "split_seconds_all_nodes": split,
                "other_seconds": round_wall - sum(split.values()),
                "finalize_wait_seconds_mean": float(np.mean(waits)) if waits else None,
                "finalize_wait_seconds_max": float(max(waits)) if waits else None,
                "commit_transactions": sum(1 for e in events if e.category == "commit"),
                "gas": gas,
                "gas_per_participant": gas / n,
                "download_bytes_per_node": download,
                "upload_bytes_per_node_by_origin": upload,
            }
        )
        previous_end = end
        previous_cpu = rec.round_end_cpu[r]
    model_bytes = 4 * dimension
    bound = 2 * (n - 1) / n * model_bytes
    steady = rounds[1:] or rounds

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in steady])) if steady else float("nan")

    download_means = [float(np.mean(r["download_bytes_per_node"])) for r in steady]
    return {
        "nodes": n,
        "parameters_requested": job.parameters,
        "parameters": dimension,
        "model_bytes": model_bytes,
        "trainer": "torch MLP on digits (real training)" if job.trainer == "mlp" else "synthetic (numpy, no learning)",
        "chain": job.chain,
        "storage": job.storage,
        "partitions": partitions,
        "replication": replication,
        "quorum": quorum,
        "rounds_requested": job.rounds,
        "status": status,
        "setup_seconds": setup,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "rounds": rounds,
        "steady_rounds": [r["round"] for r in steady],
        "mean_round_seconds": mean("wall_seconds"),
        "mean_round_cpu_seconds": mean("cpu_seconds"),
        "mean_split_seconds_all_nodes": {
            c: float(np.mean([r["split_seconds_all_nodes"][c] for r in steady])) for c in CATEGORIES
        }
        if steady
        else {},
        "mean_other_seconds": mean("other_seconds"),
        "mean_finalize_wait_seconds": float(np.mean([r["finalize_wait_seconds_mean"] or 0 for r in steady]))
        if steady
        else None,
        "mean_gas_per_participant": mean("gas_per_participant"),
        "allreduce_bound_bytes": bound,
        "mean_download_bytes_per_node": float(np.mean(download_means)) if download_means else None,
        "max_download_bytes_per_node": max((max(r["download_bytes_per_node"]) for r in steady), default=None),
        "max_upload_bytes_per_node_by_origin": max(
            (max(r["upload_bytes_per_node_by_origin"]) for r in steady), default=None
        ),
        "download_over_bound": (float(np.mean(download_means)) / bound) if download_means and bound else None,
        "peak_rss_mib": _status_kib("VmHWM") / 1024,
    }


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``finally`` blocks stop the chains, peers and node
    processes this benchmark started (the default action would leave them running)."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
