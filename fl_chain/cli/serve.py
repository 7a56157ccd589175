"""``flchain serve``: an HTTP prediction service for an exported global model."""

from __future__ import annotations

import argparse

from fl_chain.ports import HOST


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve``."""
    serve = commands.add_parser(
        "serve",
        help="serve an exported model over HTTP: POST /predict, GET /health, GET /metadata, /docs",
        description="Serve a file written by flchain model export: ONNX with onnxruntime, the other formats "
        "with torch. Binds 127.0.0.1 unless --host says otherwise; Ctrl-C or SIGTERM stops it.",
    )
    serve.add_argument("model", help="the exported model (.onnx, .safetensors, .pt, or .npz with its .npz.json)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default=HOST, help=f"interface to listen on (default {HOST})")
    serve.add_argument("--api-key-file", help="require this key (X-API-Key or Authorization: Bearer)")
    serve.add_argument("--max-batch", type=int, default=1024, help="most rows per request (default 1024)")
    serve.add_argument("--threads", type=int, default=1, help="threads per prediction (default 1)")
    serve.add_argument(
        "--format", choices=("onnx", "safetensors", "torchscript", "npz"), help="default: from the suffix"
    )
    serve.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    """Run the service until SIGINT or SIGTERM."""
    from fl_chain.serving.limits import read_api_key
    from fl_chain.serving.server import serve_model

    api_key = read_api_key(args.api_key_file) if args.api_key_file else None
    serve_model(
        args.model,
        host=args.host,
        port=args.port,
        api_key=api_key,
        max_batch=args.max_batch,
        threads=args.threads,
        fmt=args.format,
    )
    return 0
