"""Shared fixtures: chains of every backend, funded accounts, a fresh FLCoordinator per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.types import RPCEndpoint

from fl_chain.chain import Chain, ChainClient, Coordinator, TaskConfig, connect, dev_accounts, open_chain
from fl_chain.chain.anvil import ANVIL_BINARY, Anvil
from fl_chain.chain.backends import ProcessChain
from fl_chain.chain.embedded import EmbeddedChain
from fl_chain.chain.ganache import GANACHE_CLI, Ganache
from tests.helpers.cli_runner import InProcessCli

#: Funded development accounts on every test chain: index 0 is the operator.
TEST_ACCOUNTS = 12
CHAIN_BACKENDS = ("embedded", "ganache", "anvil")


#: The backend a contract test runs on when it checks the contract's own rules (marked
#: ``chain_backends(CONTRACT_RULES_BACKEND)``): the same bytecode runs on every EVM, so those rules are
#: checked once, on the fastest real chain process; the tests of the task lifecycle, the reverts,
#: events, chain time and the operator still run on every backend, which is what can differ.
CONTRACT_RULES_BACKEND = "anvil"


def _backend_params(names: tuple[str, ...]) -> list[Any]:
    params: list[Any] = []
    for name in names:
        marks = [] if name == "embedded" else [pytest.mark.process_chain]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses the ``chain`` fixture on every backend, or on those its
    ``chain_backends`` mark names; a test that parametrizes ``chain`` itself keeps its own values."""
    if "chain" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if "chain" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return
    mark = metafunc.definition.get_closest_marker("chain_backends")
    backends = tuple(mark.args) if mark else CHAIN_BACKENDS
    unknown = set(backends) - set(CHAIN_BACKENDS)
    if unknown:
        raise pytest.UsageError(f"chain_backends names unknown backends {sorted(unknown)}; use {CHAIN_BACKENDS}")
    metafunc.parametrize("chain", _backend_params(backends), indirect=True, scope="module")


def require_backend(name: str) -> None:
    """Fail (not skip) when a process chain is not installed: CI installs it from the lock file."""
    if name == "ganache" and not GANACHE_CLI.exists():
        pytest.fail(f"ganache is not installed at {GANACHE_CLI}; run npm ci --prefix ganache")
    if name == "anvil" and not ANVIL_BINARY.exists():
        pytest.fail(f"anvil is not installed at {ANVIL_BINARY}; run npm ci --prefix ganache")


@pytest.fixture(scope="module")
def chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """A chain of each backend (see :func:`pytest_generate_tests`), started once per test module and
    stopped after it."""
    require_backend(request.param)
    log_dir = tmp_path_factory.mktemp(f"{request.param}-logs")
    opened = open_chain(request.param, accounts=TEST_ACCOUNTS, log_dir=log_dir)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def ganache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessChain]:
    """A real ganache process for tests that talk to it over JSON-RPC from other processes."""
    require_backend("ganache")
    process_chain = ProcessChain(Ganache(accounts=TEST_ACCOUNTS, log_dir=tmp_path_factory.mktemp("ganache-logs")))
    try:
        yield process_chain
    finally:
        process_chain.close()


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessChain]:
    """A real anvil process for the module's tests that reach a chain by URL (the CLI, node processes)."""
    require_backend("anvil")
    process_chain = ProcessChain(Anvil(accounts=TEST_ACCOUNTS, log_dir=tmp_path_factory.mktemp("anvil-logs")))
    try:
        yield process_chain
    finally:
        process_chain.close()


@pytest.fixture()
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> InProcessCli:
    """``flchain`` in this process, as its own process would run it: ``run_cli(*args, cwd=...)``."""
    return InProcessCli(capsys, monkeypatch)


@pytest.fixture(scope="module")
def client(chain: Chain) -> ChainClient:
    """A client on the module's chain."""
    return connect(chain)


@pytest.fixture(scope="session")
def accounts() -> list[LocalAccount]:
    """The funded development accounts; ``accounts[0]`` deploys and operates."""
    return dev_accounts(TEST_ACCOUNTS)


@pytest.fixture()
def operator(accounts: list[LocalAccount]) -> LocalAccount:
    """The operator account."""
    return accounts[0]


def take_snapshot(chain: Chain) -> Any:
    """Mark ``chain``'s current state (blocks, balances, nonces, chain time) to come back to.

    The embedded chain keeps its snapshots; ganache and anvil drop one when they revert to it.
    """
    if isinstance(chain, EmbeddedChain):
        return chain.tester.take_snapshot()
    response = chain.w3.provider.make_request(RPCEndpoint("evm_snapshot"), [])
    if "result" not in response:
        raise AssertionError(f"evm_snapshot failed on {chain.name}: {response.get('error')}")
    return response["result"]


def revert_to_snapshot(chain: Chain, snapshot: Any) -> None:
    """Bring ``chain`` back to ``snapshot``: later blocks, and the time moved since, are gone."""
    if isinstance(chain, EmbeddedChain):
        chain.tester.revert_to_snapshot(snapshot)
        return
    response = chain.w3.provider.make_request(RPCEndpoint("evm_revert"), [snapshot])
    if response.get("result") is not True:
        raise AssertionError(f"evm_revert to {snapshot!r} failed on {chain.name}: {response}")


class DeployedCoordinator:
    """One FLCoordinator deployment on a chain, and a snapshot of the chain right after it.

    :meth:`fresh` reverts the chain to that snapshot, so every caller starts from the state a new
    deployment has (same address, deploy block and nonces; no tasks; chain time as it was), at the
    cost of one revert instead of a deployment.
    """

    def __init__(self, chain: Chain, client: ChainClient, operator: LocalAccount) -> None:
        self.chain = chain
        self.client = client
        self.deployer = operator.address
        deployed = Coordinator.deploy(client, operator)
        self.address = deployed.address
        self.artifact = deployed.artifact
        self.deploy_block = deployed.deploy_block
        self._snapshot = take_snapshot(chain)

    def fresh(self) -> Coordinator:
        """The chain back at the deployment's snapshot, and a new :class:`Coordinator` on it (its
        caches empty)."""
        revert_to_snapshot(self.chain, self._snapshot)
        self._snapshot = take_snapshot(self.chain)
        head = self.client.block_number()
        if head != self.deploy_block:
            raise AssertionError(f"after the revert the chain head is block {head}, not {self.deploy_block}")
        contract = self.client.contract(self.address, self.artifact.abi)
        return Coordinator(self.client, contract, self.artifact, deploy_block=self.deploy_block)


@pytest.fixture(scope="module")
def deployed_coordinator(chain: Chain, client: ChainClient, accounts: list[LocalAccount]) -> DeployedCoordinator:
    """One FLCoordinator deployment per module and chain backend, deployed by ``accounts[0]``."""
    return DeployedCoordinator(chain, client, accounts[0])


@pytest.fixture()
def coordinator(deployed_coordinator: DeployedCoordinator, operator: LocalAccount) -> Coordinator:
    """A FLCoordinator as freshly deployed by ``operator``, so tests never share state: the module's
    deployment with the chain reverted to the snapshot taken right after it."""
    assert operator.address == deployed_coordinator.deployer, "the module's deployment has another operator"
    return deployed_coordinator.fresh()


def task_config(**overrides: Any) -> TaskConfig:
    """A valid task configuration (P=4, r=2, q=2) with ``overrides`` applied."""
    values: dict[str, Any] = {
        "manifest_digest": b"\x42" * 32,
        "partitions": 4,
        "replication": 2,
        "quorum": 2,
        "min_contributors": 2,
        "update_duration": 600,
        "aggregation_duration": 600,
        "rounds": 3,
        "open_admission": False,
    }
    values.update(overrides)
    return TaskConfig(**values)


def digest(label: str | int) -> bytes:
    """A recognizable non-zero 32-byte digest for tests."""
    import hashlib

    return hashlib.sha256(str(label).encode()).digest()


def multiaddr(i: int) -> str:
    """A loopback IPFS multiaddr for participant ``i`` (never dialled in contract tests)."""
    return f"/ip4/127.0.0.1/tcp/{40000 + i}/p2p/12D3KooWTestPeer{i:04d}"


#: Tests that each take minutes (whole federations of node processes): started first, so parallel
#: workers (pytest -n) overlap them with the many short tests instead of waiting for them at the end.
_LONG_FIRST = ("integration", "kubo", "long")
#: Test files whose tests run networks of ``flchain node`` processes, in two groups: each group's
#: tests run one after another in one worker, so at most two such networks (plus test_bad_input's)
#: share the 2 cores. Their phases end when everyone committed and their deadlines are long enough
#: for a loaded machine, so a busy core slows them down without making rounds fail.
_NODE_NETWORK_GROUPS = {
    "test_integration_network.py": "node-networks-a",
    "test_attack_hostile_network.py": "node-networks-a",
    "test_faults.py": "node-networks-b",
    "test_stop_signals.py": "node-networks-b",
}
#: Module-scoped fixtures that start a network: the tests using one share a worker, so it starts once.
_SHARED_NETWORK_FIXTURES = ("stopped_node",)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns xdist_group marks into worker groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the long tests first, keeping the collection order within each group (sorting is stable);
    with ``--dist loadgroup``, run the node-process networks in two workers, and keep each module's tests
    on one chain backend in one worker, so that worker starts that ganache or anvil once, as a serial
    run does."""
    items.sort(key=lambda item: 0 if any(item.get_closest_marker(m) for m in _LONG_FIRST) else 1)
    # Group names never end in "]": xdist's loadgroup ignores a group when the node id's last "]"
    # comes after its "@" (so "module[anvil]" would put every test of a group on any worker).
    for item in items:
        if item.path.name in _NODE_NETWORK_GROUPS:
            item.add_marker(pytest.mark.xdist_group(_NODE_NETWORK_GROUPS[item.path.name]))
            continue
        shared = [name for name in _SHARED_NETWORK_FIXTURES if name in getattr(item, "fixturenames", ())]
        if shared:
            item.add_marker(pytest.mark.xdist_group(f"{item.nodeid.split('::')[0]}:{shared[0]}"))
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "chain" in callspec.params:
            item.add_marker(pytest.mark.xdist_group(f"{item.nodeid.split('::')[0]}:{callspec.params['chain']}"))
