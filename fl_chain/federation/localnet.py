"""A local network on one machine: a chain process, the contract, and N node processes.

Used by ``scripts/local_network.py`` and the integration tests. Every process it starts (the chain
and the ``flchain node`` processes) is stopped by :meth:`LocalNetwork.close`, by pid: SIGTERM, which
a node answers by closing its IPFS peer and logs and exiting 143, and SIGKILL only for a node that
has not exited :data:`NODE_STOP_TIMEOUT` seconds later. Such a node is a bug: it is reported, kept in
:attr:`LocalNetwork.forced_stops`, and with ``require_clean_stop`` leaving the network raises
:class:`~fl_chain.errors.NodeStopError`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

from eth_account.signers.local import LocalAccount

from fl_chain.chain.anvil import Anvil
from fl_chain.chain.backends import ProcessChain
from fl_chain.chain.client import ChainClient
from fl_chain.chain.coordinator import RoundStatus, TaskStatus
from fl_chain.chain.deployment import deploy
from fl_chain.chain.ganache import Ganache
from fl_chain.chain.keys import dev_accounts
from fl_chain.errors import ConfigError, NodeStopError
from fl_chain.federation.operator import create_task
from fl_chain.node.state import final_model_file
from fl_chain.protocol.task import TaskSpec

#: Seconds without a new join after which starting the network gives up (each join restarts the wait).
JOIN_TIMEOUT = 180.0
#: Node processes per core that may be starting (not yet joined) at once.
STARTING_PER_CORE = 4
#: Seconds a node process gets to exit after SIGTERM.
NODE_STOP_TIMEOUT = 15.0
#: The exit status of a node stopped (SIGTERM) while it served blobs after the task: see end_nodes.
LINGER_STOPPED = 128 + signal.SIGTERM


@dataclass
class NodeProcess:
    """One ``flchain node`` OS process of the local network."""

    index: int
    account: LocalAccount
    state_dir: Path
    process: subprocess.Popen[bytes] | None = None
    logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class LocalNetwork:
    """Chain + coordinator + task + N node processes under ``root``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        nodes: int,
        task_file: str | os.PathLike[str],
        chain: str = "ganache",
        poll_interval: float = 0.5,
        fetch_timeout: float = 10.0,
        linger: float | None = None,
        block_time: float = 1.0,
        require_clean_stop: bool = False,
        report: Callable[[str], None] = print,
    ) -> None:
        if nodes < 1:
            raise ConfigError("a local network needs at least one node")
        if chain not in ("ganache", "anvil"):
            raise ConfigError(f"local networks run on ganache or anvil, not {chain!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.task_file = Path(task_file).resolve()
        self.spec = TaskSpec.from_toml(self.task_file)
        self.report = report
        self.poll_interval = poll_interval
        self.fetch_timeout = fetch_timeout
        self.linger = linger
        self.require_clean_stop = require_clean_stop
        #: Indices of nodes that ignored SIGTERM and were killed, in the order they were stopped.
        self.forced_stops: list[int] = []
        launcher = Ganache if chain == "ganache" else Anvil
        self.chain = ProcessChain(
            launcher(
                accounts=nodes + 1,
                log_dir=self.root / "chain",
                data_dir=self.root / "chain" / "db",
                block_time=block_time,
            )
        )
        try:
            self.client = ChainClient(self.chain.w3)
            self.operator, *accounts = dev_accounts(nodes + 1)
            self.coordinator, deployment = deploy(self.client, self.operator)
            self.deployment_file = deployment.write(self.root / "deployment.json")
            self.coordinator.admit(self.operator, [a.address for a in accounts])
            self.task_id, _ = create_task(self.coordinator, self.operator, self.spec)
            self.nodes = [NodeProcess(i, a, self.root / f"node-{i}") for i, a in enumerate(accounts)]
        except BaseException:
            self.chain.close()
            raise
        report(f"{chain} at {self.chain.rpc_url}; FLCoordinator {self.coordinator.address}; task {self.task_id}")

    # -- node processes -------------------------------------------------------------------------

    def node_command(self, node: NodeProcess) -> list[str]:
        """The ``flchain node`` command line of ``node``."""
        key_file = node.state_dir / "key.hex"
        return [
            sys.executable,
            "-m",
            "fl_chain.cli",
            "node",
            "--rpc",
            str(self.chain.rpc_url),
            "--deployment",
            str(self.deployment_file),
            "--key",
            str(key_file),
            "--task-file",
            str(self.task_file),
            "--task",
            str(self.task_id),
            "--state-dir",
            str(node.state_dir),
            "--shard",
            str(node.index),
            "--shards",
            str(len(self.nodes)),
            "--poll-interval",
            str(self.poll_interval),
            "--fetch-timeout",
            str(self.fetch_timeout),
        ] + (["--linger", str(self.linger)] if self.linger is not None else [])

    def start_node(self, index: int) -> NodeProcess:
        """Start (or restart) node ``index`` as an OS process; output goes to its state directory."""
        node = self.nodes[index]
        if node.running:
            return node
        node.state_dir.mkdir(parents=True, exist_ok=True)
        key_file = node.state_dir / "key.hex"
        key_file.write_text(node.account.key.hex())
        key_file.chmod(0o600)
        for log in node.logs:
            log.close()
        stdout = open(node.state_dir / "stdout.log", "ab")  # noqa: SIM115 - closed in stop_node/close
        stderr = open(node.state_dir / "stderr.log", "ab")  # noqa: SIM115
        node.logs = [stdout, stderr]
        node.process = subprocess.Popen(self.node_command(node), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        return node

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` (a crash, not a shutdown)."""
        node = self.nodes[index]
        if node.running:
            assert node.process is not None
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(NODE_STOP_TIMEOUT)

    def stop_node(self, index: int) -> int | None:
        """Stop node ``index`` (SIGTERM, then SIGKILL if it does not exit); its exit status, or None
        if it was not running."""
        return self._stop_nodes([index])[0]

    def _stop_nodes(self, indices: list[int]) -> list[int | None]:
        """SIGTERM every running node of ``indices`` at once, then wait for each (SIGKILL after
        :data:`NODE_STOP_TIMEOUT` seconds, recorded in :attr:`forced_stops`)."""
        nodes = [self.nodes[i] for i in indices]
        running = [node for node in nodes if node.running]
        for node in running:
            assert node.process is not None
            node.process.terminate()
        deadline = time.monotonic() + NODE_STOP_TIMEOUT
        statuses: list[int | None] = []
        for node in nodes:
            status = None
            if node in running:
                assert node.process is not None
                try:
                    status = node.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    status = node.process.wait(NODE_STOP_TIMEOUT)
                    self.forced_stops.append(node.index)
                    self.report(f"node {node.index} ignored SIGTERM for {NODE_STOP_TIMEOUT:.0f} s and was killed")
            for log in node.logs:
                log.close()
            node.logs = []
            statuses.append(status)
        return statuses

    # -- the run --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every node, wait until all joined, then start the task."""
        # At most STARTING_PER_CORE nodes per core start at once: 64 processes started together on 2
        # cores share them fairly and all finish starting at the same late moment; in waves they join
        # one after another. Wait for progress, not for a wall-clock total: each join restarts the wait.
        starting = max(4, STARTING_PER_CORE * (os.cpu_count() or 1))
        started = 0
        deadline = time.monotonic() + JOIN_TIMEOUT
        seen = 0
        while True:
            joined = self.coordinator.get_task(self.task_id)[1].participant_count
            while started < len(self.nodes) and started - joined < starting:
                self.start_node(started)
                started += 1
            if joined == len(self.nodes):
                break
            if joined > seen:
                seen, deadline = joined, time.monotonic() + JOIN_TIMEOUT
            crashed = [n.index for n in self.nodes if n.process is not None and n.process.poll() is not None]
            if crashed:
                raise ConfigError(f"node(s) {crashed} exited before joining; see {self.root}/node-*/stderr.log")
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"only {joined} of {len(self.nodes)} nodes joined, none in the last {JOIN_TIMEOUT:.0f} s; "
                    f"see {self.root}/node-*/stderr.log"
                )
            time.sleep(0.5)
        self.coordinator.start_task(self.operator, self.task_id)
        self.report(f"all {len(self.nodes)} nodes joined; task {self.task_id} started")

    def follow(self, *, timeout: float, on_round: Callable[[int, str], None] | None = None) -> TaskStatus:
        """Report each round as it ends until the task ends or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            _, task = self.coordinator.get_task(self.task_id)
            while seen < task.current_round or (task.status != TaskStatus.RUNNING and seen <= task.current_round):
                info = self.coordinator.get_round(self.task_id, seen)
                if info.status not in (RoundStatus.FINALIZED, RoundStatus.FAILED):
                    break
                outcome = info.status.name.lower()
                if info.status == RoundStatus.FAILED:
                    outcome += f" ({info.failure.name.lower()})"
                self.report(f"round {seen}: {outcome}, {info.contributors} contributors")
                if on_round is not None:
                    on_round(seen, outcome)
                seen += 1
            if task.status in (TaskStatus.COMPLETED, TaskStatus.CANCELLED):
                return task.status
            time.sleep(0.5)
        return self.coordinator.get_task(self.task_id)[1].status

    def end_nodes(self, timeout: float, *, awaited: Iterable[int] | None = None) -> list[int | None]:
        """After the task ended: wait until every running node of ``awaited`` (default: all) saved the
        final model or exited, then stop every node still running (those with the final model are
        serving blobs to slower peers), instead of waiting out their linger.

        No node is stopped while an awaited one still runs without the final model (it may be fetching
        it from them). Returns the exit codes: 0 for a node that ended by itself, :data:`LINGER_STOPPED`
        (143) for one stopped here, None for all that still run after ``timeout`` seconds (then none
        was stopped).
        """
        indices = list(range(len(self.nodes)) if awaited is None else awaited)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.has_final_model(i) for i in indices if self.nodes[i].running):
                self._stop_nodes([node.index for node in self.nodes if node.running])
                break
            time.sleep(0.2)
        return [n.process.poll() if n.process else None for n in self.nodes]

    def has_final_model(self, index: int) -> bool:
        """Whether node ``index`` saved the task's final model."""
        return final_model_file(self.nodes[index].state_dir, self.task_id).is_file()

    def wait_nodes(self, timeout: float) -> list[int | None]:
        """Wait for every node process to exit by itself; returns their exit codes (None: still running)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        return [n.process.poll() if n.process else None for n in self.nodes]

    def close(self) -> None:
        """Stop every node process and the chain (only processes this object started)."""
        self._stop_nodes(list(range(len(getattr(self, "nodes", [])))))
        self.chain.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close()
        if self.require_clean_stop and self.forced_stops and exc_type is None:
            raise NodeStopError(
                f"node(s) {self.forced_stops} did not stop on SIGTERM within {NODE_STOP_TIMEOUT:.0f} s; "
                f"see {self.root}/node-*/stderr.log"
            )


__all__ = ["LINGER_STOPPED", "LocalNetwork", "NodeProcess"]
