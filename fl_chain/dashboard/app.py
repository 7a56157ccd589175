"""The dashboard's web application: HTML pages, their static assets, and the JSON API under ``/api``.

The pages are small HTML shells; ``static/dashboard.js`` fills them from the API and polls it every
two seconds while the page is open, and draws the charts as inline SVG. Nothing is loaded from
anywhere but this server. The API is described by ``/openapi.json`` and the local page ``/docs``
(FastAPI's own docs page would load its scripts from a CDN, so it is off).

Every failure is one line: 404 for a task, round or participant the chain does not have, 503 when
the chain does not answer or the address holds no FLCoordinator, 504 when no participant's peer
serves a model in time, 500 (without a traceback) for anything unexpected. The server outlives them all.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from fl_chain import __version__
from fl_chain.dashboard.data import DashboardData
from fl_chain.errors import BlobNotFoundError, ChainError, FLChainError, NotFoundError, StorageError

#: Seconds between two polls of an open page (also in dashboard.js).
POLL_SECONDS = 2


def status_of(exc: FLChainError) -> int:
    """The HTTP status of a failure: 404 not on chain, 503 chain or storage down, 504 not served, else 400."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, BlobNotFoundError):
        return 504
    if isinstance(exc, (ChainError, StorageError)):
        return 503
    return 400


def _page(title: str, body: str, *, status: int = 200, script: bool = True) -> HTMLResponse:
    tail = '<script src="/static/dashboard.js"></script>' if script else ""
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)} · fl-chain dashboard</title>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        '<link rel=stylesheet href="/static/dashboard.css"></head><body>'
        '<header><a href="/" class=brand>fl-chain</a> <span id=chain-line class=muted></span>'
        '<nav><a href="/">tasks</a> <a href="/docs">API</a></nav></header>'
        f"<main>{body}</main>{tail}</body></html>",
        status_code=status,
    )


def _error_page(status: int, message: str) -> HTMLResponse:
    body = (
        f'<h1>{status}</h1><p class=error id=error-message>{html.escape(message)}</p><p><a href="/">all tasks</a></p>'
    )
    return _page(f"error {status}", body, status=status, script=False)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def create_app(data: DashboardData) -> FastAPI:
    """The dashboard over ``data`` (which the caller closes after the server stopped)."""
    app = FastAPI(
        title="fl-chain dashboard",
        summary="Tasks, rounds, participants, evaluations, audits and global models of an FLCoordinator, "
        "read from the chain and IPFS.",
        version=__version__,
        docs_url=None,
        redoc_url=None,
    )
    static = resources.files("fl_chain.dashboard") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"

    @app.exception_handler(FLChainError)
    async def chain_failure(request: Request, exc: FLChainError) -> Response:
        status = status_of(exc)
        if status == 503 and isinstance(exc, ChainError):
            data.chain_failed()
        message = _one_line(exc)
        if wants_json(request):
            return JSONResponse({"detail": message}, status_code=status)
        return _error_page(status, message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid')}"
        if wants_json(request):
            return JSONResponse({"detail": message}, status_code=422)
        return _error_page(404, f"no such page ({message})")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_json(request) or request.url.path.startswith("/static/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return _error_page(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        message = f"internal error: {type(exc).__name__}"
        if wants_json(request):
            return JSONResponse({"detail": message}, status_code=500)
        return _error_page(500, message)

    # -- pages ----------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def tasks_page() -> HTMLResponse:
        data.coordinator()  # 503 page when the chain or contract is not there
        return _page(
            "tasks",
            "<h1>Tasks</h1><div id=tasks data-page=tasks><p class=muted id=loading>loading…</p></div>"
            "<p class=muted>Every task of the contract, newest first; updated every "
            f"{POLL_SECONDS} s.</p>",
        )

    @app.get("/tasks/{task_id}", response_class=HTMLResponse, include_in_schema=False)
    def task_page(task_id: int) -> HTMLResponse:
        data.check_task(task_id)  # 404 page for a task the chain does not have
        return _page(f"task {task_id}", f"<div id=task data-page=task data-task={task_id}></div>")

    @app.get("/tasks/{task_id}/participants/{account}", response_class=HTMLResponse, include_in_schema=False)
    def participant_page(task_id: int, account: str) -> HTMLResponse:
        record = data.participant(task_id, account)
        return _page(
            f"participant {record['account'][:10]}",
            f"<div id=participant data-page=participant data-task={task_id} "
            f"data-account={html.escape(record['account'])}></div>",
        )

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs_page() -> HTMLResponse:
        return _page(
            "API",
            "<h1>JSON API</h1><p>The machine-readable description is <a href=/openapi.json>/openapi.json</a> "
            '(OpenAPI 3). Every error is <code>{"detail": "one line"}</code> with a 4xx or 5xx status.</p>'
            "<div id=api data-page=api></div>",
        )

    # -- API ------------------------------------------------------------------------------------

    @app.get("/api/chain", tags=["chain"])
    def api_chain() -> dict[str, Any]:
        """The chain and contract this dashboard reads: RPC URL, chain id, contract, latest block, task count."""
        return data.overview()

    @app.get("/api/tasks", tags=["tasks"])
    def api_tasks() -> list[dict[str, Any]]:
        """Every task, newest first: state (created, running, finished, cancelled), rounds done of total,
        participants, and its parameters (partitions, replication, quorum, ...)."""
        return data.tasks()

    @app.get("/api/tasks/{task_id}", tags=["tasks"])
    def api_task(task_id: int) -> dict[str, Any]:
        """A task and its round timeline: per round the phase, deadlines (chain time, seconds), contributors,
        exclusions, reports, dissent, outcome (finalized, or failed and why), gas, model CID and audit status."""
        return data.task(task_id)

    @app.get("/api/tasks/{task_id}/metrics", tags=["tasks"])
    def api_metrics(task_id: int) -> list[dict[str, Any]]:
        """Per evaluated global model: the sites' own evaluations from their update manifests, as a
        sample-weighted mean accuracy and loss with the spread (min, max, standard deviation) across sites."""
        return data.metrics(task_id)

    @app.get("/api/tasks/{task_id}/participants", tags=["participants"])
    def api_participants(task_id: int) -> list[dict[str, Any]]:
        """Each participant's record: updates and aggregates committed, dissent, reports, exclusions, disputes."""
        return data.participants(task_id)

    @app.get("/api/tasks/{task_id}/participants/{account}", tags=["participants"])
    def api_participant(task_id: int, account: str) -> dict[str, Any]:
        """One participant's record (404 if the account never joined the task)."""
        return data.participant(task_id, account)

    @app.get("/api/tasks/{task_id}/rounds/{round_}/audit", tags=["rounds"])
    def api_audit(task_id: int, round_: int) -> dict[str, str]:
        """The round's audit: its global model recomputed from the committed updates in IPFS (plain FedAvg
        of the valid updates): ``pending``, ``equal``, ``not equal``, ``unavailable`` or ``not checked``."""
        return data.audit(task_id, round_)

    @app.get(
        "/api/tasks/{task_id}/rounds/{round_}/model.npy",
        tags=["rounds"],
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def api_model(task_id: int, round_: int) -> Response:
        """The global model of a finalized round as a .npy file, the bytes ``flchain model get`` writes,
        fetched from the participants' peers and verified against the chain's final digests."""
        body = data.model_npy(task_id, round_)
        filename = f"task{task_id}-round{round_}.npy"
        return Response(
            body,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    return app


__all__ = ["POLL_SECONDS", "create_app", "status_of"]
