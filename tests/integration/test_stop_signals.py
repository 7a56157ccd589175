"""Ctrl-C (SIGINT) and SIGTERM stop real processes that run kubo peers, cleanly.

Each test sends the signals to OS processes a user would run (``flchain node``, ``flchain simulate
--storage kubo``, ``flchain chain start``, ``scripts/local_network.py``) and checks what a user
relies on: the exit status (130 after SIGINT, 143 after SIGTERM, never a SIGKILL), the one stderr
line, the IPFS peer closed (its swarm port free again), the state directory kept, and a node
started again on that directory resuming without redoing its work.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fl_chain.chain.coordinator import RoundStatus, TaskStatus
from fl_chain.federation.localnet import NODE_STOP_TIMEOUT, LocalNetwork
from fl_chain.node.state import PHASE_FILE
from fl_chain.ports import free_port, port_in_use
from fl_chain.storage.kubo import KuboStorage
from tests.conftest import require_backend
from tests.helpers.faults import ENDED
from tests.helpers.federation_checks import check_every_finalized_round
from tests.helpers.task_files import write_task_file

pytestmark = [pytest.mark.kubo, pytest.mark.process_chain, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
#: Seconds a stopped process may take to exit: generous for a loaded machine (a user expects about 1 s).
EXIT_BOUND = NODE_STOP_TIMEOUT
#: Seconds to wait for a run to reach the state where a test stops it.
PROGRESS_BOUND = 300.0


def swarm_port(multiaddrs: tuple[str, ...]) -> int:
    """The TCP port of a node's registered loopback multiaddr."""
    match = re.search(r"/ip4/127\.0\.0\.1/tcp/(\d+)/", " ".join(multiaddrs))
    assert match, multiaddrs
    return int(match.group(1))


def stop(process: subprocess.Popen[bytes], signum: signal.Signals) -> tuple[int, float]:
    """Send ``signum`` and wait for the exit; its status and the seconds it took (SIGKILL after EXIT_BOUND)."""
    started = time.monotonic()
    process.send_signal(signum)
    try:
        status = process.wait(EXIT_BOUND)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"the process ignored {signum.name} for {EXIT_BOUND:.0f} s and had to be killed")
    return status, time.monotonic() - started


def wait_for(condition, what: str, timeout: float = PROGRESS_BOUND) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def test_node_stopped_by_sigterm_and_sigint_closes_its_peer_keeps_its_state_and_resumes(tmp_path: Path) -> None:
    """Node 3 gets SIGTERM right after committing its round-0 update, node 2 SIGINT in round 1's
    aggregation phase: each exits 143 / 130 with its interrupted line, its swarm port is free, its
    state directory is kept; started again, each resumes (node 3 does not commit round 0 twice),
    the task completes and every finalized round equals the FedAvg of its updates from IPFS."""
    require_backend("anvil")
    task_file = write_task_file(
        tmp_path / "task.toml",
        protocol={"rounds": 3, "partitions": 4, "replication": 2, "quorum": 2, "min_contributors": 2,
                  "update_duration": 90, "aggregation_duration": 45},
    )  # fmt: skip
    with LocalNetwork(
        tmp_path / "net",
        nodes=4,
        task_file=task_file,
        chain="anvil",
        block_time=0.2,
        poll_interval=0.2,
        fetch_timeout=5,
        linger=20,
        require_clean_stop=True,
        report=lambda m: None,
    ) as net:
        net.start()
        coordinator, task_id = net.coordinator, net.task_id

        def committed_update(node: int, round_: int) -> bool:
            address = net.nodes[node].account.address
            return any(c.contributor == address for c in coordinator.find_update_commits(task_id, round_))

        def participant(node: int):  # type: ignore[no-untyped-def]
            address = net.nodes[node].account.address
            return next(p for p in coordinator.get_participants(task_id) if p.account == address)

        # SIGTERM: node 3 just committed its round-0 update and said so (the chain can show the
        # commit a poll before the node reads its receipt; a stop in between is a different case).
        stdout_log = net.nodes[3].state_dir / "stdout.log"
        wait_for(
            lambda: committed_update(3, 0) and "round 0: update committed" in stdout_log.read_text(),
            "node 3's round-0 update",
        )
        port = swarm_port(participant(3).multiaddrs)
        status, seconds = stop(net.nodes[3].process, signal.SIGTERM)  # type: ignore[arg-type]
        assert status == 143, status
        assert "interrupted by SIGTERM" in (net.nodes[3].state_dir / "stderr.log").read_text()
        assert not port_in_use(port), "the stopped node's IPFS peer still holds its swarm port"
        assert (net.nodes[3].state_dir / PHASE_FILE).is_file() and (net.nodes[3].state_dir / "ipfs").is_dir()
        print(f"node 3 stopped {seconds:.2f} s after SIGTERM")
        net.start_node(3)

        # SIGINT: node 2 in round 1's aggregation phase, before its aggregates.
        def aggregating(node: int, round_: int) -> bool:
            if coordinator.get_task(task_id)[1].current_round != round_:
                return False
            info = coordinator.get_round(task_id, round_)
            address = net.nodes[node].account.address
            return info.status == RoundStatus.AGGREGATION and not any(
                c.aggregator == address for c in coordinator.find_aggregate_commits(task_id, round_)
            )

        wait_for(lambda: aggregating(2, 1), "round 1's aggregation")
        port = swarm_port(participant(2).multiaddrs)
        status, seconds = stop(net.nodes[2].process, signal.SIGINT)  # type: ignore[arg-type]
        assert status == 130, status
        assert "interrupted by SIGINT" in (net.nodes[2].state_dir / "stderr.log").read_text()
        assert not port_in_use(port)
        print(f"node 2 stopped {seconds:.2f} s after SIGINT")
        net.start_node(2)

        assert net.follow(timeout=PROGRESS_BOUND) == TaskStatus.COMPLETED
        _, task = coordinator.get_task(task_id)
        assert task.finalized_rounds == 3
        assert all(committed_update(n, task.current_round) for n in (2, 3)), "a restarted node did not contribute"
        stdout = stdout_log.read_text()
        assert stdout.count("round 0: update committed") == 1, "node 3 redid its round-0 update after the restart"
        with KuboStorage(tmp_path / "verifier-ipfs") as verifier:
            check_every_finalized_round(verifier, coordinator, task_id, _dimension(net))
        assert all(code in ENDED for code in net.end_nodes(timeout=PROGRESS_BOUND))
    assert net.forced_stops == []


def _dimension(net: LocalNetwork) -> int:
    """The model's size, from node 0's final model (saved after the task completed: waited for)."""
    import numpy as np

    wait_for(lambda: net.has_final_model(0), "node 0's final model")
    return int(np.load(net.nodes[0].state_dir / f"task-{net.task_id}" / "final-model.npy").size)


def test_simulate_with_kubo_peers_stops_on_ctrl_c(tmp_path: Path) -> None:
    """``flchain simulate --storage kubo`` (in-process kubo peers, started in the main thread) exits
    130 on Ctrl-C after a round, with its interrupted line and no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fl_chain.cli", "simulate", "--nodes", "2", "--rounds", "50", "--storage", "kubo",
         "--model", "logreg", "--out", str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(b"round "):
                break
        status, _ = stop(process, signal.SIGINT)
        stderr = process.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert status == 130, stderr
    assert "interrupted by SIGINT" in stderr and "Traceback" not in stderr, stderr


def test_chain_start_stops_on_sigterm_and_frees_its_port(tmp_path: Path) -> None:
    """``flchain chain start anvil`` stops its chain process on SIGTERM, exits 143, frees the port."""
    require_backend("anvil")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "fl_chain.cli", "chain", "start", "anvil", "--port", str(port), "--log-dir", "logs"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert "listening on" in process.stdout.readline().decode()
        status, _ = stop(process, signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert status == 143
    assert not port_in_use(port)


def test_local_network_script_stops_every_process_on_sigterm(tmp_path: Path) -> None:
    """``scripts/local_network.py`` on SIGTERM stops its node processes (each exits on SIGTERM) and
    its chain, then exits 143."""
    require_backend("ganache")
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "local_network.py"), "--nodes", "2", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        rpc = None
        for line in process.stdout:
            text = line.decode()
            rpc = rpc or re.search(r"at http://127\.0\.0\.1:(\d+)", text)
            if "nodes joined" in text:
                break
        assert rpc, "the script never printed its chain"
        status, _ = stop(process, signal.SIGTERM)
        stderr = process.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert status == 143, stderr
    for node in (0, 1):
        assert "interrupted by SIGTERM" in (out / f"node-{node}" / "stderr.log").read_text()
    assert not port_in_use(int(rpc.group(1)))
