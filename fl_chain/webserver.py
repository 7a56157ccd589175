"""Running an ASGI app (``flchain serve``, ``flchain dashboard``) with uvicorn on 127.0.0.1 by default.

:func:`run_app` serves in the calling (main) thread until SIGINT or SIGTERM: uvicorn finishes the
requests in flight, then re-raises the signal so the CLI exits with its usual status.
:class:`BackgroundServer` serves from a daemon thread (``flchain simulate --dashboard``, tests) and
stops when asked. uvicorn comes with the ``serve`` extra; it is imported only here, when a server starts.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Any, Self

from fl_chain.errors import ConfigError
from fl_chain.ports import HOST
from fl_chain.training.extras import require

#: Seconds uvicorn waits for requests in flight when it stops.
GRACEFUL_SHUTDOWN_SECONDS = 5
#: Seconds a background server may take to start listening.
START_TIMEOUT = 30.0


def check_bindable(host: str, port: int) -> None:
    """ConfigError in one line if ``host:port`` cannot be bound (port in use, address not local)."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1..65535; got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _config(app: Any, host: str, port: int, purpose: str) -> Any:
    uvicorn = require("uvicorn", purpose)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def run_app(app: Any, *, host: str = HOST, port: int, purpose: str) -> None:
    """Serve ``app`` on ``host:port`` until SIGINT or SIGTERM (ConfigError if the address cannot be bound)."""
    config = _config(app, host, port, purpose)
    check_bindable(host, port)
    require("uvicorn", purpose).Server(config).run()


class BackgroundServer:
    """``app`` served by uvicorn from a daemon thread; :meth:`stop` (or leaving the ``with``) ends it."""

    def __init__(self, app: Any, *, host: str = HOST, port: int, purpose: str) -> None:
        check_bindable(host, port)
        self.host, self.port = host, port
        self._server = require("uvicorn", purpose).Server(_config(app, host, port, purpose))
        self._thread = threading.Thread(target=self._server.run, name=f"{purpose} server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Start serving; returns once the server listens (ConfigError if it did not start in time)."""
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"the server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask the server to finish its requests and stop; wait for its thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(GRACEFUL_SHUTDOWN_SECONDS + 5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["BackgroundServer", "check_bindable", "is_loopback", "run_app"]
