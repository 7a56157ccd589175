"""A local chain (ganache or anvil) run as a child process bound to 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Self

from web3 import HTTPProvider, Web3

from fl_chain.chain.keys import DEV_MNEMONIC
from fl_chain.errors import ChainLaunchError
from fl_chain.ports import HOST, free_port, port_in_use

#: Seconds a chain process gets to answer JSON-RPC after it is started.
START_TIMEOUT = 60.0
#: Seconds a chain process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
#: Every development account starts with this many ether.
DEV_BALANCE_ETHER = 10_000
LOCAL_CHAINS_DIR = Path(__file__).resolve().parents[2] / "ganache"


class LocalChainProcess(ABC):
    """A development chain in a child process: deterministic accounts, loopback only, logs to files.

    Parameters
    ----------
    port:
        TCP port on 127.0.0.1; a free one is chosen when ``None``.
    chain_id:
        The chain id to run with.
    accounts:
        Number of funded development accounts (from :data:`DEV_MNEMONIC`).
    data_dir:
        Directory that persists the chain state across restarts; ``None`` keeps it in memory.
    log_dir:
        Directory for ``<name>.stdout.log`` and ``<name>.stderr.log``; a temporary one when ``None``.
    block_time:
        Seconds between blocks, mined even without transactions, as on a production chain, so the
        latest block's timestamp follows the clock and deadlines pass by themselves. ``None`` mines
        a block per transaction only (tests that move time explicitly).
    """

    name: str = "chain"
    default_chain_id: int = 1337

    def __init__(
        self,
        *,
        port: int | None = None,
        chain_id: int | None = None,
        accounts: int = 10,
        data_dir: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        block_time: float | None = None,
    ) -> None:
        if port is not None and port_in_use(port):
            raise ChainLaunchError(f"port {port} on {HOST} is in use; choose another --port or stop what holds it")
        self.port = port if port is not None else free_port()
        self.chain_id = chain_id if chain_id is not None else self.default_chain_id
        self.accounts = accounts
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.block_time = block_time
        self.process: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    @property
    def rpc_url(self) -> str:
        """The JSON-RPC URL of this chain."""
        return f"http://{HOST}:{self.port}"

    @abstractmethod
    def build_command(self) -> list[str]:
        """The command line that starts the chain."""

    def start(self) -> None:
        """Start the process and wait until it answers JSON-RPC with the expected chain id."""
        command = self.build_command()
        if self.log_dir is None:
            import tempfile

            self.log_dir = Path(tempfile.mkdtemp(prefix=f"flchain-{self.name}-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        stdout = open(self.log_dir / f"{self.name}.stdout.log", "ab")  # noqa: SIM115 - closed in stop()
        stderr = open(self.log_dir / f"{self.name}.stderr.log", "ab")  # noqa: SIM115
        self._logs = [stdout, stderr]
        self.process = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        w3 = Web3(HTTPProvider(self.rpc_url, request_kwargs={"timeout": 2}))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ChainLaunchError(
                    f"{self.name} exited with code {self.process.returncode} at start; see {self.log_dir}"
                )
            try:
                chain_id = int(w3.eth.chain_id)
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
                continue
            if chain_id != self.chain_id:
                raise ChainLaunchError(
                    f"{self.name} on port {self.port} reports chain id {chain_id}, not {self.chain_id}"
                )
            return
        raise ChainLaunchError(
            f"{self.name} did not answer on {self.rpc_url} within {START_TIMEOUT:.0f} s; see {self.log_dir}"
        )

    def stop(self) -> None:
        """Stop the process this object started (SIGTERM, then SIGKILL) and close its logs."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
        for log in self._logs:
            log.close()
        self._logs = []

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def require_node() -> str:
    """Path of the ``node`` executable."""
    node = shutil.which("node")
    if node is None:
        raise ChainLaunchError("node is not on PATH; install Node.js to run ganache")
    return node


def require_file(path: Path, hint: str) -> Path:
    """``path`` if it exists, else a launch error with an install hint."""
    if not path.exists():
        raise ChainLaunchError(f"{path} is missing; {hint}")
    return path


__all__ = [
    "DEV_BALANCE_ETHER",
    "DEV_MNEMONIC",
    "HOST",
    "LOCAL_CHAINS_DIR",
    "LocalChainProcess",
    "free_port",
    "port_in_use",
]
