"""Many nodes in one process on a development chain: cooperative steps, chain time jumps when idle.

Every node is a full :class:`~fl_chain.node.runtime.Node` (real contract, real runtime, real
training); they take turns calling ``step()``. Node clocks read the chain's latest block time, and
when no node can make progress the runner moves chain time to the next deadline, so a phase that
ends by deadline costs no wall time. The chain is the embedded one by default, or a ganache/anvil
process (anything with ``w3``, ``increase_time`` and ``mine``); storage is an in-process memory
network by default, or one embedded kubo peer per node.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from web3 import Web3

from fl_chain.chain.client import ChainClient
from fl_chain.chain.coordinator import Coordinator, RoundStatus, TaskStatus
from fl_chain.chain.embedded import EmbeddedChain
from fl_chain.errors import FederationStalledError
from fl_chain.node.runtime import Node, Step
from fl_chain.node.state import NodeState
from fl_chain.storage.base import Storage


class DevChain(Protocol):
    """A development chain whose time the runner may move: embedded, ganache or anvil."""

    w3: Web3

    def increase_time(self, seconds: int) -> None:
        """Move chain time forward and mine a block."""

    def mine(self) -> None:
        """Mine one empty block."""


#: Makes node ``i``'s storage peer given its state directory.
StorageFactory = Callable[[int, NodeState], Storage]


def chain_clock(chain: DevChain, client: ChainClient | None = None) -> Callable[[], float]:
    """A clock that reads the chain's latest block timestamp (through ``client`` if given, which
    keeps it between blocks when it is the chain's sole writer)."""
    if isinstance(chain, EmbeddedChain):
        return lambda: float(chain.tester.get_block_by_number("latest")["timestamp"])
    if client is not None:
        return lambda: float(client.block_timestamp())
    return lambda: float(chain.w3.eth.get_block("latest")["timestamp"])


class InProcessFederation:
    """Runs ``nodes`` of one task round-robin until the task ends."""

    def __init__(self, chain: DevChain, coordinator: Coordinator, task_id: int, nodes: Sequence[Node]) -> None:
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
                if result in (Step.DONE, Step.STOPPED):
                    done.add(i)
                progressed |= result is not Step.IDLE
            if on_sweep is not None:
                on_sweep()
            if progressed:
                idle_sweeps = 0
                continue
            idle_sweeps += 1
            if idle_sweeps > max_idle_sweeps:
                raise FederationStalledError("the federation made no progress; see the node logs")
            self._jump_to_next_deadline()
        return self.coordinator.get_task(self.task_id)[1].status

    def _jump_to_next_deadline(self) -> None:
        config, task = self.coordinator.get_task(self.task_id)
        now = int(chain_clock(self.chain)())
        if task.status != TaskStatus.RUNNING:
            self.chain.mine()
            self.coordinator.client.chain_moved()
            return
        info = self.coordinator.get_round(self.task_id, task.current_round)
        if info.status == RoundStatus.UPDATE:
            key_check_end = info.update_deadline - config.update_duration  # secure rounds' key check window
            target = key_check_end if info.shares_deadline and now < key_check_end else info.update_deadline
        elif info.status == RoundStatus.AGGREGATION:
            target = info.aggregation_deadline if now < info.aggregation_deadline else info.fallback_deadline
        elif info.status == RoundStatus.SHARES:
            target = info.shares_deadline
        elif info.status == RoundStatus.UNMASK:
            target = info.reveal_start if now < info.reveal_start else info.unmask_deadline
        else:
            target = now + 1
        self.chain.increase_time(max(1, int(target - now)))
        self.coordinator.client.chain_moved()
        self.time_jumps += 1


def build_federation(
    spec,
    *,
    nodes: int,
    state_root,
    report: Callable[[int, str], None] | None = None,
    trainer_factory: Callable[..., object] | None = None,
    chain: DevChain | None = None,
    storage_factory: StorageFactory | None = None,
) -> tuple[DevChain, Coordinator, int, list[Node]]:
    """A chain (embedded unless ``chain`` is given, with ``nodes + 1`` funded development accounts),
    a deployed coordinator, a started task and ``nodes`` joined nodes with their own state
    directories under ``state_root`` and storage from ``storage_factory`` (default: one shared
    in-process memory network). Account 0 is the operator, account ``i + 1`` is node ``i``."""
    from fl_chain.chain.keys import dev_accounts
    from fl_chain.federation.operator import create_task
    from fl_chain.node.runtime import NodeOptions
    from fl_chain.storage.memory import MemoryNetwork, MemoryStorage
    from fl_chain.training.node_data import load_node_data
    from fl_chain.training.trainer import TorchTrainer

    chain = chain if chain is not None else EmbeddedChain(accounts=nodes + 1)
    client = ChainClient(chain.w3)
    operator, *accounts = dev_accounts(nodes + 1)
    coordinator = Coordinator.deploy(client, operator)
    coordinator.admit(operator, [a.address for a in accounts])
    trainers = []
    for i in range(nodes):
        train, test = load_node_data(spec, i, nodes)
        trainers.append((trainer_factory or TorchTrainer)(spec, train, test))
    task_id, _ = create_task(coordinator, operator, spec, initial=trainers[0].initial_vector())  # type: ignore[attr-defined]
    network = MemoryNetwork()
    make_storage: StorageFactory = storage_factory or (lambda i, state: MemoryStorage(network))
    clock = chain_clock(chain, client)
    members = []
    for i, (account, trainer) in enumerate(zip(accounts, trainers)):
        state = NodeState(
            Path(state_root) / f"node-{i}",
            chain_id=client.chain_id,
            contract=coordinator.address,
            account=account.address,
        )
        node = Node(
            coordinator=coordinator,
            account=account,
            task_id=task_id,
            spec=spec,
            trainer=trainer,  # type: ignore[arg-type]
            storage=make_storage(i, state),
            state=state,
            options=NodeOptions(clock=clock, linger=0),
            report=functools.partial(report, i) if report else None,
        )
        node.step()  # joins
        members.append(node)
    coordinator.start_task(operator, task_id)
    return chain, coordinator, task_id, members
