"""Many nodes in one process on the embedded chain: cooperative steps, chain time jumps when idle.

Every node is a full :class:`~fl_chain.node.runtime.Node` (real contract, real runtime, real
training); they take turns calling ``step()``. Node clocks read the embedded chain's latest block
time, and when no node can make progress the runner moves chain time to the next deadline, so a
phase that ends by deadline costs no wall time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fl_chain.chain.coordinator import Coordinator, RoundStatus, TaskStatus
from fl_chain.chain.embedded import EmbeddedChain
from fl_chain.node.runtime import Node, Step


def chain_clock(chain: EmbeddedChain) -> Callable[[], float]:
    """A clock that reads the embedded chain's latest block timestamp."""
    return lambda: float(chain.tester.get_block_by_number("latest")["timestamp"])


class InProcessFederation:
    """Runs ``nodes`` of one task round-robin until the task ends."""

    def __init__(self, chain: EmbeddedChain, coordinator: Coordinator, task_id: int, nodes: Sequence[Node]) -> None:
        self.chain = chain
        self.coordinator = coordinator
        self.task_id = task_id
        self.nodes = list(nodes)
        self.time_jumps = 0

    def run(self, *, max_idle_sweeps: int = 1000, on_sweep: Callable[[], None] | None = None) -> TaskStatus:
        """Step every node until the task completes or is cancelled; returns the final status."""
        done: set[int] = set()
        idle_sweeps = 0
        while len(done) < len(self.nodes):
            progressed = False
            for i, node in enumerate(self.nodes):
                if i in done:
                    continue
                result = node.step()
                if result is Step.DONE:
                    done.add(i)
                progressed |= result is not Step.IDLE
            if on_sweep is not None:
                on_sweep()
            if progressed:
                idle_sweeps = 0
                continue
            idle_sweeps += 1
            if idle_sweeps > max_idle_sweeps:
                raise RuntimeError("the federation made no progress; see the node logs")
            self._jump_to_next_deadline()
        return self.coordinator.get_task(self.task_id)[1].status

    def _jump_to_next_deadline(self) -> None:
        _, task = self.coordinator.get_task(self.task_id)
        now = chain_clock(self.chain)()
        if task.status != TaskStatus.RUNNING:
            self.chain.mine()
            return
        info = self.coordinator.get_round(self.task_id, task.current_round)
        if info.status == RoundStatus.UPDATE:
            target = info.update_deadline
        elif info.status == RoundStatus.AGGREGATION:
            target = info.aggregation_deadline if now < info.aggregation_deadline else info.fallback_deadline
        else:
            target = now + 1
        self.chain.increase_time(max(1, int(target - now)))
        self.time_jumps += 1
