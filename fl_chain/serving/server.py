"""``flchain serve``'s process: load the model, build the app, run it until SIGINT or SIGTERM."""

from __future__ import annotations

from pathlib import Path

from fl_chain.errors import ConfigError
from fl_chain.ports import HOST
from fl_chain.training.extras import require
from fl_chain.webserver import check_bindable, is_loopback, run_app


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
    require("uvicorn", "flchain serve")
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
    run_app(app, host=host, port=port, purpose="flchain serve")


__all__ = ["serve_model"]
