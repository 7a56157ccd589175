"""ChainClient's receipt wait: transient error answers are retried, a stuck transaction times out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from web3 import Web3
from web3.middleware import Web3Middleware

from fl_chain.chain.client import ChainClient
from fl_chain.chain.embedded import EmbeddedChain
from fl_chain.chain.keys import dev_account
from fl_chain.errors import TransactionFailedError

#: Init code of a contract whose runtime code returns 42.
RETURNS_42 = "0x600a600c600039600a6000f3602a60005260206000f3"
#: The answer ganache 7.9.2 gave a node between storing a mined transaction and its receipt.
GANACHE_RECEIPT_RACE = {
    "message": "Cannot read properties of undefined (reading 'toJSON')",
    "stack": (
        "TypeError: Cannot read properties of undefined (reading 'toJSON')\n"
        "    at EthereumApi.eth_getTransactionReceipt"
    ),
    "code": -32700,
}


def answer_receipts_with_errors(w3: Web3, failures: int) -> list[int]:
    """Make the next ``failures`` receipt requests on ``w3`` answer with ganache's race error;
    returns a one-item list counting the receipt requests made."""
    calls = [0]

    class ErrorAnswers(Web3Middleware):
        def wrap_make_request(self, make_request: Callable[..., Any]) -> Callable[..., Any]:
            def middleware(method: str, params: Any) -> Any:
                if method == "eth_getTransactionReceipt":
                    calls[0] += 1
                    if calls[0] <= failures:
                        return {"jsonrpc": "2.0", "id": 1, "error": GANACHE_RECEIPT_RACE}
                return make_request(method, params)

            return middleware

    w3.middleware_onion.inject(ErrorAnswers, layer=0)
    return calls


def test_a_transient_error_answer_while_waiting_for_a_receipt_is_retried() -> None:
    """One error answer to eth_getTransactionReceipt killed a node in CI; the wait now goes on."""
    chain = EmbeddedChain(accounts=2)
    calls = answer_receipts_with_errors(chain.w3, failures=3)
    receipt = ChainClient(chain.w3, receipt_timeout=30).deploy(dev_account(1), [], RETURNS_42)
    assert calls[0] == 4
    assert receipt["status"] == 1
    assert chain.w3.eth.get_code(receipt["contractAddress"])


def test_receipt_polls_start_at_5_ms_and_double_up_to_a_tenth_of_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """An instamine chain has the receipt milliseconds after the send: the wait does not sleep 0.1 s
    first (that was 0.1 s per transaction, 100 s per round of 1,000 simulated nodes)."""
    import fl_chain.chain.client as client_module

    chain = EmbeddedChain(accounts=2)
    answer_receipts_with_errors(chain.w3, failures=7)
    sleeps: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", sleeps.append)
    ChainClient(chain.w3, receipt_timeout=30).deploy(dev_account(1), [], RETURNS_42)
    assert sleeps == [0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1]


@pytest.mark.parametrize(
    "closing",
    [
        {"message": "Database is not open", "type": "ReadError", "code": -32700},
        {"message": "Cannot process request, Ganache is disconnected.", "code": -32700},
    ],
    ids=["database-not-open", "ganache-disconnected"],
)
def test_a_chain_closing_its_database_is_unreachable_not_a_refusal(closing: dict[str, Any]) -> None:
    """ganache answers "Database is not open", then "Ganache is disconnected", while it stops; a node
    waits that out (it retries ChainUnreachableError) instead of exiting on a refused request (both
    seen in the ganache restart test)."""
    from fl_chain.errors import ChainUnreachableError

    chain = EmbeddedChain(accounts=1)

    class Closing(Web3Middleware):
        def wrap_make_request(self, make_request: Callable[..., Any]) -> Callable[..., Any]:
            def middleware(method: str, params: Any) -> Any:
                if method == "eth_blockNumber":
                    return {"jsonrpc": "2.0", "id": 1, "error": closing}
                return make_request(method, params)

            return middleware

    client = ChainClient(chain.w3)
    chain.w3.middleware_onion.inject(Closing, layer=0)
    with pytest.raises(ChainUnreachableError, match="shutting down"):
        client.block_number()


def test_error_answers_until_the_timeout_fail_with_the_last_answer() -> None:
    chain = EmbeddedChain(accounts=2)
    calls = answer_receipts_with_errors(chain.w3, failures=10**9)
    client = ChainClient(chain.w3, receipt_timeout=0.5)
    expected = r"not mined within 0.5 s; the node's last answer was an error: .*toJSON"
    with pytest.raises(TransactionFailedError, match=expected):
        client.deploy(dev_account(1), [], RETURNS_42)
    assert calls[0] >= 2


def test_a_sole_writer_keeps_views_until_it_writes_or_the_chain_moves() -> None:
    """With ``assume_sole_writer`` a view is read once per chain state: this client's transactions
    and ``chain_moved`` (a time jump) drop what was kept; another writer's change is not seen until
    then, which is why only a simulation's own chain uses it."""
    from fl_chain.chain.coordinator import Coordinator

    chain = EmbeddedChain(accounts=3)
    operator, member, outsider = (dev_account(i) for i in range(3))
    coordinator = Coordinator.deploy(ChainClient(chain.w3), operator)
    coordinator.client.assume_sole_writer()
    calls = count_requests(chain.w3, "eth_call")
    assert not coordinator.is_admitted(member.address)
    assert not coordinator.is_admitted(member.address)
    assert calls[0] == 1  # the second read was kept
    coordinator.admit(operator, [member.address])  # this client's write drops the kept views
    assert coordinator.is_admitted(member.address)
    assert not coordinator.is_admitted(outsider.address)
    other = Coordinator.at(ChainClient(chain.w3), coordinator.address)
    other.admit(operator, [outsider.address])
    assert not coordinator.is_admitted(outsider.address)  # kept: another writer is not expected
    coordinator.client.chain_moved()
    assert coordinator.is_admitted(outsider.address)


def count_requests(w3: Web3, method: str) -> list[int]:
    """Count the ``method`` requests that reach the provider of ``w3`` from now on."""
    calls = [0]

    class Counter(Web3Middleware):
        def wrap_make_request(self, make_request: Callable[..., Any]) -> Callable[..., Any]:
            def middleware(name: str, params: Any) -> Any:
                if name == method:
                    calls[0] += 1
                return make_request(name, params)

            return middleware

    w3.middleware_onion.inject(Counter, layer=0)
    return calls
