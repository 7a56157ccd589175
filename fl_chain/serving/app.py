"""The prediction service: a FastAPI application around one loaded model.

Every refusal is a JSON ``{"detail": ...}`` with a 4xx status: 401 without the API key, 403 with a
wrong one, 413 for a batch over ``max_batch`` rows or a body over the size bound, 422 for anything
that is not ``{"inputs": [[number, ...], ...]}`` with finite numbers and rows of the model's width
(malformed JSON included). An unexpected failure is a JSON 500 without a traceback.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from fl_chain.serving.limits import BodyLimit, key_status
from fl_chain.training.predictors import Predictor, describe, softmax

#: A feature value: a JSON number (not a string or a boolean), finite.
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]

#: Bytes allowed per feature value in a request body (a long decimal and its separator), for the size bound.
BYTES_PER_VALUE = 32


class PredictRequest(BaseModel):
    """A batch: one row of features per sample, as the task's dataset gives them (flattened)."""

    model_config = ConfigDict(extra="forbid")
    inputs: list[list[FiniteNumber]] = Field(min_length=1, description="rows of input_size finite numbers")


class PredictResponse(BaseModel):
    """The most probable class of each row and every class's probability (softmax of the logits)."""

    labels: list[int]
    probabilities: list[list[float]]


def body_bound(input_size: int, max_batch: int) -> int:
    """The request body size bound for batches of ``max_batch`` rows of ``input_size`` values."""
    return max(64 * 1024, max_batch * input_size * BYTES_PER_VALUE + 1024)


def create_app(
    predictor: Predictor, *, api_key: str | None = None, max_batch: int = 1024, max_body_bytes: int | None = None
) -> FastAPI:
    """The service for ``predictor``; ``api_key`` (if set) is required on ``/predict`` and ``/metadata``."""
    metadata = predictor.metadata
    width, classes = metadata.input_size, metadata.num_classes
    app = FastAPI(
        title="fl-chain model",
        summary=f"the global model of task {metadata.task_id} round {metadata.round}",
        version=metadata.fl_chain_version or "0",
    )

    def require_key(
        x_api_key: Annotated[str | None, Header()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> None:
        status = key_status(api_key, x_api_key, authorization)
        if status == 401:
            raise HTTPException(
                401, "API key required (X-API-Key or Authorization: Bearer)", {"WWW-Authenticate": "Bearer"}
            )
        if status == 403:
            raise HTTPException(403, "wrong API key")

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: the model is loaded."""
        return {"status": "ok", "runtime": predictor.runtime}

    @app.get("/metadata", dependencies=[Depends(require_key)])
    def get_metadata() -> dict[str, Any]:
        """Task, round, model CID and sha256, accuracy, architecture, and the request limits."""
        return {**describe(predictor), "input_size": width, "max_batch": max_batch}

    @app.post(
        "/predict",
        dependencies=[Depends(require_key)],
        response_model=PredictResponse,
        responses={401: {}, 403: {}, 413: {}, 422: {}},
    )
    def predict(request: PredictRequest) -> dict[str, Any]:
        """Labels and class probabilities of a batch of rows."""
        rows = request.inputs
        if len(rows) > max_batch:
            raise HTTPException(413, f"batch of {len(rows)} rows; at most {max_batch}")
        bad = next((i for i, row in enumerate(rows) if len(row) != width), None)
        if bad is not None:
            raise HTTPException(422, f"row {bad} has {len(rows[bad])} values; the model takes {width}")
        with np.errstate(over="ignore"):
            batch = np.asarray(rows, dtype=np.float32)
        if not np.isfinite(batch).all():  # finite float64 beyond float32's range
            raise HTTPException(422, "inputs must be finite float32 numbers")
        logits = predictor.logits(batch)
        if logits.shape != (len(rows), classes):
            raise HTTPException(500, "the model returned logits of an unexpected shape")
        return {"labels": logits.argmax(axis=1).tolist(), "probabilities": softmax(logits).tolist()}

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The errors without their "input": a bad value of a large batch is not echoed back.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return JSONResponse({"detail": errors[:20]}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    bound = max_body_bytes if max_body_bytes is not None else body_bound(width, max_batch)
    app.add_middleware(BodyLimit, max_bytes=bound)
    return app


__all__ = ["PredictRequest", "PredictResponse", "body_bound", "create_app"]
