"""``flchain serve``'s process: load the model, build the app, run uvicorn until SIGINT or SIGTERM."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from fl_chain.errors import ConfigError
from fl_chain.ports import HOST
from fl_chain.training.extras import require


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
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve_model(
    model: str | Path,
    *,
    host: str = HOST,
    port: int = 8000,
    api_key: str | None = None,
    max_batch: int = 1024,
    threads: int = 1,
    fmt: str | None = None,
) -> None:
    """Serve ``model`` until stopped; returns after uvicorn shut down gracefully.

    Raises
    ------
    ConfigError
        If the extra is missing, the model cannot be loaded, ``max_batch`` is not positive, or the
        address cannot be bound.
    """
    require("fastapi", "flchain serve")
    uvicorn = require("uvicorn", "flchain serve")
    from fl_chain.serving.app import create_app
    from fl_chain.training.predictors import load_predictor

    if max_batch < 1:
        raise ConfigError(f"--max-batch must be at least 1; got {max_batch}")
    predictor = load_predictor(model, fmt, threads=threads)
    app = create_app(predictor, api_key=api_key, max_batch=max_batch)
    check_bindable(host, port)
    meta = predictor.metadata
    print(
        f"serving {model} ({meta.architecture['name']}, task {meta.task_id} round {meta.round}, {predictor.runtime}) "
        f"on http://{host}:{port} (docs at /docs{', API key required' if api_key else ''})",
        flush=True,
    )
    if not is_loopback(host) and api_key is None:
        print(f"warning: {host} is reachable from other machines and no --api-key-file is set", flush=True)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    uvicorn.Server(config).run()


__all__ = ["check_bindable", "is_loopback", "serve_model"]
