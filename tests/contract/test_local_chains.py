"""The ganache and anvil launchers: loopback only, deterministic accounts, persistence, clean stop."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from fl_chain.chain import Coordinator, dev_account
from fl_chain.chain.anvil import Anvil
from fl_chain.chain.backends import ProcessChain
from fl_chain.chain.client import ChainClient
from fl_chain.chain.ganache import Ganache
from fl_chain.chain.local_process import LocalChainProcess
from fl_chain.errors import ChainLaunchError
from tests.conftest import require_backend

pytestmark = pytest.mark.process_chain
LAUNCHERS = [pytest.param(Ganache, id="ganache"), pytest.param(Anvil, id="anvil")]


def listening_addresses(pid: int) -> set[str]:
    """Local addresses the process ``pid`` listens on (from ss)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if f"pid={pid}," in line}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_chain_listens_on_loopback_only_and_funds_dev_accounts(
    launcher: type[LocalChainProcess], tmp_path: Path
) -> None:
    """The process binds 127.0.0.1 only, reports its chain id and funds the development accounts."""
    require_backend(launcher.name)
    with launcher(accounts=3, log_dir=tmp_path) as process:
        assert process.process is not None
        assert listening_addresses(process.process.pid) == {"127.0.0.1"}
        client = ChainClient(_w3(process))
        assert client.chain_id == launcher.default_chain_id
        assert client.balance(dev_account(2).address) == 10_000 * 10**18
        assert client.balance(dev_account(3).address) == 0
    assert not process.running
    assert (tmp_path / f"{launcher.name}.stdout.log").exists()


def _w3(process: LocalChainProcess):  # type: ignore[no-untyped-def]
    from web3 import HTTPProvider, Web3

    return Web3(HTTPProvider(process.rpc_url))


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_port_in_use_is_a_launch_error(launcher: type[LocalChainProcess]) -> None:
    """Asking for a port that is taken fails before starting anything, naming the port."""
    require_backend(launcher.name)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ChainLaunchError, match=f"port {port} .* in use"):
            launcher(port=port)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_data_dir_persists_the_contract_across_restarts(launcher: type[LocalChainProcess], tmp_path: Path) -> None:
    """A coordinator deployed before a restart with the same data dir is still there after it."""
    require_backend(launcher.name)
    data = tmp_path / "data"
    first = ProcessChain(launcher(accounts=2, data_dir=data, log_dir=tmp_path))
    try:
        client = ChainClient(first.w3)
        coordinator = Coordinator.deploy(client, dev_account(0))
        coordinator.admit(dev_account(0), [dev_account(1).address])
    finally:
        first.close()
    second = ProcessChain(launcher(accounts=2, data_dir=data, log_dir=tmp_path))
    try:
        again = Coordinator.at(ChainClient(second.w3), coordinator.address)
        assert again.is_admitted(dev_account(1).address)
    finally:
        second.close()


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_sub_second_block_time_mines_blocks_on_wall_time(launcher: type[LocalChainProcess], tmp_path: Path) -> None:
    """A 0.2 s block time (``flchain chain start --block-time 0.2``) gives several blocks per second
    whose timestamps stay on wall time (they do not run ahead by a second per block)."""
    import time

    require_backend(launcher.name)
    with launcher(accounts=1, log_dir=tmp_path, block_time=0.2) as process:
        client = ChainClient(_w3(process))
        first = client.block_number()
        while client.block_number() < first + 10:  # progress, not a wall-time assumption
            time.sleep(0.05)
        assert client.block_timestamp() <= time.time() + 1
        # A node waiting for work wakes on the next block instead of at its poll interval.
        from types import SimpleNamespace

        from fl_chain.node.runtime import Node, NodeOptions

        waiter = SimpleNamespace(
            options=NodeOptions(poll_interval=60.0, block_poll_interval=0.02),
            coordinator=SimpleNamespace(client=client),
            _block_watch=None,
        )
        before = client.block_number()
        started = time.monotonic()
        Node._wait_for_next_block(waiter, lambda: False)  # type: ignore[arg-type]
        assert client.block_number() > before
        assert time.monotonic() - started < 60.0  # it returned on the block, not at the poll interval
        # Having seen blocks come, it learned their interval, and still wakes on the next one.
        for _ in range(3):
            before = client.block_number()
            Node._wait_for_next_block(waiter, lambda: False)  # type: ignore[arg-type]
            assert client.block_number() > before
        assert waiter._block_watch.interval is not None  # (its value depends on the machine's load)


def test_a_chain_connection_asks_for_the_chain_id_once(tmp_path: Path) -> None:
    """web3 checks the chain id of every call it builds; the connection keeps the one answer, so
    only the first calls cost an ``eth_chainId`` request on the wire."""
    import json

    require_backend("anvil")
    chain = ProcessChain(Anvil(accounts=2, log_dir=tmp_path))
    try:
        sent: list[str] = []
        manager = chain.w3.provider._request_session_manager  # type: ignore[attr-defined]
        post = manager.make_post_request

        def counting(uri, data, **kwargs):  # type: ignore[no-untyped-def]
            sent.append(json.loads(data)["method"])
            return post(uri, data, **kwargs)

        manager.make_post_request = counting
        coordinator = Coordinator.deploy(ChainClient(chain.w3), dev_account(0))
        for _ in range(5):
            coordinator.is_admitted(dev_account(1).address)
        assert sent.count("eth_call") >= 5
        assert sent.count("eth_chainId") <= 2, sent  # web3 asks in two forms; then never again
    finally:
        chain.close()
