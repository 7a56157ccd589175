"""A simulation's rounds as they end: status, contributors, the global model's accuracy, gas, bytes moved."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fl_chain.chain.coordinator import Coordinator, RoundInfo, RoundStatus
from fl_chain.errors import BlobInvalidError, BlobNotFoundError
from fl_chain.exchange.gather import fetch_global
from fl_chain.federation.display import SimulationDisplay
from fl_chain.federation.inprocess import DevChain
from fl_chain.node.runtime import Node
from fl_chain.protocol.task import TaskSpec


@dataclass
class RoundRecord:
    """One round of a simulation."""

    round: int
    status: str
    contributors: int
    test_accuracy: float | None
    test_loss: float | None
    global_model_cid: str | None
    gas_used: int
    bytes_moved: int
    wall_seconds: float
    #: Differential privacy: epsilon at the task's delta after the finalized rounds so far; None without DP.
    epsilon: float | None = None


class RoundRecorder:
    """Records each round once it ended, from the chain and the nodes; call :meth:`sweep` between sweeps.

    Gas is the sum over the blocks since the previous round ended (setup before round 0 is not
    counted), bytes are what the nodes' storages received, and a finalized round's global model is
    evaluated by the first node on its test data.
    """

    def __init__(
        self,
        chain: DevChain,
        coordinator: Coordinator,
        task_id: int,
        members: Sequence[Node],
        display: SimulationDisplay,
        *,
        partitions: int,
        spec: TaskSpec | None = None,
    ) -> None:
        self.chain = chain
        self.coordinator = coordinator
        self.task_id = task_id
        self.members = list(members)
        self.display = display
        self.partitions = partitions
        self.spec = spec
        self.records: list[RoundRecord] = []
        #: sha256 of each finalized round's global model, by round.
        self.global_hashes: dict[int, str] = {}
        #: Rounds recorded so far that released at least one final partition (what DP accounting counts).
        self.released_rounds = 0
        self._round = 0
        self._block = chain.w3.eth.block_number
        self._bytes = 0
        self._started = time.monotonic()

    @property
    def finalized(self) -> list[RoundRecord]:
        """The records of the finalized rounds, in order."""
        return [r for r in self.records if r.status == "finalized"]

    def sweep(self) -> None:
        """Record every round that ended since the last call; show the phase of the one running."""
        _, task = self.coordinator.get_task(self.task_id)
        while self._round <= task.current_round:
            info = self.coordinator.get_round(self.task_id, self._round)
            if info.status not in (RoundStatus.FINALIZED, RoundStatus.FAILED):
                self.display.phase(phase_text(info, len(self.members), self.partitions))
                return
            self._record(info)

    def _record(self, info: RoundInfo) -> None:
        round_ = self._round
        latest = self.chain.w3.eth.block_number
        gas = sum(int(self.chain.w3.eth.get_block(b)["gasUsed"]) for b in range(self._block + 1, latest + 1))
        moved = sum(int(getattr(m.storage, "bytes_received", 0)) for m in self.members)
        metrics: dict[str, float] = {}
        cid = None
        if info.status == RoundStatus.FINALIZED:
            first = self.members[0]
            vector = global_after(first, round_)
            if vector is not None:
                self.global_hashes[round_] = hashlib.sha256(vector.tobytes()).hexdigest()
                metrics = first.trainer.evaluate(vector)
            cid = first.global_cid(round_)
        record = RoundRecord(
            round=round_,
            status=info.status.name.lower(),
            contributors=info.contributors,
            test_accuracy=metrics.get("test_accuracy"),
            test_loss=metrics.get("test_loss"),
            global_model_cid=cid,
            gas_used=gas,
            bytes_moved=moved - self._bytes,
            wall_seconds=time.monotonic() - self._started,
            epsilon=self._epsilon(info),
        )
        self.records.append(record)
        self.display.round_done(record, len(self.finalized))
        self._round, self._block, self._bytes, self._started = round_ + 1, latest, moved, time.monotonic()

    def _epsilon(self, info: RoundInfo) -> float | None:
        """Epsilon after this round: every round so far that released a final partition counts (a round
        that failed after some partition finalized too), a failed round that released nothing is free."""
        if self.spec is None:
            return None
        self.released_rounds += info.finalized_partitions > 0
        return self.spec.epsilon_after(self.released_rounds)


def phase_text(info: RoundInfo, nodes: int, partitions: int) -> str:
    """One line on what a running round is doing."""
    if info.status == RoundStatus.UPDATE:
        return f"round {info.round}: training, {info.contributors}/{nodes} updates committed"
    if info.status == RoundStatus.AGGREGATION:
        return f"round {info.round}: aggregating, {info.finalized_partitions}/{partitions} partitions final"
    return f"round {info.round}: {info.status.name.lower()}"


def global_after(node: Node, round_: int) -> np.ndarray | None:
    """The global model after ``round_``: the node's own copy if it holds that round's, else fetched."""
    vector = node.state.load_vector(node.task_id, "global")
    if node.state.global_round(node.task_id) == round_ and vector is not None:
        return vector
    try:
        return fetch_global(
            node.storage,
            node.coordinator,
            node.task_id,
            round_,
            timeout=node.options.fetch_timeout,
            dimension=None if vector is None else vector.size,
        )
    except (BlobNotFoundError, BlobInvalidError):
        return vector


__all__ = ["RoundRecord", "RoundRecorder", "global_after", "phase_text"]
