"""Assembling a node from command-line options: key, chain, deployment, task, data, storage, state."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fl_chain.chain.backends import RemoteChain
from fl_chain.chain.client import ChainClient
from fl_chain.chain.coordinator import Coordinator, TaskStatus
from fl_chain.chain.deployment import Deployment, open_deployment
from fl_chain.chain.keys import load_key, read_password_file
from fl_chain.errors import ConfigError, StorageStartError
from fl_chain.node.hooks import NodeObserver
from fl_chain.node.logs import RoundLogs
from fl_chain.node.runtime import Node, NodeOptions, Step
from fl_chain.node.state import NodeState, PhaseFile
from fl_chain.ports import port_in_use
from fl_chain.protocol.task import TaskSpec
from fl_chain.storage.base import Storage
from fl_chain.training.node_data import load_node_data, trainer_factory

if TYPE_CHECKING:
    import numpy as np


@dataclass
class NodeArgs:
    """What ``flchain node`` is given."""

    rpc: str
    deployment: str
    key: str
    task_file: str
    state_dir: str
    shard: int = 0
    shards: int = 1
    task_id: int | None = None
    data: str | None = None
    client: str | None = None
    password_file: str | None = None
    storage: str = "kubo"
    ipfs_port: int = 0
    poll_interval: float = 0.5
    fetch_timeout: float = 20.0
    linger: float | None = None
    threads: int | None = 1

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> NodeArgs:
        """The arguments of a parsed ``flchain node`` command line (``--task`` is ``task_id``)."""
        given = {name: getattr(options, name) for name in cls.__dataclass_fields__ if hasattr(options, name)}
        given["task_id"] = getattr(options, "task", None)
        return cls(**given)


def open_storage(kind: str, state: NodeState, port: int) -> Storage:
    """The node's IPFS peer: an embedded kubo node in the state directory (or memory, for tests)."""
    check_storage_options(kind, port)
    if kind == "kubo":
        from fl_chain.storage.kubo import KuboStorage

        return KuboStorage(state.ipfs_repo, port=port, log_dir=state.root / "logs")
    from fl_chain.storage.memory import MemoryStorage

    return MemoryStorage()


def check_storage_options(kind: str, port: int) -> None:
    """Refuse an unknown storage kind, or a swarm port out of range or already taken on 127.0.0.1.

    Checked before the state directory is opened, so a node that cannot start its peer leaves the
    directory as it was.

    Raises
    ------
    ConfigError
        For an unknown kind or a port outside 0..65535.
    StorageStartError
        For a port something already listens on.
    """
    if kind not in ("kubo", "memory"):
        raise ConfigError(f"unknown storage {kind!r}; use kubo or memory")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"--ipfs-port must be in 0..65535 (0: any free port), got {port!r}")
    if kind == "kubo" and port and port_in_use(port):
        raise StorageStartError(
            f"IPFS swarm port {port} on 127.0.0.1 is in use; choose another --ipfs-port or 0 for any free port"
        )


def pick_task(coordinator: Coordinator, state: NodeState, requested: int | None) -> int | None:
    """The task to work on: ``requested``, else the first open or running task not finished here."""
    count = coordinator.task_count()
    if requested is not None:
        if not 1 <= requested <= count:
            raise ConfigError(f"task {requested} does not exist on this coordinator ({count} task(s))")
        return None if requested in state.finished_tasks else requested
    for task_id in range(1, count + 1):
        if task_id in state.finished_tasks:
            continue
        _, task = coordinator.get_task(task_id)
        if task.status in (TaskStatus.OPEN, TaskStatus.RUNNING):
            return task_id
    return None


def check_task_file(coordinator: Coordinator, task_id: int, spec: TaskSpec, initial_vector: np.ndarray) -> None:
    """Refuse a task file whose manifest (with the initial model ``initial_vector``) is not the one
    of ``task_id`` on chain. The node checks this again; here it runs before the state directory
    and the IPFS peer are touched.

    Raises
    ------
    ConfigError
        If the manifest digests differ (see :meth:`TaskSpec.check_matches_chain`).
    """
    config, _ = coordinator.get_task(task_id)
    spec.check_matches_chain(config, initial_vector, task_id=task_id)


def run_node(
    args: NodeArgs,
    report: Callable[[str], None],
    *,
    node_class: type[Node] = Node,
    observers: Iterable[NodeObserver] = (),
) -> int:
    """Run a node until its task ends; returns the process exit status.

    The node is a ``node_class`` (a subclass of :class:`Node`, e.g. a test's hostile node) with
    ``observers`` after the one that writes its phase to the state directory (:class:`PhaseFile`).

    Everything that can be checked without the state directory (key, task file, data, storage
    options, chain, deployment) is checked before it is opened, and the directory's identity and
    task anchor before the IPFS peer starts in it: a start that fails on bad input leaves a node's
    state directory byte for byte as it was, so the next correct start resumes from it.
    """
    password = read_password_file(args.password_file) if args.password_file else None
    account = load_key(args.key, password)
    spec = TaskSpec.from_toml(args.task_file)
    train, test = load_node_data(spec, args.shard, args.shards, args.data)
    check_storage_options(args.storage, args.ipfs_port)
    if Path(args.state_dir).exists() and not Path(args.state_dir).is_dir():
        raise ConfigError(f"--state-dir {args.state_dir} is a file, not a directory; pass this node's state directory")
    trainer = trainer_factory(args.client, threads=args.threads)(spec, train, test)
    client = ChainClient(RemoteChain(args.rpc).w3)
    coordinator = open_deployment(client, Deployment.read(args.deployment))
    state = NodeState(args.state_dir, chain_id=client.chain_id, contract=coordinator.address, account=account.address)
    task_id = pick_task(coordinator, state, args.task_id)
    if task_id is None:
        report("no task left to run: every task is finished here or none is open")
        return 0
    check_task_file(coordinator, task_id, spec, trainer.initial_vector())
    # The Node binds the task too; doing it here refuses a directory of a reset chain before the
    # IPFS peer starts in it.
    state.bind_task(task_id, coordinator.task_anchor(task_id))
    storage = open_storage(args.storage, state, args.ipfs_port)
    logs: RoundLogs | None = None
    try:
        logs = RoundLogs(state.root / "logs")
        node = node_class(
            coordinator=coordinator,
            account=account,
            task_id=task_id,
            spec=spec,
            trainer=trainer,
            storage=storage,
            state=state,
            options=NodeOptions(
                poll_interval=args.poll_interval, fetch_timeout=args.fetch_timeout, clock=time.time, linger=args.linger
            ),
            logs=logs,
            report=report,
            observers=[PhaseFile(state.root), *observers],
        )
        report(f"node {account.address} on task {task_id}: {len(train)} local samples, peer {storage.peer_id}")
        return 0 if node.run() is not Step.STOPPED else 1
    finally:
        storage.close()
        if logs is not None:
            logs.close()


__all__ = [
    "NodeArgs",
    "check_storage_options",
    "check_task_file",
    "load_node_data",
    "open_storage",
    "pick_task",
    "run_node",
]
