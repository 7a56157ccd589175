"""Starting a dashboard: on a chain URL and deployment file (``flchain dashboard``), or beside a simulation.

The dashboard's storage is its own IPFS peer (the project's loopback-only kubo configuration: no
bootstrap, swarm on 127.0.0.1, no MDNS, no routing, no NAT), started on the first fetch and closed
with the server; it dials the participants' peers registered on chain. A simulation on memory
storage passes a peer of its memory network instead.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from fl_chain.chain.coordinator import Coordinator
from fl_chain.chain.deployment import Deployment
from fl_chain.dashboard.data import DashboardData
from fl_chain.ports import HOST
from fl_chain.protocol.task import TaskSpec
from fl_chain.storage.base import Storage
from fl_chain.training.extras import require
from fl_chain.webserver import BackgroundServer, is_loopback, run_app

#: What ``require`` names when FastAPI or uvicorn is missing.
PURPOSE = "flchain dashboard"


def coordinator_opener(rpc: str, deployment: Deployment) -> Callable[[], Coordinator]:
    """Opens the deployment's coordinator on the chain at ``rpc`` (raises an FLChainError saying why not)."""

    def open_coordinator() -> Coordinator:
        from fl_chain.chain.backends import RemoteChain
        from fl_chain.chain.client import ChainClient
        from fl_chain.chain.deployment import open_deployment

        return open_deployment(ChainClient(RemoteChain(rpc).w3), deployment)

    return open_coordinator


class KuboOpener:
    """Starts the dashboard's own kubo peer in a temporary repository (removed by :meth:`cleanup`)."""

    def __init__(self, ipfs_dir: str | Path | None = None) -> None:
        self._tmp: str | None = None
        self.ipfs_dir = Path(ipfs_dir) if ipfs_dir else None

    def __call__(self) -> Storage:
        from fl_chain.storage.kubo import KuboStorage

        if self.ipfs_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="flchain-dashboard-")
            self.ipfs_dir = Path(self._tmp) / "ipfs"
        return KuboStorage(self.ipfs_dir, log_dir=self.ipfs_dir.parent)

    def cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def dashboard_data(
    rpc: str,
    deployment: Deployment,
    *,
    ipfs_dir: str | Path | None = None,
    fetch_timeout: float = 20.0,
    audit_specs: Mapping[int, tuple[TaskSpec, np.ndarray]] | None = None,
) -> tuple[DashboardData, Callable[[], None]]:
    """The data of a dashboard on ``rpc`` and ``deployment``, and the function that closes it."""
    opener = KuboOpener(ipfs_dir)
    data = DashboardData(
        coordinator_opener(rpc, deployment), opener, fetch_timeout=fetch_timeout, rpc_url=rpc, audit_specs=audit_specs
    )

    def close() -> None:
        data.close()
        opener.cleanup()

    return data, close


def serve_dashboard(
    rpc: str,
    deployment: Deployment,
    *,
    host: str = HOST,
    port: int = 8080,
    ipfs_dir: str | Path | None = None,
    fetch_timeout: float = 20.0,
    audit_specs: Mapping[int, tuple[TaskSpec, np.ndarray]] | None = None,
) -> None:
    """Serve the dashboard until SIGINT or SIGTERM (ConfigError if the extra is missing or the port is taken)."""
    require("fastapi", PURPOSE)
    require("uvicorn", PURPOSE)
    from fl_chain.dashboard.app import create_app

    data, close = dashboard_data(
        rpc, deployment, ipfs_dir=ipfs_dir, fetch_timeout=fetch_timeout, audit_specs=audit_specs
    )
    try:
        app = create_app(data)
        print(f"dashboard of {deployment.address} on {rpc}: http://{host}:{port}/ (API docs at /docs)", flush=True)
        if not is_loopback(host):
            print(f"warning: {host} is reachable from other machines; the dashboard has no login", flush=True)
        run_app(app, host=host, port=port, purpose=PURPOSE)
    finally:
        close()


def start_dashboard(data: DashboardData, *, host: str = HOST, port: int = 8080) -> BackgroundServer:
    """Serve ``data`` from a background thread (a simulation's live view); stop the returned server."""
    require("fastapi", PURPOSE)
    from fl_chain.dashboard.app import create_app

    return BackgroundServer(create_app(data), host=host, port=port, purpose=PURPOSE).start()


__all__ = ["KuboOpener", "coordinator_opener", "dashboard_data", "serve_dashboard", "start_dashboard"]
