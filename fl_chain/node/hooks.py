"""Phase hooks of the node runtime: observers that see each phase of a round begin and end.

A :class:`NodeObserver` is handed to :class:`~fl_chain.node.runtime.Node` (``observers=[...]``).
The node calls it at the boundaries of the phases it already has, in the order a round goes::

    fetch_global -> train -> publish_update -> commit_update -> wait
        -> aggregate -> commit_aggregates -> wait -> (round finished)

A phase may repeat or be skipped: a restarted node that already trained goes straight to
``publish_update``, an aggregator retries ``aggregate`` while a contribution is unavailable, a
node that is not a contributor of the round only waits. ``wait`` is open-ended: it lasts until the
next phase starts or the round ends. Besides phases, observers see every transaction the node
sends during rounds (with its receipt, for gas) and each round the node saw end.

Observers run in the node's thread, between its steps' work: they must be quick and must not
raise (an exception propagates into the step). A node without observers pays one truth test per
phase boundary.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from enum import Enum
from typing import Any


class Phase(str, Enum):
    """The phases of a round, as a node goes through them."""

    #: Secure aggregation: making, publishing and committing this round's setup (shares phase).
    SETUP = "setup"
    #: Secure aggregation: the check window's availability checks and the reveal (unmask phase).
    REVEAL = "reveal"
    #: All-gather of the global model the round starts from (skipped when the node has it).
    FETCH_GLOBAL = "fetch_global"
    #: Local training on the global model.
    TRAIN = "train"
    #: Putting the update's partitions and manifest into storage.
    PUBLISH_UPDATE = "publish_update"
    #: The ``commitUpdate`` transaction.
    COMMIT_UPDATE = "commit_update"
    #: Fetching, validating and aggregating the partitions this node has to aggregate, and putting them.
    AGGREGATE = "aggregate"
    #: The ``commitAggregates`` transaction.
    COMMIT_AGGREGATES = "commit_aggregates"
    #: Nothing to do until the chain moves (the next phase opens or the round ends).
    WAIT = "wait"


class NodeObserver:
    """Base class of node observers: every method is a no-op; override the ones you need.

    ``round_`` is always the task's current round when the node did the work (the global model
    fetched in ``fetch_global`` of round r is the one of round r - 1).
    """

    def phase_started(self, task_id: int, round_: int, phase: Phase) -> None:
        """The node began ``phase`` of ``round_``."""

    def phase_finished(self, task_id: int, round_: int, phase: Phase, seconds: float) -> None:
        """The node left ``phase`` of ``round_`` after ``seconds`` (also when the phase raised)."""

    def transaction_sent(
        self, task_id: int, round_: int, name: str, receipt: dict[str, Any] | None, seconds: float
    ) -> None:
        """The node sent coordinator transaction ``name`` (e.g. ``commit_update``, ``advance``) in
        ``round_``; ``receipt`` is None if it reverted or failed. ``seconds`` include signing and
        waiting for the receipt."""

    def round_finished(self, task_id: int, round_: int) -> None:
        """The node saw ``round_`` end: the chain moved to another round, or the task ended."""


class ObserverGroup:
    """The observers of one node, called in order; tracks the open ``wait`` phase and the round.

    Internal to the runtime: a node builds one from its ``observers`` argument.
    """

    def __init__(self, observers: Iterable[NodeObserver] = ()) -> None:
        self.observers = list(observers)
        self._round: int | None = None  # the round the node was last seen in
        self._waiting: tuple[int, float] | None = None  # (round, perf_counter at start) of an open wait

    def __bool__(self) -> bool:
        return bool(self.observers)

    def add(self, observer: NodeObserver) -> None:
        """Add ``observer`` after the others."""
        self.observers.append(observer)

    def phase(self, task_id: int, round_: int, phase: Phase) -> AbstractContextManager[None]:
        """A context that reports ``phase`` started on entry and finished on exit (nothing without observers)."""
        if not self.observers:
            return nullcontext()
        return self._timed(task_id, round_, phase)

    @contextmanager
    def _timed(self, task_id: int, round_: int, phase: Phase) -> Iterator[None]:
        self._stop_waiting(task_id)
        for observer in self.observers:
            observer.phase_started(task_id, round_, phase)
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            for observer in self.observers:
                observer.phase_finished(task_id, round_, phase, seconds)

    def wait(self, task_id: int, round_: int) -> None:
        """The node has nothing to do in ``round_`` until the chain moves: open ``wait`` unless it is open."""
        if not self.observers or self._waiting is not None:
            return
        for observer in self.observers:
            observer.phase_started(task_id, round_, Phase.WAIT)
        self._waiting = (round_, time.perf_counter())

    def _stop_waiting(self, task_id: int) -> None:
        if self._waiting is None:
            return
        round_, started = self._waiting
        self._waiting = None
        seconds = time.perf_counter() - started
        for observer in self.observers:
            observer.phase_finished(task_id, round_, Phase.WAIT, seconds)

    def in_round(self, task_id: int, round_: int | None) -> None:
        """The node reads that the task is in ``round_`` (None: the task ended): a round it was in
        before has finished."""
        if not self.observers or round_ == self._round:
            return
        self._stop_waiting(task_id)
        previous, self._round = self._round, round_
        if previous is not None:
            for observer in self.observers:
                observer.round_finished(task_id, previous)

    def transaction_sent(
        self, task_id: int, round_: int, name: str, receipt: dict[str, Any] | None, seconds: float
    ) -> None:
        """Tell every observer about a transaction."""
        for observer in self.observers:
            observer.transaction_sent(task_id, round_, name, receipt, seconds)


__all__ = ["NodeObserver", "ObserverGroup", "Phase"]
