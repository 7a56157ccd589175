"""Bad input, each a test (issue 6): one ``error:`` line naming what to fix, exit status 2, no
traceback, and a node's state directory left as it was.

The CLI runs in the test process (``main(argv)``, see tests/helpers/cli_runner.py); the network's
nodes are real processes, and tests/unit/test_cli_smoke.py runs each command once through the real
entry points.

Checklist (case -> test; ``cli`` is tests/unit/test_cli_errors.py, ``bad`` this module):

- malformed task TOML: cli::test_task_create_from_toml_and_malformed_task_files,
  bad::test_node_start_on_bad_input_leaves_state_dir_unchanged[malformed task file]
- unknown dataset: cli::test_task_create_from_toml_and_malformed_task_files,
  bad::test_simulate_refuses_bad_options[unknown dataset]
- unknown strategy: bad::test_task_create_refuses_bad_task_file[unknown strategy] (and [strategy option]),
  bad::test_simulate_refuses_bad_options[unknown strategy]
- P, r or q out of range: bad::test_task_create_refuses_bad_task_file, bad::test_simulate_refuses_bad_options
- bad key file: cli::test_missing_key_file, cli::test_malformed_key_file, bad::test_bad_keystore_or_password_file,
  bad::test_node_start_on_bad_input_leaves_state_dir_unchanged[bad key file]
- wrong password: bad::test_bad_keystore_or_password_file[wrong password],
  bad::test_node_start_on_bad_input_leaves_state_dir_unchanged[wrong password]
- wrong contract address or chain id: cli::test_wrong_contract_address_*, cli::test_deployment_for_another_chain_id,
  bad::test_node_start_on_bad_input_leaves_state_dir_unchanged[wrong contract address], [wrong chain id]
- unreachable RPC: cli::test_unreachable_rpc_url,
  bad::test_node_start_on_bad_input_leaves_state_dir_unchanged[unreachable RPC]
- no funds: cli::test_account_without_funds (deploy), bad::test_node_without_funds_cannot_join
- missing data file: cli::test_task_create_for_site_csv_data_needs_a_sample_file,
  bad::test_node_start_on_bad_input_leaves_state_dir_unchanged[missing data file]
- port in use: bad::test_chain_start_port_in_use_or_out_of_range,
  bad::test_node_start_on_bad_input_leaves_state_dir_unchanged[IPFS port in use]
- state directory from another task: bad::test_node_start_on_bad_input_leaves_state_dir_unchanged[state dir of
  another deployment], [state dir of a reset chain], [state dir of another account]
- no state lost: bad::test_node_start_on_bad_input_leaves_state_dir_unchanged (byte for byte) and
  bad::test_node_resumes_from_its_state_dir_after_the_failed_starts (a correct start then finishes the round)
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account

from fl_chain.chain.client import ChainClient
from fl_chain.chain.deployment import deploy
from fl_chain.chain.keys import dev_account
from fl_chain.federation.localnet import LocalNetwork
from fl_chain.federation.operator import create_task
from fl_chain.ports import free_port
from fl_chain.protocol.task import TaskSpec
from tests.conftest import require_backend
from tests.helpers.cli_runner import InProcessCli, assert_one_line_error
from tests.helpers.task_files import task_toml, write_task_file

EXAMPLE_TASK = Path(__file__).resolve().parents[2] / "examples" / "digits-mlp.toml"
#: A JSON-RPC URL nothing answers at (a port that was free when the tests were collected).
DEAD_RPC = f"http://127.0.0.1:{free_port()}"
#: Seconds a node process of the module's network gets to reach a step of the test.
NODE_TIMEOUT = 180.0

#: The task of the module's network: one round, deadlines far away so nothing moves while nodes are down.
NET_PROTOCOL = {
    "rounds": 1,
    "partitions": 4,
    "replication": 2,
    "quorum": 2,
    "min_contributors": 2,
    "update_duration": 900,
    "aggregation_duration": 900,
}
NET_MODEL = {"name": "mlp", "hidden": 16, "seed": 5}
NET_TASK = task_toml(protocol=NET_PROTOCOL, model=NET_MODEL)


def unreachable_rpc() -> str:
    """A URL nothing answers at (a port that was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every directory (as None) under ``root``, by relative path."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_dir()
    }


@pytest.fixture()
def operator_key(tmp_path: Path) -> Path:
    path = tmp_path / "operator.key"
    path.write_text(dev_account(0).key.hex())
    return path


# -- task files and simulate options: refused before any chain is contacted ----------------------


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        pytest.param(("partitions = 4", "partitions = 0"), ("protocol.partitions", "positive integer"), id="P zero"),
        pytest.param(
            ("partitions = 4", "partitions = 70000"), ("protocol.partitions", "at most 65535"), id="P too big"
        ),
        pytest.param(
            ("partitions = 4", "partitions = 65535"),
            ("protocol.partitions", "model dimension 2410"),
            id="P above model size",
        ),
        pytest.param(("replication = 2", "replication = 0"), ("protocol.replication", "positive integer"), id="r zero"),
        pytest.param(("replication = 2", "replication = 65"), ("protocol.replication", "at most 64"), id="r too big"),
        pytest.param(("quorum = 2", "quorum = 3"), ("protocol.quorum", "quorum <= replication"), id="q above r"),
        pytest.param(
            ("quorum = 2", "quorum = 1"), ("protocol.quorum", "replication/2 < quorum"), id="q not a majority"
        ),
        pytest.param(
            ('name = "fedavg"', 'name = "nope"'),
            ("unknown aggregation strategy 'nope'", "fedavg"),
            id="unknown strategy",
        ),
        pytest.param(
            ('name = "fedavg"', 'name = "median"\nwidth = 3'), ("'median' has no option 'width'",), id="strategy option"
        ),
        pytest.param(
            ('name = "digits"', 'name = "imagenet"'), ("unknown dataset 'imagenet'", "digits"), id="unknown dataset"
        ),
        pytest.param(("[protocol]", "[protocol"), ("task.toml", "not valid TOML"), id="malformed TOML"),
    ],
)
def test_task_create_refuses_bad_task_file(
    edit: tuple[str, str], fragments: tuple[str, ...], tmp_path: Path, operator_key: Path, run_cli: InProcessCli
) -> None:
    """task create reads and checks the task file (and the model it sizes) before it contacts the chain."""
    # Prepare
    text = EXAMPLE_TASK.read_text()
    assert edit[0] in text
    (tmp_path / "task.toml").write_text(text.replace(edit[0], edit[1], 1))
    # Execute
    result = run_cli(
        "task", "create", "--rpc", unreachable_rpc(), "--key", str(operator_key), "task.toml", cwd=tmp_path
    )
    # Assert
    assert_one_line_error(result, *fragments)


def test_missing_task_file(tmp_path: Path, operator_key: Path, run_cli: InProcessCli) -> None:
    """A task file that does not exist is named."""
    result = run_cli(
        "task", "create", "--rpc", unreachable_rpc(), "--key", str(operator_key), "none.toml", cwd=tmp_path
    )
    assert_one_line_error(result, "none.toml", "does not exist")


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        pytest.param(("--partitions", "0"), ("--partitions",), id="P zero"),
        pytest.param(("--partitions", "5000"), ("partitions", "model dimension"), id="P above model size"),
        pytest.param(("--replication", "65"), ("protocol.replication", "at most 64"), id="r too big"),
        pytest.param(("--replication", "9"), ("--nodes 4", "5 contributors", "--replication 9"), id="r above nodes"),
        pytest.param(("--quorum", "3"), ("protocol.quorum",), id="q above r"),
        pytest.param(("--strategy", "nope"), ("unknown aggregation strategy 'nope'",), id="unknown strategy"),
        pytest.param(("--dataset", "nope"), ("unknown dataset 'nope'",), id="unknown dataset"),
    ],
)
def test_simulate_refuses_bad_options(
    options: tuple[str, ...], fragments: tuple[str, ...], tmp_path: Path, run_cli: InProcessCli
) -> None:
    """simulate refuses a federation that cannot run, in one line, before it starts one."""
    result = run_cli("simulate", "--quiet", "--rounds", "1", "--out", str(tmp_path / "run"), *options, cwd=tmp_path)
    assert_one_line_error(result, *fragments)


# -- keys, passwords and ports: refused before any chain is contacted -----------------------------


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        pytest.param("wrong password", ("wrong password for keystore", "ks.json"), id="wrong password"),
        pytest.param("no password", ("needs a password", "--password-file"), id="no password"),
        pytest.param(
            "missing password file", ("password file", "none.txt", "does not exist"), id="missing password file"
        ),
        pytest.param(
            "binary password file", ("password file", "pw.txt", "cannot be read as text"), id="binary password file"
        ),
        pytest.param("unsupported keystore", ("ks.json", "unsupported format"), id="unsupported keystore"),
        pytest.param("key file is a directory", ("keydir", "is not a file"), id="key file is a directory"),
    ],
)
def test_bad_keystore_or_password_file(
    case: str, fragments: tuple[str, ...], tmp_path: Path, run_cli: InProcessCli
) -> None:
    """Keystores and password files: every mistake is one line naming the file."""
    # Prepare
    keystore = Account.encrypt(dev_account(0).key, "right")
    if case == "unsupported keystore":
        keystore["version"] = 99
    (tmp_path / "ks.json").write_text(json.dumps(keystore))
    (tmp_path / "pw.txt").write_bytes(b"\xff\xfe\x00" if case == "binary password file" else b"wrong\n")
    (tmp_path / "keydir").mkdir()
    key = ["--key", "keydir"] if case == "key file is a directory" else ["--key", "ks.json"]
    password = {"no password": [], "missing password file": ["--password-file", "none.txt"]}.get(
        case, ["--password-file", "pw.txt"]
    )
    # Execute
    result = run_cli("deploy", "--rpc", unreachable_rpc(), *key, *password, cwd=tmp_path)
    # Assert
    assert_one_line_error(result, *fragments)


@pytest.mark.process_chain
def test_chain_start_port_in_use_or_out_of_range(tmp_path: Path, run_cli: InProcessCli) -> None:
    """chain start on a port a socket already holds, or outside 1..65535, fails in one line."""
    require_backend("ganache")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = run_cli("chain", "start", "ganache", "--port", str(port), "--log-dir", "logs", cwd=tmp_path)
    assert_one_line_error(taken, f"port {port}", "in use", "--port")
    outside = run_cli("chain", "start", "ganache", "--port", "70000", "--log-dir", "logs", cwd=tmp_path)
    assert_one_line_error(outside, "--port", "1..65535")
    too_fast = run_cli("chain", "start", "anvil", "--block-time", "0.01", "--log-dir", "logs", cwd=tmp_path)
    assert_one_line_error(too_fast, "--block-time", "between 0.1 and 3600")


def test_node_ipfs_port_out_of_range(tmp_path: Path, run_cli: InProcessCli) -> None:
    """--ipfs-port outside 0..65535 is named (it used to be an OverflowError traceback)."""
    (tmp_path / "a.key").write_text(dev_account(1).key.hex())
    result = run_cli(
        "node",
        "--rpc",
        unreachable_rpc(),
        "--key",
        "a.key",
        "--task-file",
        str(EXAMPLE_TASK),
        "--state-dir",
        "state",
        "--ipfs-port",
        "70000",
        cwd=tmp_path,
    )
    assert_one_line_error(result, "--ipfs-port", "0..65535")
    assert not (tmp_path / "state").exists()


# -- a real network: node starts that fail on bad input, then a start that resumes ----------------


@dataclass
class StoppedNode:
    """Node 0 of a two-node network, killed right after it committed its round-0 update."""

    net: LocalNetwork
    work: Path
    key: Path
    state_dir: Path
    other_deployment: Path

    def argv(self, **changes: str | None) -> list[str]:
        """``flchain node`` arguments of node 0 (a correct start), with ``changes`` (None drops an option)."""
        options: dict[str, str | None] = {
            "--rpc": str(self.net.chain.rpc_url),
            "--deployment": str(self.net.deployment_file),
            "--key": str(self.key),
            "--task-file": str(self.net.task_file),
            "--task": str(self.net.task_id),
            "--state-dir": str(self.state_dir),
            "--shard": "0",
            "--shards": "2",
            "--linger": "0",
        }
        options.update({"--" + k.replace("_", "-"): v for k, v in changes.items()})
        argv = ["node"]
        for option, value in options.items():
            if value is not None:
                argv += [option, value]
        return argv


def _wait(condition: Callable[[], bool], what: str, net: LocalNetwork, running: tuple[int, ...]) -> None:
    """Poll ``condition`` until it holds; fail if a node of ``running`` exits or time runs out."""
    deadline = time.monotonic() + NODE_TIMEOUT
    while not condition():
        crashed = [i for i in running if not net.nodes[i].running]
        assert not crashed, f"node(s) {crashed} exited while waiting for {what}; see {net.root}/node-*/stderr.log"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _recorded_update(state_dir: Path) -> bool:
    """Whether the node's state directory records its round-0 update as committed."""
    try:
        return json.loads((state_dir / "task-1" / "progress.json").read_text())["0"]["update_committed"] is True
    except (OSError, ValueError, KeyError):
        return False


@pytest.fixture(scope="module")
def stopped_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoppedNode]:
    """Ganache, two kubo nodes; node 1 joins and stops, the task starts, node 0 commits its round-0
    update and is killed (SIGKILL). Node 0's state directory then holds real progress."""
    require_backend("ganache")
    work = tmp_path_factory.mktemp("bad-input")
    (work / "task.toml").write_text(NET_TASK)
    with LocalNetwork(
        work / "net",
        nodes=2,
        task_file=work / "task.toml",
        poll_interval=0.3,
        fetch_timeout=5,
        linger=0,
        report=lambda message: None,
    ) as net:
        coordinator, task_id = net.coordinator, net.task_id
        a, b = (n.account.address for n in net.nodes)
        net.start_node(0)
        net.start_node(1)
        _wait(
            lambda: coordinator.has_joined(task_id, a) and coordinator.has_joined(task_id, b),
            "both nodes to join",
            net,
            (0, 1),
        )
        net.stop_node(1)
        coordinator.start_task(net.operator, task_id)
        _wait(
            lambda: any(c.contributor == a for c in coordinator.find_update_commits(task_id, 0)),
            "node 0's update",
            net,
            (0,),
        )
        # The commit is on chain before node 0 records it (after the receipt), and it says so after
        # recording it: wait for both, so the crash comes after a commit the node reported.
        stdout = net.nodes[0].state_dir / "stdout.log"
        _wait(
            lambda: _recorded_update(net.nodes[0].state_dir) and "round 0: update committed" in stdout.read_text(),
            "node 0 to record and report its update",
            net,
            (0,),
        )
        # A crash (SIGTERM can wait 15 s while node 0 is blocked dialling the stopped node 1).
        net.kill_node(0)
        # The same task on a second deployment on the same chain: node 0's directory is not its.
        client = ChainClient(net.chain.w3)
        other, deployment = deploy(client, net.operator)
        other.admit(net.operator, [a])
        create_task(other, net.operator, TaskSpec.from_toml(work / "task.toml"))
        key = work / "node0.key"
        key.write_text(net.nodes[0].account.key.hex())
        yield StoppedNode(net, work, key, net.nodes[0].state_dir, deployment.write(work / "other-deployment.json"))


def _bad_key(node: StoppedNode) -> list[str]:
    (node.work / "bad.key").write_text("not a key\n")
    return node.argv(key=str(node.work / "bad.key"))


def _wrong_password(node: StoppedNode) -> list[str]:
    keystore = Account.encrypt(node.net.nodes[0].account.key, "right")
    (node.work / "node0-keystore.json").write_text(json.dumps(keystore))
    (node.work / "wrong.txt").write_text("wrong\n")
    return node.argv(key=str(node.work / "node0-keystore.json"), password_file=str(node.work / "wrong.txt"))


def _deployment_with(node: StoppedNode, name: str, **changes: object) -> Path:
    data = json.loads(node.net.deployment_file.read_text())
    data.update(changes)
    path = node.work / name
    path.write_text(json.dumps(data))
    return path


def _malformed_task_file(node: StoppedNode) -> list[str]:
    assert "[model]" in NET_TASK
    (node.work / "malformed.toml").write_text(NET_TASK.replace("[model]", "[model"))
    return node.argv(task_file=str(node.work / "malformed.toml"))


def _missing_data_file(node: StoppedNode) -> list[str]:
    write_task_file(
        node.work / "site-csv.toml", protocol=NET_PROTOCOL, model=NET_MODEL, dataset={"name": "csv", "num_classes": 2}
    )
    return node.argv(task_file=str(node.work / "site-csv.toml"), data=str(node.work / "site-missing.csv"))


def _other_task_file(node: StoppedNode) -> list[str]:
    write_task_file(node.work / "other.toml", protocol=NET_PROTOCOL, model={**NET_MODEL, "hidden": 17})
    return node.argv(task_file=str(node.work / "other.toml"))


#: id -> (node 0's arguments with one mistake, fragments of the error line).
NODE_CASES: dict[str, tuple[Callable[[StoppedNode], list[str]], tuple[str, ...]]] = {
    "bad key file": (_bad_key, ("bad.key", "not a 32-byte hex private key")),
    "missing key file": (lambda n: n.argv(key=str(n.work / "absent.key")), ("absent.key", "does not exist")),
    "wrong password": (_wrong_password, ("wrong password for keystore", "node0-keystore.json")),
    "unreachable RPC": (lambda n: n.argv(rpc=DEAD_RPC), ("no Ethereum JSON-RPC answer", DEAD_RPC)),
    "wrong contract address": (
        lambda n: n.argv(deployment=str(_deployment_with(n, "no-code.json", address=dev_account(9).address))),
        ("no contract at", dev_account(9).address),
    ),
    "wrong chain id": (
        lambda n: n.argv(deployment=str(_deployment_with(n, "chain-999.json", chain_id=999))),
        ("chain id 999", "chain id 1337"),
    ),
    "malformed task file": (_malformed_task_file, ("malformed.toml", "not valid TOML")),
    "task file of another task": (_other_task_file, ("task file does not match task 1",)),
    "missing data file": (_missing_data_file, ("site-missing.csv",)),
    "state dir of another deployment": (
        lambda n: n.argv(deployment=str(n.other_deployment)),
        ("state directory", "belongs to contract", "another --state-dir"),
    ),
    "state dir of another account": (
        lambda n: n.argv(key=str(n.net.nodes[1].state_dir / "key.hex")),
        ("state directory", "belongs to account", "another --state-dir"),
    ),
}


@pytest.mark.process_chain
@pytest.mark.kubo
@pytest.mark.parametrize("case", [*NODE_CASES, "IPFS port in use", "state dir of a reset chain"])
def test_node_start_on_bad_input_leaves_state_dir_unchanged(
    case: str, stopped_node: StoppedNode, run_cli: InProcessCli
) -> None:
    """A node start with one mistake fails in one line naming it, and the state directory, which holds
    the node's progress (round-0 update committed), is byte for byte as it was."""
    # Prepare
    state_dir = stopped_node.state_dir
    busy: socket.socket | None = None
    if case == "IPFS port in use":
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv, fragments = stopped_node.argv(ipfs_port=str(port)), (f"IPFS swarm port {port}", "in use", "--ipfs-port")
    elif case == "state dir of a reset chain":
        # Same account, contract and task id, but task 1 was created in another block: a reset chain.
        state_dir = stopped_node.work / "reset-chain-state"
        if not state_dir.exists():
            shutil.copytree(stopped_node.state_dir, state_dir)
            (state_dir / "task-1" / "task.json").write_text(json.dumps({"anchor": "0x" + "ab" * 32}))
        argv, fragments = stopped_node.argv(state_dir=str(state_dir)), ("task 1 of another chain", "--state-dir")
    else:
        build, fragments = NODE_CASES[case]
        argv = build(stopped_node)
    assert json.loads((state_dir / "task-1" / "progress.json").read_text())["0"]["update_committed"] is True
    before = snapshot(state_dir)
    # Execute
    try:
        result = run_cli(*argv, cwd=stopped_node.work)
    finally:
        if busy is not None:
            busy.close()
    # Assert
    assert_one_line_error(result, *fragments)
    assert snapshot(state_dir) == before


@pytest.mark.process_chain
@pytest.mark.kubo
def test_node_without_funds_cannot_join(stopped_node: StoppedNode, run_cli: InProcessCli) -> None:
    """An admitted account with zero balance is told it cannot pay for gas; it never joins."""
    # Prepare: an open task on the network's coordinator, and an admitted account without ether
    net = stopped_node.net
    task_id, _ = create_task(net.coordinator, net.operator, TaskSpec.from_toml(net.task_file))
    poor = Account.create()
    net.coordinator.admit(net.operator, [poor.address])
    (stopped_node.work / "poor.key").write_text(poor.key.hex())
    # Execute
    result = run_cli(
        *stopped_node.argv(key="poor.key", task=str(task_id), state_dir="poor-state", storage="memory"),
        cwd=stopped_node.work,
    )
    # Assert
    assert_one_line_error(result, poor.address, "needs", "wei")
    assert not net.coordinator.has_joined(task_id, poor.address)


@pytest.mark.process_chain
@pytest.mark.kubo
def test_node_resumes_from_its_state_dir_after_the_failed_starts(stopped_node: StoppedNode) -> None:
    """After the failed starts above (file order), node 0 restarted correctly resumes: it does not
    train or commit round 0 again, aggregates with node 1, and the task completes on both."""
    # Execute
    net = stopped_node.net
    net.start_node(0)
    net.start_node(1)
    codes = net.wait_nodes(NODE_TIMEOUT)
    # Assert
    stdout = (stopped_node.state_dir / "stdout.log").read_text()
    assert codes == [0, 0], (codes, stdout[-2000:], (stopped_node.state_dir / "stderr.log").read_text()[-2000:])
    assert stdout.count("round 0: update committed") == 1, stdout
    assert "task 1 completed" in stdout
    assert (stopped_node.state_dir / "task-1" / "final-model.npy").exists()
    commits = net.coordinator.find_update_commits(net.task_id, 0)
    assert sorted(c.contributor for c in commits) == sorted(n.account.address for n in net.nodes)
