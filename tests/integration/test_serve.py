"""``flchain serve``: real server processes on free 127.0.0.1 ports serving a real simulate run's model.

One ONNX server (onnxruntime, API key required) and one npz server (torch, no key) run for the
module; every attack is followed by a prediction that must still be right.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fl_chain.protocol.task import TaskSpec
from fl_chain.training.export import task_model
from fl_chain.training.export_check import torch_logits
from fl_chain.training.global_model import export_global_model
from tests.helpers.cli_runner import InProcessCli, assert_one_line_error
from tests.helpers.serving import Client, ServeProcess, simulate_run

API_KEY = "s3cret-key-for-tests"
MAX_BATCH = 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The run folder, and its final model exported as ONNX and npz (with sidecar)."""
    root = tmp_path_factory.mktemp("serve")
    run = simulate_run(root / "run")
    from fl_chain.federation.run_folder import read_final_model

    model = read_final_model(run)
    for fmt in ("onnx", "npz"):
        export_global_model(model, fmt, root / f"model.{fmt}")
    (root / "key").write_text(API_KEY + "\n")
    return {"run": run, "onnx": root / "model.onnx", "npz": root / "model.npz", "key": root / "key"}


@pytest.fixture(scope="module")
def reference(exported: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Test rows, torch's labels for them, and the run summary."""
    summary = json.loads((exported["run"] / "summary.json").read_text())
    built = task_model(TaskSpec.from_dict(summary["task"]), np.load(exported["run"] / "final-model.npy"))
    rows = built.test.features[:100].astype(np.float32)
    return rows, torch_logits(built.module, rows).argmax(axis=1), summary


@pytest.fixture(scope="module")
def onnx_server(exported: dict[str, Path]) -> Iterator[ServeProcess]:
    server = ServeProcess(
        exported["onnx"], "--api-key-file", str(exported["key"]), "--max-batch", str(MAX_BATCH),
        log=exported["onnx"].with_suffix(".log"),
    )  # fmt: skip
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def npz_server(exported: dict[str, Path]) -> Iterator[ServeProcess]:
    server = ServeProcess(exported["npz"], log=exported["npz"].with_suffix(".log"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


KEY = {"X-API-Key": API_KEY}


def assert_still_serving(
    port: int, rows: np.ndarray, labels: np.ndarray, headers: dict[str, str] | None = None
) -> None:
    reply = Client(port).predict(rows[:8].tolist(), headers)
    assert reply.status == 200, reply
    assert reply.body["labels"] == labels[:8].tolist()


def test_predict_returns_torch_argmax_labels_and_probabilities(onnx_server: ServeProcess, reference) -> None:
    """100 test rows in batches of 1, 7 and 64: each label is torch's argmax; probabilities sum to 1."""
    rows, labels, _ = reference
    client = Client(onnx_server.port)
    got: list[int] = []
    for batch in (rows[:1], rows[1:8], rows[8:72], rows[72:]):
        reply = client.predict(batch.tolist(), KEY)
        assert reply.status == 200, reply
        probabilities = np.array(reply.body["probabilities"])
        assert probabilities.shape == (len(batch), 10)
        assert np.allclose(probabilities.sum(axis=1), 1.0)
        assert reply.body["labels"] == probabilities.argmax(axis=1).tolist()
        got += reply.body["labels"]
    assert got == labels.tolist()


def test_npz_model_served_with_torch_predicts_the_same_labels(npz_server: ServeProcess, reference) -> None:
    """The npz export (torch rebuilt from the sidecar's architecture) needs no key when none is configured."""
    rows, labels, _ = reference
    reply = Client(npz_server.port).predict(rows.tolist())
    assert reply.status == 200, reply
    assert reply.body["labels"] == labels.tolist()
    assert Client(npz_server.port).request("GET", "/metadata").body["runtime"] == "torch"


def test_health_metadata_and_openapi_docs(onnx_server: ServeProcess, reference) -> None:
    """/health needs no key; /metadata names task, round, CID, sha256 and accuracy; /docs and the schema load."""
    _, _, summary = reference
    client = Client(onnx_server.port)
    assert client.request("GET", "/health").body == {"status": "ok", "runtime": "onnxruntime"}
    meta = client.request("GET", "/metadata", headers=KEY).body
    last = summary["rounds"][-1]
    assert (meta["task_id"], meta["round"], meta["model_cid"]) == (
        summary["task_id"],
        last["round"],
        last["global_model_cid"],
    )
    assert meta["model_sha256"] == summary["final_model_sha256"]
    assert meta["accuracy"] == meta["federation_accuracy"] == summary["final_accuracy"]
    assert (meta["input_size"], meta["max_batch"], meta["runtime"]) == (64, MAX_BATCH, "onnxruntime")
    docs = client.request("GET", "/docs")
    assert docs.status == 200 and docs.headers["content-type"].startswith("text/html")
    schema = client.request("GET", "/openapi.json").body
    assert {"/predict", "/health", "/metadata"} <= set(schema["paths"])


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": ""}, 401),
        ({"Authorization": "Basic " + API_KEY}, 401),
        ({"X-API-Key": API_KEY[:-1]}, 403),
        ({"X-API-Key": API_KEY + "x"}, 403),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"X-API-Key": "\u00e9" * 20}, 403),
    ],
    ids=["none", "empty", "basic-scheme", "prefix", "longer", "bearer-wrong", "latin1"],
)
def test_attack_missing_or_wrong_api_key_is_refused(onnx_server: ServeProcess, reference, headers, status) -> None:
    """No key: 401 with WWW-Authenticate; a wrong key: 403; on /predict and /metadata; the right one still works."""
    rows, labels, _ = reference
    client = Client(onnx_server.port)
    for reply in (client.predict(rows[:2].tolist(), headers), client.request("GET", "/metadata", headers=headers)):
        assert reply.status == status and "detail" in reply.body
        assert ("www-authenticate" in reply.headers) == (status == 401)
    assert_still_serving(onnx_server.port, rows, labels, KEY)
    assert_still_serving(onnx_server.port, rows, labels, {"Authorization": f"Bearer {API_KEY}"})


def _body(rows: object) -> bytes:
    return json.dumps({"inputs": rows}).encode()


ROW = [0.5] * 64
BAD_REQUESTS = {
    "oversized-batch": (_body([ROW] * (MAX_BATCH + 1)), 413),
    "short-row": (_body([ROW, ROW[:63]]), 422),
    "long-row": (_body([ROW + [0.0]]), 422),
    "flat-not-rows": (_body(ROW), 422),
    "nested-too-deep": (_body([[ROW]]), 422),
    "empty-batch": (_body([]), 422),
    "string-values": (_body([["0.5"] * 64]), 422),
    "bool-values": (_body([[True] * 64]), 422),
    "null-values": (_body([[None] * 64]), 422),
    "inputs-an-object": (_body({"a": 1}), 422),
    "extra-field": (json.dumps({"inputs": [ROW], "x": 1}).encode(), 422),
    "no-inputs": (b"{}", 422),
    "nan": (b'{"inputs": [[NaN' + b", 0.5" * 63 + b"]]}", 422),
    "infinity": (b'{"inputs": [[-Infinity' + b", 0.5" * 63 + b"]]}", 422),
    "overflow-float64": (b'{"inputs": [[1e400' + b", 0.5" * 63 + b"]]}", 422),
    "overflow-float32": (_body([[1e39] + ROW[1:]]), 422),
    "malformed-json": (b'{"inputs": [[0.5, ', 422),
    "not-json": (b"\x00\xff garbage", 422),
    "json-array": (b"[1, 2, 3]", 422),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_attack_bad_request_gets_a_4xx_json_error_and_the_server_keeps_serving(
    onnx_server: ServeProcess, reference, case: str
) -> None:
    """Wrong shapes, wrong types, NaN/inf, oversized batches and malformed JSON: 4xx JSON, never a 500."""
    rows, labels, _ = reference
    body, status = BAD_REQUESTS[case]
    reply = Client(onnx_server.port).request("POST", "/predict", body, KEY)
    assert reply.status == status, reply
    assert isinstance(reply.body, dict) and reply.body["detail"]
    assert_still_serving(onnx_server.port, rows, labels, KEY)


def _raw_request(port: int, head: bytes, body_chunks: list[bytes]) -> int:
    """Send a raw HTTP/1.1 request; the status code of the answer (0 if the server closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = sock.recv(4096)
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_attack_huge_body_is_413_declared_or_chunked(onnx_server: ServeProcess, reference) -> None:
    """64 MiB declared in Content-Length, or sent chunked without one: 413 before the body is parsed."""
    rows, labels, _ = reference
    port = onnx_server.port
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\n"
    declared = (head + f"Content-Length: {64 << 20}\r\n\r\n").encode()
    assert _raw_request(port, declared, [b"[" * 65536]) == 413
    chunk = b"[" * (1 << 20)
    chunked = (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
    assert _raw_request(port, chunked, [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 8) == 413
    assert _raw_request(port, (head + "Content-Length: 12x\r\n\r\n").encode(), []) in (400, 422)
    assert_still_serving(port, rows, labels, KEY)


def test_serve_listens_on_loopback_only(onnx_server: ServeProcess) -> None:
    """The default --host is 127.0.0.1: the only listening socket on the port is the loopback one."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    local = [line.split()[3] for line in out.splitlines() if line.split()[3].endswith(f":{onnx_server.port}")]
    assert local == [f"127.0.0.1:{onnx_server.port}"]


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_cleanly_on_a_stop_signal(
    exported: dict[str, Path], tmp_path: Path, signum: int, status: int
) -> None:
    """uvicorn shuts down gracefully, then the command exits as every flchain command does (130 or 143)."""
    server = ServeProcess(exported["onnx"], log=tmp_path / "serve.log")
    server.wait_ready()
    code = server.stop(signum)
    log = (tmp_path / "serve.log").read_text()
    assert code == status, log
    assert "stopped cleanly" in log and "Traceback" not in log
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_serve_bad_input_is_a_one_line_error(
    exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing model, an unknown suffix, an npz without its metadata, a bad key file, a bad batch bound,
    a port in use: exit 2, one line, no traceback."""
    run_cli = InProcessCli(capsys, monkeypatch)
    onnx = str(exported["onnx"])
    bare = tmp_path / "bare.npz"
    bare.write_bytes(exported["npz"].read_bytes())
    (tmp_path / "empty.key").write_text("\n")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        cases = [
            ((str(tmp_path / "none.onnx"),), "not found"),
            ((str(tmp_path / "m.bin"),), "suffix"),
            ((str(bare),), "bare.npz.json"),
            ((str(tmp_path / "bad.onnx"),), "cannot load ONNX model"),
            ((onnx, "--api-key-file", str(tmp_path / "no.key")), "API key file"),
            ((onnx, "--api-key-file", str(tmp_path / "empty.key")), "API key file"),
            ((onnx, "--max-batch", "0"), "--max-batch"),
            ((onnx, "--port", port), f"127.0.0.1:{port}"),
            ((onnx, "--port", "70000"), "--port"),
        ]
        for args, fragment in cases:
            assert_one_line_error(run_cli("serve", *args, cwd=tmp_path), fragment)


def test_bench_serve_load_counts_every_request_and_stops_by_itself(npz_server: ServeProcess, reference) -> None:
    """bench/serve.py's load loop: the requests asked for, all 200, latency percentiles; a time cap ends it."""
    from bench.serve import load

    rows, _, _ = reference
    row = load(npz_server.port, rows, batch=32, concurrency=4, requests=40, cap=60.0)
    assert (row["requests"], row["failures"], row["capped"]) == (40, 0, False)
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    capped = load(npz_server.port, rows, batch=1, concurrency=2, requests=10**9, cap=0.5)
    assert capped["capped"] and capped["failures"] == 0
