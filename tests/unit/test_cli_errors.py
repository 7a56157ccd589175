"""Bad input gets a one-line error and a non-zero exit from the CLI, never a traceback.

The CLI runs in the test process (``main(argv)``, see tests/helpers/cli_runner.py);
tests/unit/test_cli_smoke.py runs each command once through the real entry points.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from fl_chain.chain import ChainClient, dev_account
from fl_chain.chain.backends import ProcessChain
from fl_chain.ports import free_port
from tests.helpers.cli_runner import InProcessCli, assert_one_line_error

pytestmark = pytest.mark.process_chain


@pytest.fixture()
def operator_key(tmp_path: Path) -> Path:
    path = tmp_path / "operator.key"
    path.write_text(dev_account(0).key.hex())
    return path


@pytest.fixture()
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> InProcessCli:
    """Run ``flchain`` as a user would (in this process): ``run_cli(*args, cwd=...)``."""
    return InProcessCli(capsys, monkeypatch)


def deploy(run_cli: InProcessCli, ganache: ProcessChain, key: Path, out: Path) -> dict[str, object]:
    result = run_cli("deploy", "--rpc", str(ganache.rpc_url), "--key", str(key), "--out", str(out), cwd=out.parent)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def test_deploy_writes_deployment_file_the_status_command_reads(
    ganache: ProcessChain, operator_key: Path, tmp_path: Path, run_cli: InProcessCli
) -> None:
    """deploy prints the address and writes chain id, address, block and artifact hash; status reads it."""
    deployment = deploy(run_cli, ganache, operator_key, tmp_path / "deployment.json")
    assert deployment["chain_id"] == 1337
    assert deployment["block"] >= 1
    assert len(str(deployment["artifact_sha256"])) == 64
    status = run_cli("status", "--rpc", str(ganache.rpc_url), "--deployment", "deployment.json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert str(deployment["address"]) in status.stdout


def test_deploy_script_is_the_same_command(ganache: ProcessChain, operator_key: Path, tmp_path: Path) -> None:
    """scripts/deploy_contract.py deploys and prints the address."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "deploy_contract.py"
    result = subprocess.run(
        [sys.executable, str(script), "--rpc", str(ganache.rpc_url), "--key", str(operator_key), "--out", "d.json"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    address = json.loads((tmp_path / "d.json").read_text())["address"]
    assert address in result.stdout


def test_unreachable_rpc_url(operator_key: Path, tmp_path: Path, run_cli: InProcessCli) -> None:
    """Nothing listening at the URL: one line naming the URL."""
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("deploy", "--rpc", url, "--key", str(operator_key), cwd=tmp_path)
    assert_one_line_error(result, "no Ethereum JSON-RPC answer", url)


def test_rpc_url_without_http_scheme(operator_key: Path, tmp_path: Path, run_cli: InProcessCli) -> None:
    """A URL that is not http(s) is rejected before any connection."""
    result = run_cli("deploy", "--rpc", "127.0.0.1:8545", "--key", str(operator_key), cwd=tmp_path)
    assert_one_line_error(result, "must start with http://")


def test_missing_key_file(ganache: ProcessChain, tmp_path: Path, run_cli: InProcessCli) -> None:
    """A key file that does not exist is named."""
    result = run_cli("deploy", "--rpc", str(ganache.rpc_url), "--key", "absent.key", cwd=tmp_path)
    assert_one_line_error(result, "absent.key", "does not exist")


def test_malformed_key_file(ganache: ProcessChain, tmp_path: Path, run_cli: InProcessCli) -> None:
    """A key file that is not a key is named."""
    (tmp_path / "bad.key").write_text("hello\n")
    result = run_cli("deploy", "--rpc", str(ganache.rpc_url), "--key", "bad.key", cwd=tmp_path)
    assert_one_line_error(result, "bad.key", "not a 32-byte hex private key")


def test_account_without_funds(ganache: ProcessChain, tmp_path: Path, run_cli: InProcessCli) -> None:
    """An unfunded account is told it cannot pay for gas, and nothing is deployed."""
    poor = Account.create()
    (tmp_path / "poor.key").write_text(poor.key.hex())
    result = run_cli("deploy", "--rpc", str(ganache.rpc_url), "--key", "poor.key", "--out", "d.json", cwd=tmp_path)
    assert_one_line_error(result, poor.address, "needs", "wei")
    assert not (tmp_path / "d.json").exists()


def test_wrong_contract_address_without_code(
    ganache: ProcessChain, tmp_path: Path, operator_key: Path, run_cli: InProcessCli
) -> None:
    """A deployment file pointing at an account without code is rejected."""
    deployment = deploy(run_cli, ganache, operator_key, tmp_path / "deployment.json")
    deployment["address"] = dev_account(2).address
    (tmp_path / "deployment.json").write_text(json.dumps(deployment))
    result = run_cli("status", "--rpc", str(ganache.rpc_url), cwd=tmp_path)
    assert_one_line_error(result, "no contract at", dev_account(2).address)


def test_wrong_contract_address_with_other_code(
    ganache: ProcessChain, tmp_path: Path, operator_key: Path, run_cli: InProcessCli
) -> None:
    """A deployment file pointing at some other contract is rejected."""
    client = ChainClient(ganache.w3)
    # Init code of a contract whose runtime code returns 42.
    receipt = client.deploy(dev_account(1), [], "0x600a600c600039600a6000f3602a60005260206000f3")
    deployment = deploy(run_cli, ganache, operator_key, tmp_path / "deployment.json")
    deployment["address"] = receipt["contractAddress"]
    (tmp_path / "deployment.json").write_text(json.dumps(deployment))
    result = run_cli("status", "--rpc", str(ganache.rpc_url), cwd=tmp_path)
    assert_one_line_error(result, "is not this version of FLCoordinator")


def test_deployment_for_another_chain_id(
    ganache: ProcessChain, tmp_path: Path, operator_key: Path, run_cli: InProcessCli
) -> None:
    """A deployment file made on another chain is rejected with both chain ids."""
    deployment = deploy(run_cli, ganache, operator_key, tmp_path / "deployment.json")
    deployment["chain_id"] = 999
    (tmp_path / "deployment.json").write_text(json.dumps(deployment))
    result = run_cli("status", "--rpc", str(ganache.rpc_url), cwd=tmp_path)
    assert_one_line_error(result, "chain id 999", "chain id 1337")


def test_missing_and_malformed_deployment_file(ganache: ProcessChain, tmp_path: Path, run_cli: InProcessCli) -> None:
    """A missing or malformed deployment file is named with what to do."""
    missing = run_cli("status", "--rpc", str(ganache.rpc_url), "--deployment", "none.json", cwd=tmp_path)
    assert_one_line_error(missing, "none.json", "deploy_contract.py")
    (tmp_path / "bad.json").write_text("[1, 2]")
    bad = run_cli("status", "--rpc", str(ganache.rpc_url), "--deployment", "bad.json", cwd=tmp_path)
    assert_one_line_error(bad, "bad.json", "not an fl-chain deployment file")


def test_non_operator_admit_is_rejected_by_contract(
    ganache: ProcessChain, tmp_path: Path, operator_key: Path, run_cli: InProcessCli
) -> None:
    """A non-operator key gets the contract's error name in one line."""
    deploy(run_cli, ganache, operator_key, tmp_path / "deployment.json")
    (tmp_path / "other.key").write_text(dev_account(1).key.hex())
    result = run_cli("admit", "--rpc", str(ganache.rpc_url), "--key", "other.key", dev_account(2).address, cwd=tmp_path)
    assert_one_line_error(result, "FLCoordinatorUnauthorizedOperator", dev_account(1).address)


def test_task_create_from_toml_and_malformed_task_files(
    ganache: ProcessChain, tmp_path: Path, operator_key: Path, run_cli: InProcessCli
) -> None:
    """task create puts the TOML's task on chain; malformed or out-of-range files get one line each."""
    deploy(run_cli, ganache, operator_key, tmp_path / "deployment.json")
    example = Path(__file__).resolve().parents[2] / "examples" / "digits-mlp.toml"
    rpc = ("--rpc", str(ganache.rpc_url), "--key", str(operator_key))
    created = run_cli("task", "create", *rpc, str(example), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "created task 1" in created.stdout
    (tmp_path / "broken.toml").write_text("[protocol\nrounds = 3")
    assert_one_line_error(run_cli("task", "create", *rpc, "broken.toml", cwd=tmp_path), "broken.toml", "not valid TOML")
    (tmp_path / "quorum.toml").write_text(example.read_text().replace("quorum = 2", "quorum = 1"))
    assert_one_line_error(run_cli("task", "create", *rpc, "quorum.toml", cwd=tmp_path), "protocol.quorum")
    (tmp_path / "data.toml").write_text(example.read_text().replace('name = "digits"', 'name = "mnist-from-the-web"'))
    assert_one_line_error(run_cli("task", "create", *rpc, "data.toml", cwd=tmp_path), "unknown dataset", "digits")


def test_task_create_for_site_csv_data_needs_a_sample_file(
    ganache: ProcessChain, tmp_path: Path, operator_key: Path, run_cli: InProcessCli
) -> None:
    """A csv task is sized by a sample of the sites' data (--data); without one, a one-line error says so."""
    deploy(run_cli, ganache, operator_key, tmp_path / "deployment.json")
    example = Path(__file__).resolve().parents[2] / "examples" / "digits-mlp.toml"
    task = (
        example.read_text().replace('name = "digits"', 'name = "csv"\nnum_classes = 2').replace('split = "iid"\n', "")
    )
    (tmp_path / "csv.toml").write_text(task)
    rows = ["a,b,label"] + [f"{i / 10},{(i * 7) % 5},{i % 2}" for i in range(40)]
    (tmp_path / "sample.csv").write_text("\n".join(rows) + "\n")
    rpc = ("--rpc", str(ganache.rpc_url), "--key", str(operator_key))
    assert_one_line_error(run_cli("task", "create", *rpc, "csv.toml", cwd=tmp_path), "--data")
    assert_one_line_error(
        run_cli("task", "create", *rpc, "csv.toml", "--data", "missing.csv", cwd=tmp_path), "missing.csv"
    )
    created = run_cli("task", "create", *rpc, "csv.toml", "--data", "sample.csv", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "created task 1" in created.stdout


def test_chain_reads_on_a_dead_endpoint_raise_chain_unreachable_not_a_transport_error() -> None:
    """Nodes retry ChainUnreachableError; a raw requests ConnectionError would kill them instead."""
    from web3 import HTTPProvider, Web3

    from fl_chain.chain.client import ChainClient
    from fl_chain.errors import ChainUnreachableError
    from fl_chain.ports import free_port

    client = ChainClient.__new__(ChainClient)
    client.w3 = Web3(HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    for read in (client.block_number, client.block_timestamp, lambda: client.balance("0x" + "11" * 20)):
        with pytest.raises(ChainUnreachableError, match="lost the connection"):
            read()


def test_attack_task_create_refuses_a_capturable_task_unless_the_risk_is_accepted(
    ganache: ProcessChain, tmp_path: Path, operator_key: Path, run_cli: InProcessCli
) -> None:
    """r = q = 1 lets one colluder decide every partition it is assigned: `task create` prints the
    capture bound and refuses with one line naming the options to change; `--accept-risk` creates it."""
    deploy(run_cli, ganache, operator_key, tmp_path / "deployment.json")
    example = Path(__file__).resolve().parents[2] / "examples" / "digits-mlp.toml"
    text = example.read_text().replace("replication = 2", "replication = 1").replace("quorum = 2", "quorum = 1")
    (tmp_path / "r1.toml").write_text(text)
    rpc = ("--rpc", str(ganache.rpc_url), "--key", str(operator_key))
    refused = run_cli("task", "create", *rpc, "r1.toml", cwd=tmp_path)
    assert_one_line_error(refused, "security.max_colluders = 1", "protocol.replication", "--accept-risk")
    assert (
        "capture bound: 1 colluding contributor(s) decide some partition of a round with probability <= 1"
        in refused.stdout
    )
    (tmp_path / "k.toml").write_text(example.read_text() + "\n[security]\nmax_colluders = 1\n")
    majority = (tmp_path / "k.toml").read_text().replace("max_colluders = 1", "max_colluders = 2")
    (tmp_path / "k2.toml").write_text(majority)
    assert_one_line_error(run_cli("task", "create", *rpc, "k2.toml", cwd=tmp_path), "protocol.min_contributors")
    accepted = run_cli("task", "create", *rpc, "r1.toml", "--accept-risk", cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    assert "created task 1" in accepted.stdout
    safe = run_cli("task", "create", *rpc, "k.toml", cwd=tmp_path)
    assert safe.returncode == 0, safe.stderr
    assert "probability <= 0 " in safe.stdout


def test_revoke_removes_the_account_from_its_open_tasks(
    ganache: ProcessChain, tmp_path: Path, operator_key: Path, run_cli: InProcessCli
) -> None:
    """`flchain revoke` revokes the account and frees its slot in every open or running task it joined."""
    from fl_chain.chain.coordinator import Coordinator
    from fl_chain.chain.deployment import Deployment, open_deployment

    deploy(run_cli, ganache, operator_key, tmp_path / "deployment.json")
    example = Path(__file__).resolve().parents[2] / "examples" / "digits-mlp.toml"
    rpc = ("--rpc", str(ganache.rpc_url), "--key", str(operator_key))
    assert run_cli("task", "create", *rpc, str(example), cwd=tmp_path).returncode == 0
    member = dev_account(3)
    assert run_cli("admit", *rpc, member.address, cwd=tmp_path).returncode == 0
    coordinator: Coordinator = open_deployment(ChainClient(ganache.w3), Deployment.read(tmp_path / "deployment.json"))
    coordinator.join(member, 1, ["/ip4/127.0.0.1/tcp/4001/p2p/QmTest"])
    result = run_cli("revoke", *rpc, member.address, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "removed from task(s): 1" in result.stdout
    assert not coordinator.is_admitted(member.address)
    assert coordinator.get_participants(1) == []
    assert_one_line_error(run_cli("revoke", *rpc, "0x1234", cwd=tmp_path), "not an Ethereum address")


def test_task_create_of_a_secure_task_creates_it_with_create_secure_task(
    ganache: ProcessChain, tmp_path: Path, operator_key: Path, run_cli: InProcessCli
) -> None:
    """The secure example task goes on chain with its threshold and unmask windows; a median one is refused."""
    from fl_chain.chain.coordinator import Coordinator
    from fl_chain.chain.deployment import Deployment, open_deployment
    from fl_chain.protocol.task import SecureAggregationConfig

    deploy(run_cli, ganache, operator_key, tmp_path / "deployment.json")
    example = Path(__file__).resolve().parents[2] / "examples" / "digits-mlp-secure.toml"
    rpc = ("--rpc", str(ganache.rpc_url), "--key", str(operator_key))
    created = run_cli("task", "create", *rpc, str(example), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    coordinator: Coordinator = open_deployment(ChainClient(ganache.w3), Deployment.read(tmp_path / "deployment.json"))
    config, _ = coordinator.get_task(1)
    assert config.secure_aggregation == SecureAggregationConfig(threshold=2, shares_duration=20, unmask_duration=20)
    (tmp_path / "median.toml").write_text(example.read_text().replace('name = "fedavg"', 'name = "median"'))
    assert_one_line_error(run_cli("task", "create", *rpc, "median.toml", cwd=tmp_path), "cannot run strategy median")
