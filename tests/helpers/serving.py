"""A real simulate run to export, and ``flchain serve`` as an OS process with a small HTTP client.

Used by tests/integration/test_model_export.py, tests/integration/test_serve.py and bench/serve.py.
The server process is started and stopped by its caller, by pid (:meth:`ServeProcess.stop`).
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fl_chain.ports import HOST, free_port

#: The repository root: ``python -m fl_chain.cli`` run from it imports this checkout's package.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: How long a server process may take to answer /health (imports of onnxruntime or torch on a busy machine).
READY_TIMEOUT = 90.0


def simulate_run(out: Path, *, nodes: int = 2, rounds: int = 2) -> Path:
    """A finished ``flchain simulate`` run folder (embedded chain, memory storage) at ``out``.

    Runs the CLI in this process and puts the SIGINT and SIGTERM handlers back afterwards.
    """
    from fl_chain.cli import main

    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        argv = ["simulate", "--nodes", str(nodes), "--rounds", str(rounds), "--chain", "embedded", "--quiet"]
        status = main([*argv, "--out", str(out)])
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert status == 0, f"simulate failed with status {status}"
    return out


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status and the JSON body (``None`` if the body is not JSON)."""

    status: int
    body: Any
    headers: dict[str, str]


class Client:
    """One keep-alive HTTP/1.1 connection to the server (reconnects when the server closed it)."""

    def __init__(self, port: int, *, host: str = HOST, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=all_headers)
                response = self._conn.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
                continue
            if response.getheader("connection", "").lower() == "close":
                self.close()
            try:
                parsed = json.loads(data) if data else None
            except ValueError:
                parsed = None
            return Reply(response.status, parsed, {k.lower(): v for k, v in response.getheaders()})
        raise AssertionError("unreachable")

    def predict(self, rows: list[list[float]], headers: dict[str, str] | None = None) -> Reply:
        return self.request("POST", "/predict", json.dumps({"inputs": rows}).encode(), headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ServeProcess:
    """``flchain serve MODEL`` in its own process on a free 127.0.0.1 port."""

    def __init__(self, model: Path, *args: str, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        self._log_file = open(log, "w")  # noqa: SIM115 - the process writes it until stop()
        command = [sys.executable, "-m", "fl_chain.cli", "serve", str(model), "--port", str(self.port), *args]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=self._log_file, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once ``GET /health`` answers 200; AssertionError with the log if the process died or never did."""
        deadline = time.monotonic() + timeout
        client = Client(self.port, timeout=2.0)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"flchain serve exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                if client.request("GET", "/health").status == 200:
                    client.close()
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"flchain serve did not answer within {timeout} s: {self.log.read_text()}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``signum`` to the process (by pid), wait for its exit; SIGKILL after ``timeout``. Its status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode
