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


def test_error_answers_until_the_timeout_fail_with_the_last_answer() -> None:
    chain = EmbeddedChain(accounts=2)
    calls = answer_receipts_with_errors(chain.w3, failures=10**9)
    client = ChainClient(chain.w3, receipt_timeout=0.5)
    expected = r"not mined within 0.5 s; the node's last answer was an error: .*toJSON"
    with pytest.raises(TransactionFailedError, match=expected):
        client.deploy(dev_account(1), [], RETURNS_42)
    assert calls[0] >= 2
