"""The dashboard's JSON API and pages (FastAPI's TestClient) on a federation run on the embedded chain.

One federation (3 nodes, 3 rounds of logistic regression on digits) runs to completion once per
module; every test reads it through the dashboard as any member would: the chain's views and events
and a peer of the federation's storage network.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the dashboard needs the serve extra (fastapi, uvicorn)")

from fastapi.testclient import TestClient

from fl_chain.chain.coordinator import Coordinator, TaskStatus
from fl_chain.chain.deployment import Deployment
from fl_chain.dashboard.app import create_app
from fl_chain.dashboard.data import DashboardData
from fl_chain.dashboard.server import coordinator_opener
from fl_chain.errors import ContractNotFoundError
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.node.state import FINAL_MODEL
from fl_chain.ports import free_port
from fl_chain.protocol.task import TaskSpec
from fl_chain.storage.memory import MemoryStorage
from tests.helpers.cli_runner import InProcessCli, assert_one_line_error

ROUNDS = 3
#: Bound of every wait for the audit worker (a round's audit takes well under a second here).
AUDIT_WAIT_SECONDS = 60


def _spec(**extra: Any) -> TaskSpec:
    return TaskSpec.from_dict(
        {
            "protocol": {
                "rounds": ROUNDS,
                "partitions": 2,
                "replication": 2,
                "quorum": 2,
                "min_contributors": 2,
                "update_duration": 3600,
                "aggregation_duration": 3600,
            },
            "model": {"name": "logreg", "seed": 3},
            "dataset": {"name": "digits", "split": "iid"},
            "training": {"epochs": 1, "batch_size": 32, "lr": 0.1},
            **extra,
        }
    )


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    chain, coordinator, task_id, nodes = build_federation(
        _spec(), nodes=3, state_root=tmp_path_factory.mktemp("dashboard-nodes")
    )
    assert InProcessFederation(chain, coordinator, task_id, nodes).run() == TaskStatus.COMPLETED
    final = nodes[0].state.load_vector(task_id, FINAL_MODEL)
    network = nodes[0].storage.network  # type: ignore[attr-defined]
    return {"coordinator": coordinator, "task_id": task_id, "nodes": nodes, "final": final, "network": network}


@pytest.fixture(scope="module")
def client(federation: dict[str, Any]) -> Iterator[TestClient]:
    coordinator: Coordinator = federation["coordinator"]
    data = DashboardData(lambda: coordinator, lambda: MemoryStorage(federation["network"]), fetch_timeout=10)
    with TestClient(create_app(data), raise_server_exceptions=False) as test_client:
        yield test_client
    data.close()


def test_task_table_lists_the_finished_task_with_rounds_done_and_participants(client: TestClient) -> None:
    # Execute
    response = client.get("/api/tasks")
    # Assert
    assert response.status_code == 200
    (task,) = response.json()
    assert task["state"] == "finished"
    assert (task["rounds_done"], task["rounds_total"], task["participants"]) == (ROUNDS, ROUNDS, 3)


def test_task_timeline_has_every_round_finalized_with_contributors_gas_and_model_cid(
    client: TestClient, federation: dict[str, Any]
) -> None:
    task = client.get(f"/api/tasks/{federation['task_id']}").json()
    assert [r["round"] for r in task["rounds"]] == list(range(ROUNDS))
    for r in task["rounds"]:
        assert r["phase"] == "finalized" and r["failure"] is None
        assert sorted(r["contributors"]) == sorted(n.address for n in federation["nodes"])
        assert r["gas"] > 100_000 and r["partitions_final"] == 2 and r["excluded"] == [] and r["dissent"] == []
        assert r["update_deadline"] > r["start_time"] > 0


def test_metrics_are_the_sites_sample_weighted_evaluations_from_their_manifests(
    client: TestClient, federation: dict[str, Any]
) -> None:
    """Rounds 0..R-2's models were evaluated by the nodes that trained from them; the figures are theirs."""
    metrics = client.get(f"/api/tasks/{federation['task_id']}/metrics").json()
    assert [m["round"] for m in metrics] == list(range(ROUNDS - 1))
    node = federation["nodes"][0]
    for m in metrics:
        assert m["sites"] == 3 and m["accuracy_min"] <= m["accuracy"] <= m["accuracy_max"] <= 1
        vector = _global(federation, m["round"])
        measured = node.trainer.evaluate(vector)
        assert m["accuracy"] == pytest.approx(measured["test_accuracy"], abs=1e-6)
        assert m["loss"] == pytest.approx(measured["test_loss"], abs=1e-6)


def _global(federation: dict[str, Any], round_: int) -> np.ndarray:
    from fl_chain.exchange.gather import fetch_global

    storage = MemoryStorage(federation["network"])
    for node in federation["nodes"]:
        storage.connect(node.storage.multiaddrs()[0])
    return fetch_global(storage, federation["coordinator"], federation["task_id"], round_, timeout=10)


def test_model_download_is_the_npy_of_the_final_model(client: TestClient, federation: dict[str, Any]) -> None:
    response = client.get(f"/api/tasks/{federation['task_id']}/rounds/{ROUNDS - 1}/model.npy")
    assert response.status_code == 200
    expected = io.BytesIO()
    np.save(expected, federation["final"])  # what flchain model get writes
    assert response.content == expected.getvalue()
    assert "attachment" in response.headers["content-disposition"]


def test_every_round_audits_equal(client: TestClient, federation: dict[str, Any]) -> None:
    deadline = time.monotonic() + AUDIT_WAIT_SECONDS
    statuses: list[str] = []
    while time.monotonic() < deadline:
        statuses = [
            client.get(f"/api/tasks/{federation['task_id']}/rounds/{r}/audit").json()["status"] for r in range(ROUNDS)
        ]
        if "pending" not in statuses:
            break
        time.sleep(0.2)
    assert statuses == ["equal"] * ROUNDS


def _audits(data: DashboardData, task_id: int, rounds: int) -> list[dict[str, str]]:
    """Every round's audit once none is pending any more (bounded wait)."""
    with TestClient(create_app(data), raise_server_exceptions=False) as test_client:
        deadline = time.monotonic() + AUDIT_WAIT_SECONDS
        while True:
            audits = [test_client.get(f"/api/tasks/{task_id}/rounds/{r}/audit").json() for r in range(rounds)]
            if all(a["status"] != "pending" for a in audits) or time.monotonic() > deadline:
                return audits
            time.sleep(0.2)


def test_a_median_task_audits_equal_with_its_task_file_and_not_equal_as_plain_fedavg(tmp_path: Path) -> None:
    # Prepare: a finished median task (its global models are coordinate-wise medians, not means).
    spec = _spec(strategy={"name": "median"})
    chain, coordinator, task_id, nodes = build_federation(spec, nodes=3, state_root=tmp_path)
    assert InProcessFederation(chain, coordinator, task_id, nodes).run() == TaskStatus.COMPLETED
    network = nodes[0].storage.network  # type: ignore[attr-defined]
    specs = {task_id: (spec, nodes[0].trainer.initial_vector())}

    # Execute
    with_file = DashboardData(lambda: coordinator, lambda: MemoryStorage(network), fetch_timeout=10, audit_specs=specs)
    without = DashboardData(lambda: coordinator, lambda: MemoryStorage(network), fetch_timeout=10)
    try:
        audited, plain = _audits(with_file, task_id, ROUNDS), _audits(without, task_id, ROUNDS)
    finally:
        with_file.close()
        without.close()

    # Assert: the task's own rule (the code flchain audit runs) recomputes every round; plain FedAvg does not.
    assert [a["status"] for a in audited] == ["equal"] * ROUNDS, audited
    assert [a["status"] for a in plain] == ["not equal"] * ROUNDS, plain
    assert "--task-file" in plain[0]["detail"]


def test_participant_record_counts_updates_and_aggregates(client: TestClient, federation: dict[str, Any]) -> None:
    task_id, node = federation["task_id"], federation["nodes"][1]
    record = client.get(f"/api/tasks/{task_id}/participants/{node.address.lower()}").json()
    assert record["account"] == node.address and record["updates"] == ROUNDS and record["update_rounds"] == [0, 1, 2]
    commits = sum(
        c.aggregator == node.address
        for r in range(ROUNDS)
        for c in federation["coordinator"].find_aggregate_commits(task_id, r)
    )
    assert record["aggregates"] == commits
    assert (record["dissent"], record["excluded"], record["reports_filed"]) == (0, 0, 0)
    page = client.get(f"/tasks/{task_id}/participants/{node.address}")
    assert page.status_code == 200 and "data-page=participant" in page.text


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/tasks/99", 404, "task 99 does not exist"),
        ("/api/tasks/1/rounds/42/audit", 404, "round 42 of task 1 does not exist"),
        ("/api/tasks/1/rounds/42/model.npy", 404, "round 42 of task 1 does not exist"),
        ("/api/tasks/1/participants/0x0000000000000000000000000000000000000001", 404, "not a participant"),
        ("/api/tasks/zero", 422, "task_id"),
        ("/api/nothing", 404, "Not Found"),
    ],
)
def test_bad_api_requests_get_a_one_line_json_error(client: TestClient, path: str, status: int, message: str) -> None:
    response = client.get(path)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert message in detail and "\n" not in detail and "Traceback" not in detail


def test_missing_task_page_says_so_and_the_server_goes_on(client: TestClient) -> None:
    response = client.get("/tasks/99")
    assert response.status_code == 404 and "task 99 does not exist" in response.text
    assert "Traceback" not in response.text
    assert client.get("/api/tasks").status_code == 200


def test_pages_and_docs_load_nothing_from_another_host(client: TestClient) -> None:
    for path in ("/", "/tasks/1", "/docs"):
        page = client.get(path)
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="?([^" >]+)', page.text)
        assert sources and all(s.startswith("/") for s in sources), sources
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        body = client.get(asset)
        assert body.status_code == 200 and "https://" not in body.text and "cdn" not in body.text.lower()
    spec = client.get("/openapi.json").json()
    assert "/api/tasks/{task_id}/rounds/{round_}/model.npy" in spec["paths"]


def test_unreachable_chain_gives_503_pages_and_json(tmp_path: Path) -> None:
    deployment = Deployment(31337, "0x" + "12" * 20, 0, "0" * 64, "0x" + "34" * 20, "")
    url = f"http://127.0.0.1:{free_port()}"
    data = DashboardData(coordinator_opener(url, deployment), lambda: MemoryStorage())
    with TestClient(create_app(data), raise_server_exceptions=False) as test_client:
        api = test_client.get("/api/tasks")
        page = test_client.get("/")
    assert api.status_code == 503 and "no Ethereum JSON-RPC answer" in api.json()["detail"]
    assert page.status_code == 503 and "no Ethereum JSON-RPC answer" in page.text


def test_wrong_contract_address_gives_503(federation: dict[str, Any]) -> None:
    coordinator: Coordinator = federation["coordinator"]

    def wrong_contract() -> Coordinator:
        return Coordinator.at(coordinator.client, federation["nodes"][0].address)  # an account, not a contract

    data = DashboardData(wrong_contract, lambda: MemoryStorage())
    with TestClient(create_app(data), raise_server_exceptions=False) as test_client:
        response = test_client.get("/api/tasks/1")
    assert response.status_code == 503 and "no contract at" in response.json()["detail"]
    with pytest.raises(ContractNotFoundError):
        wrong_contract()


def _deployment_file(tmp_path: Path) -> Path:
    return Deployment(31337, "0x" + "12" * 20, 0, "0" * 64, "0x" + "34" * 20, "").write(tmp_path / "deployment.json")


def test_dashboard_command_refuses_a_missing_deployment_file_and_a_taken_port(
    tmp_path: Path, run_cli: InProcessCli
) -> None:
    missing = run_cli("dashboard", "--rpc", "http://127.0.0.1:1", "--deployment", "nope.json", cwd=tmp_path)
    assert_one_line_error(missing, "deployment file nope.json does not exist")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = run_cli(
            "dashboard", "--rpc", "http://127.0.0.1:1", "--port", port, cwd=_deployment_file(tmp_path).parent
        )
    assert_one_line_error(busy, f"cannot listen on 127.0.0.1:{port}")


def test_simulate_dashboard_needs_a_chain_with_a_url(tmp_path: Path, run_cli: InProcessCli) -> None:
    result = run_cli("simulate", "--chain", "embedded", "--dashboard", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert_one_line_error(result, "--dashboard reads the chain over JSON-RPC")


def test_dashboard_process_on_an_unreachable_chain_says_so_and_stops_on_sigint(tmp_path: Path) -> None:
    """The real command: it serves 503 pages while the chain is down, and Ctrl-C ends it (status 130)."""
    port = free_port()
    command = [sys.executable, "-m", "fl_chain.cli", "dashboard", "--rpc", f"http://127.0.0.1:{free_port()}"]
    command += ["--deployment", str(_deployment_file(tmp_path)), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline and process.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5)
            except urllib.error.HTTPError as exc:
                answer = (exc.code, json.load(exc))
            except OSError:
                time.sleep(0.1)
        assert answer is not None, "the dashboard did not answer"
        assert answer[0] == 503 and "no Ethereum JSON-RPC answer" in answer[1]["detail"]
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_dashboard_task_files_are_matched_to_their_task_and_a_stranger_is_refused_in_one_line(
    anvil: Any, tmp_path: Path
) -> None:
    """``flchain dashboard --task-file``: each file is matched to the task on chain it created (its
    audits then use that task's rule); a file of no task on the contract is a one-line ConfigError."""
    from fl_chain.cli.dashboard import _audit_specs
    from fl_chain.errors import ConfigError
    from fl_chain.federation.operator import initial_vector_for
    from tests.helpers.task_files import write_task_file

    protocol = {"rounds": 2, "partitions": 2, "replication": 2, "quorum": 2, "min_contributors": 2}
    task_file = write_task_file(tmp_path / "task.toml", protocol=protocol, strategy={"name": "median"})
    stranger = write_task_file(tmp_path / "other.toml", protocol={**protocol, "rounds": 3})
    spec = TaskSpec.from_toml(task_file)
    _, coordinator, task_id, _ = build_federation(spec, nodes=2, state_root=tmp_path / "nodes", chain=anvil)
    args = argparse.Namespace(rpc=anvil.rpc_url, contract=coordinator.address, task_file=[str(task_file)])

    specs = _audit_specs(args)

    assert list(specs) == [task_id]
    matched, initial = specs[task_id]
    assert matched.strategy == spec.strategy
    assert initial.tobytes() == initial_vector_for(spec).tobytes()
    args.task_file = [str(task_file), str(stranger)]
    with pytest.raises(ConfigError, match=r"other\.toml matches no task on 0x[0-9a-fA-F]{40}: pass the file"):
        _audit_specs(args)
