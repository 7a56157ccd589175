"""Serving an exported global model over HTTP: ``flchain serve``.

``app`` builds the FastAPI application (``POST /predict``, ``GET /health``, ``GET /metadata``, the
OpenAPI page at ``/docs``) around a :class:`~fl_chain.training.predictors.Predictor`; ``limits`` holds
its request guards (API key, body size); ``server`` runs it with uvicorn on 127.0.0.1 by default.
FastAPI and uvicorn come with the ``serve`` extra and are imported only by :func:`server.serve_model`.
"""

from __future__ import annotations
