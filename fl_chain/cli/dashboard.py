"""``flchain dashboard``: a web view of a contract's tasks, read from the chain and IPFS."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from fl_chain.cli.common import add_rpc
from fl_chain.ports import HOST

if TYPE_CHECKING:
    from fl_chain.chain.coordinator import Coordinator
    from fl_chain.node.runtime import Node
    from fl_chain.webserver import BackgroundServer

#: Default port of the dashboard.
DEFAULT_PORT = 8080


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dashboard``."""
    dash = commands.add_parser(
        "dashboard",
        help="a web dashboard of the tasks, rounds, participants, audits and models of a contract",
        description="Serve a dashboard read from the chain and the participants' IPFS peers only (no node "
        "needed): the task table, each task's rounds, charts, participants, audits and model downloads, "
        "and a JSON API under /api (described at /docs). Binds 127.0.0.1 unless --host says otherwise; "
        "Ctrl-C or SIGTERM stops it.",
    )
    add_rpc(dash)
    dash.add_argument("--deployment", default="deployment.json")
    dash.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    dash.add_argument("--host", default=HOST, help=f"interface to listen on (default {HOST})")
    dash.add_argument("--ipfs-dir", help="IPFS repo of the dashboard's peer (default: a temporary one)")
    dash.add_argument("--timeout", type=float, default=20.0, help="seconds each IPFS fetch may take (default 20)")
    dash.add_argument(
        "--task-file",
        action="append",
        default=[],
        metavar="TASK.toml",
        help="a task's file (repeatable): that task's rounds are audited with its own rule (strategy, bounds, "
        "DP, secure aggregation) like `flchain audit`; without it a task is audited as plain FedAvg",
    )
    dash.set_defaults(func=dashboard_command)


def dashboard_command(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    from fl_chain.chain.deployment import Deployment
    from fl_chain.dashboard.server import serve_dashboard
    from fl_chain.webserver import check_bindable

    deployment = Deployment.read(args.deployment)
    check_bindable(args.host, args.port)
    specs = _audit_specs(args) if args.task_file else {}
    serve_dashboard(
        args.rpc,
        deployment,
        host=args.host,
        port=args.port,
        ipfs_dir=args.ipfs_dir,
        fetch_timeout=args.timeout,
        audit_specs=specs,
    )
    return 0


def _audit_specs(args: argparse.Namespace) -> dict[int, Any]:
    """Each ``--task-file`` with its initial model, keyed by the task on chain it matches (ConfigError if none)."""
    from fl_chain.cli.common import open_coordinator
    from fl_chain.errors import ConfigError
    from fl_chain.federation.operator import initial_vector_for
    from fl_chain.protocol.task import TaskSpec
    from fl_chain.training.node_data import trainer_factory

    coordinator = open_coordinator(args)
    specs: dict[int, Any] = {}
    for path in args.task_file:
        spec = TaskSpec.from_toml(path)
        initial = initial_vector_for(spec, trainer_factory(None), None)
        for task_id in range(1, coordinator.task_count() + 1):
            try:
                spec.check_matches_chain(coordinator.get_task(task_id)[0], initial, task_id=task_id)
            except ConfigError:
                continue
            specs[task_id] = (spec, initial)
            break
        else:
            raise ConfigError(f"{path} matches no task on {coordinator.address}: pass the file a task was created from")
    return specs


class SimulationDashboard:
    """``flchain simulate --dashboard``: a dashboard on the simulation's chain, live from its first round.

    :meth:`started` (the simulation's ``on_started``) writes ``deployment.json`` into the run folder
    and starts the server; :meth:`finished` keeps it serving until Ctrl-C; :meth:`close` stops it.
    """

    def __init__(self, port: int, out: Any, *, storage: str, linger: bool = True) -> None:
        self.port, self.out, self.storage, self.linger = port, out, storage, linger
        self.server: BackgroundServer | None = None
        self._close_data: Any = None

    def started(self, chain: Any, coordinator: Coordinator, task_id: int, members: list[Node]) -> None:
        from fl_chain.chain.coordinator import Coordinator
        from fl_chain.dashboard.data import DashboardData
        from fl_chain.dashboard.server import KuboOpener, coordinator_opener, start_dashboard

        deployment = _deployment_of(coordinator)
        deployment.write(self.out / "deployment.json")
        # The simulation knows its task: its rounds are audited with the task's own rule.
        specs = {task_id: (members[0].spec, members[0].trainer.initial_vector())}
        rpc = str(chain.rpc_url)
        if self.storage == "memory":
            from fl_chain.storage.memory import MemoryStorage

            network = members[0].storage.network  # type: ignore[attr-defined]
            data = DashboardData(
                coordinator_opener(rpc, deployment), lambda: MemoryStorage(network), rpc_url=rpc, audit_specs=specs
            )
            cleanup = None
        else:
            opener = KuboOpener()
            data = DashboardData(coordinator_opener(rpc, deployment), opener, rpc_url=rpc, audit_specs=specs)
            cleanup = opener.cleanup
        assert isinstance(coordinator, Coordinator)

        def close() -> None:
            data.close()
            if cleanup is not None:
                cleanup()

        self._close_data = close
        self.server = start_dashboard(data, port=self.port)
        print(
            f"dashboard: {self.server.url}/tasks/{task_id} (chain {rpc}, deployment {self.out / 'deployment.json'})",
            flush=True,
        )

    def finished(self, summary: dict[str, Any]) -> None:
        from fl_chain.cli.stopping import Interrupted

        if self.server is None or not self.linger:
            return
        print(f"simulation finished; the dashboard stays at {self.server.url}/ until Ctrl-C", flush=True)
        try:
            while True:
                time.sleep(3600)
        except Interrupted:
            return

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._close_data is not None:
            self._close_data()
            self._close_data = None


def _deployment_of(coordinator: Coordinator) -> Any:
    """The deployment file of a simulation's coordinator (deployed by its operator at ``deploy_block``)."""
    from fl_chain.chain.artifacts import load_artifact
    from fl_chain.chain.deployment import Deployment

    w3 = coordinator.client.w3
    block = w3.eth.get_block(coordinator.deploy_block, full_transactions=True)
    transactions: list[Any] = list(block["transactions"])
    creation = next((tx for tx in transactions if tx.get("to") is None), None)
    return Deployment(
        chain_id=coordinator.client.chain_id,
        address=coordinator.address,
        block=coordinator.deploy_block,
        artifact_sha256=load_artifact().sha256,
        deployer=str(creation["from"]) if creation else coordinator.operator(),
        transaction="0x" + bytes(creation["hash"]).hex() if creation else "",
    )
