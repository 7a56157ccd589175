"""One option picks the chain: ``embedded``, ``ganache``, ``anvil`` or any JSON-RPC URL."""

from __future__ import annotations

import os
from typing import Protocol

from web3 import HTTPProvider, Web3
from web3.middleware import ExtraDataToPOAMiddleware
from web3.types import RPCEndpoint

from fl_chain.chain.anvil import Anvil
from fl_chain.chain.client import ChainClient
from fl_chain.chain.embedded import EmbeddedChain
from fl_chain.chain.ganache import Ganache
from fl_chain.chain.local_process import LocalChainProcess
from fl_chain.errors import ChainError, ConfigError

BACKENDS = ("embedded", "ganache", "anvil")
#: Seconds an HTTP JSON-RPC request may take.
RPC_TIMEOUT = 30.0


class Chain(Protocol):
    """What every chain backend offers."""

    name: str
    w3: Web3
    rpc_url: str | None

    def increase_time(self, seconds: int) -> None:
        """Move chain time forward and mine a block (development chains only)."""

    def close(self) -> None:
        """Release what the backend started."""


def http_provider(url: str) -> HTTPProvider:
    """A JSON-RPC connection to ``url`` that asks for the chain id once.

    web3 checks the chain id of every call and transaction it builds (an ``eth_chainId`` request
    each time: a third of a node's requests); an endpoint's chain id does not change, so web3's
    request cache keeps that one answer. Nothing else is cached.
    """
    return HTTPProvider(
        url,
        request_kwargs={"timeout": RPC_TIMEOUT},
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
    )


class ProcessChain:
    """A ganache or anvil process owned by this object."""

    def __init__(self, process: LocalChainProcess) -> None:
        self.process = process
        self.name = process.name
        process.start()
        self.rpc_url: str | None = process.rpc_url
        self.w3 = Web3(http_provider(process.rpc_url))

    def increase_time(self, seconds: int) -> None:
        """``evm_increaseTime`` then ``evm_mine``."""
        _rpc(self.w3, "evm_increaseTime", [int(seconds)])
        _rpc(self.w3, "evm_mine", [])

    def mine(self) -> None:
        """Mine one empty block."""
        _rpc(self.w3, "evm_mine", [])

    def close(self) -> None:
        """Stop the chain process."""
        self.process.stop()


class RemoteChain:
    """Any JSON-RPC endpoint (geth, besu, a shared anvil): nothing is started or stopped."""

    name = "rpc"

    def __init__(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"RPC URL {url!r} must start with http:// or https://")
        self.rpc_url: str | None = url
        self.w3 = Web3(http_provider(url))
        # Clique/IBFT chains (geth, besu) put more than 32 bytes in extraData.
        self.w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)

    def increase_time(self, seconds: int) -> None:
        """Only development nodes can travel in time."""
        _rpc(self.w3, "evm_increaseTime", [int(seconds)])
        _rpc(self.w3, "evm_mine", [])

    def close(self) -> None:
        """Nothing was started."""


def _rpc(w3: Web3, method: str, params: list[object]) -> None:
    response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    if "error" in response:
        raise ChainError(f"{method} failed: {response['error']}")


def open_chain(
    backend: str = "embedded",
    *,
    accounts: int = 10,
    port: int | None = None,
    chain_id: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    block_time: float | None = None,
) -> Chain:
    """Open a chain: start the embedded one or a local process, or connect to a URL.

    ``backend`` is ``embedded``, ``ganache``, ``anvil`` or an ``http(s)://`` JSON-RPC URL.
    Local backends fund ``accounts`` development accounts (see :func:`dev_accounts`).
    """
    if backend == "embedded":
        return EmbeddedChain(accounts=accounts)
    if backend in ("ganache", "anvil"):
        cls = Ganache if backend == "ganache" else Anvil
        return ProcessChain(
            cls(
                port=port,
                chain_id=chain_id,
                accounts=accounts,
                data_dir=data_dir,
                log_dir=log_dir,
                block_time=block_time,
            )
        )
    if backend.startswith(("http://", "https://")):
        return RemoteChain(backend)
    raise ConfigError(f"unknown chain {backend!r}; use one of {', '.join(BACKENDS)} or an http:// URL")


def connect(chain: Chain) -> ChainClient:
    """A :class:`ChainClient` on ``chain`` (checks that it answers)."""
    return ChainClient(chain.w3)
