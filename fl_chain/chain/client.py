"""Signed transactions, calls and events over web3.py, with reverts turned into our errors.

Reads and writes look different on purpose: :meth:`ChainClient.call` returns values,
:meth:`ChainClient.transact` signs with a local key, sends, waits and returns the receipt.
No node-side unlocked account is ever used.
"""

from __future__ import annotations

import ast
import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import function_abi_to_4byte_selector
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import Contract, ContractFunction
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TransactionNotFound,
    Web3RPCError,
)

from fl_chain.chain.views import abi_type
from fl_chain.errors import (
    ChainError,
    ChainUnreachableError,
    ContractRevertError,
    InsufficientFundsError,
    TransactionFailedError,
)

T = TypeVar("T")

#: Seconds to wait for a transaction receipt before giving up.
RECEIPT_TIMEOUT = 120.0
#: Longest wait between two receipt polls (web3's own ``wait_for_transaction_receipt`` uses 0.1 s).
RECEIPT_POLL_INTERVAL = 0.1
#: First wait between receipt polls, doubled after each miss up to RECEIPT_POLL_INTERVAL: a chain that
#: mines on every transaction (anvil, ganache) has the receipt a few milliseconds after the send.
RECEIPT_FIRST_POLL = 0.005
#: Gas limit = estimate * GAS_MARGIN + GAS_HEADROOM. The state can change between estimate and
#: execution (the commit that finalizes a round also starts the next one), and unused gas is not
#: charged, so the limit is generous.
GAS_MARGIN = 1.5
GAS_HEADROOM = 250_000


@dataclass(frozen=True)
class _ErrorSpec:
    name: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]


class RevertDecoder:
    """Maps revert data to the contract's custom errors by their 4-byte selector."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        self._errors: dict[bytes, _ErrorSpec] = {}
        for item in abi:
            if item.get("type") != "error":
                continue
            selector = function_abi_to_4byte_selector(cast(Any, item))
            self._errors[selector] = _ErrorSpec(
                name=item["name"],
                arg_names=tuple(i["name"] for i in item["inputs"]),
                arg_types=tuple(abi_type(i) for i in item["inputs"]),
            )

    def decode(self, data: bytes | str | None) -> ContractRevertError | None:
        """The custom error encoded in ``data``, or ``None`` if it is not one of ours."""
        if data is None:
            return None
        raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else data
        if len(raw) < 4 or raw[:4] not in self._errors:
            return None
        spec = self._errors[raw[:4]]
        try:
            values = abi_decode(list(spec.arg_types), raw[4:])
        except Exception:  # noqa: BLE001 - malformed payload: report the name alone
            values = ()
        values = tuple(Web3.to_checksum_address(v) if t == "address" else v for t, v in zip(spec.arg_types, values))
        return ContractRevertError(spec.name, dict(zip(spec.arg_names, values)))


def _revert_data(exc: BaseException) -> bytes | str | None:
    """Pull the revert payload out of whatever web3 or the provider raised.

    web3 puts it in ``exc.data`` (hex); JSON-RPC nodes nest it in the error object; eth-tester
    raises ``TransactionFailed("execution reverted: b'...'")`` with the bytes' repr in the text.
    """
    data = getattr(exc, "data", None)
    if isinstance(data, (bytes, str)) and data:
        return data
    if isinstance(data, dict):
        return _revert_data_from_dict(data)
    for arg in exc.args:
        if isinstance(arg, bytes):
            return arg
        if isinstance(arg, dict):
            found = _revert_data_from_dict(arg)
            if found:
                return found
        if isinstance(arg, str):
            if arg.startswith("0x") and len(arg) >= 10:
                return arg
            marker = "execution reverted: "
            if arg.startswith((marker + "b'", marker + 'b"')):
                try:
                    value = ast.literal_eval(arg[len(marker) :])
                except (ValueError, SyntaxError):
                    return None
                return value if isinstance(value, bytes) else None
    return None


def _revert_data_from_dict(error: dict[str, Any]) -> str | None:
    if isinstance(error.get("result"), str):  # ganache 7: {"result": "0x...", "reason": ...}
        return str(error["result"])
    inner = error.get("data")
    if isinstance(inner, str):
        return inner
    if isinstance(inner, dict):
        if isinstance(inner.get("data"), str):
            return str(inner["data"])
        for value in inner.values():  # ganache 7: {"data": {"0xhash": {"return": "0x..."}}}
            if isinstance(value, dict) and isinstance(value.get("return"), str):
                return str(value["return"])
    return None


class ChainClient:
    """One connection to an Ethereum node, used by every part of fl-chain that touches the chain."""

    #: Results kept while the chain cannot have moved (see :meth:`assume_sole_writer`); None: none kept.
    _views: dict[tuple[Any, ...], Any] | None = None

    def __init__(self, w3: Web3, *, receipt_timeout: float = RECEIPT_TIMEOUT) -> None:
        self.w3 = w3
        self.receipt_timeout = receipt_timeout
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        try:
            self.chain_id = int(w3.eth.chain_id)
        except Exception as exc:  # noqa: BLE001 - any transport failure means unreachable
            raise ChainUnreachableError(
                f"no Ethereum JSON-RPC answer at {_endpoint(w3)} ({exc.__class__.__name__}); "
                "is the chain running and the URL right?"
            ) from None

    # -- reads ----------------------------------------------------------------------------------

    def call(self, fn: ContractFunction, *, decoder: RevertDecoder | None = None, sender: str | None = None) -> Any:
        """Execute a view (or simulate a write) through web3's contract layer and return its value."""
        try:
            return fn.call({"from": sender} if sender else {})
        except Exception as exc:  # noqa: BLE001
            raise self._translate(exc, decoder) from None

    def call_data(
        self, to: str, data: bytes, *, decoder: RevertDecoder | None = None, sender: str | None = None
    ) -> bytes:
        """``eth_call`` of raw call ``data`` to contract ``to`` at the latest block; the returned bytes."""
        request: dict[str, Any] = {"to": to, "data": data, **({"from": sender} if sender else {})}
        return self.read(
            lambda: bytes(self.w3.eth.call(cast(Any, request))), decoder=decoder, keep=("call", to, data, sender)
        )

    def assume_sole_writer(self) -> None:
        """Keep view results until this client sends a transaction or :meth:`chain_moved` is called.

        Only for a chain that this process alone writes to and mines (a simulation's own anvil or
        embedded chain, whose blocks come only from transactions and the runner's time jumps):
        there a view's result cannot change in between, and a simulation's nodes read the same
        views many times per block. Never for a chain other processes use.
        """
        self._views = {}

    def chain_moved(self) -> None:
        """A block was made without a transaction of this client (a time jump): drop kept views."""
        if self._views is not None:
            self._views = {}

    def read(
        self, request: Callable[[], T], *, decoder: RevertDecoder | None = None, keep: tuple[Any, ...] | None = None
    ) -> T:
        """Run a read against the chain; a lost connection becomes ChainUnreachableError (which
        callers retry), any other failure one of our ChainErrors, never a raw transport error.

        ``keep``: a key naming what is read; a sole writer (:meth:`assume_sole_writer`) keeps the
        answer under it until the chain moves.
        """
        if keep is not None and self._views is not None and keep in self._views:
            return cast(T, copy.deepcopy(self._views[keep]))
        try:
            result = request()
        except Exception as exc:  # noqa: BLE001
            raise self._translate(exc, decoder) from None
        if keep is not None and self._views is not None:
            self._views[keep] = copy.deepcopy(result)
        return result

    def balance(self, address: str) -> int:
        """Balance of ``address`` in wei."""
        return int(self.read(lambda: self.w3.eth.get_balance(Web3.to_checksum_address(address))))

    def code_at(self, address: str) -> bytes:
        """Runtime bytecode at ``address`` (empty for an account without code)."""
        return bytes(self.read(lambda: self.w3.eth.get_code(Web3.to_checksum_address(address))))

    def block_number(self) -> int:
        """Number of the latest block."""
        return int(self.read(lambda: self.w3.eth.block_number))

    def block_timestamp(self) -> int:
        """Timestamp of the latest block."""
        return int(self.read(lambda: self.w3.eth.get_block("latest")["timestamp"], keep=("block_timestamp",)))

    # -- writes ---------------------------------------------------------------------------------

    def transact(
        self,
        account: LocalAccount,
        fn: ContractFunction,
        *,
        decoder: RevertDecoder | None = None,
        value: int = 0,
    ) -> dict[str, Any]:
        """Sign ``fn`` with ``account``'s key, send it, wait for the receipt and return it.

        Raises
        ------
        ContractRevertError
            The contract rejected the call (checked before sending, and again after a revert).
        InsufficientFundsError
            ``account`` cannot pay for the gas.
        TransactionFailedError
            The transaction reverted for another reason or no receipt came in time.
        """
        with self._lock(account.address):
            tx_params: dict[str, Any] = {"from": account.address, "value": value}
            try:
                gas = fn.estimate_gas(cast(Any, tx_params))
            except Exception as exc:  # noqa: BLE001
                raise self._translate(exc, decoder) from None
            tx = dict(fn.build_transaction(cast(Any, self._fill(account, tx_params, gas))))
            try:
                return self._send(account, tx, decoder, fn)
            finally:
                self.chain_moved()

    def deploy(self, account: LocalAccount, abi: list[dict[str, Any]], bytecode: str) -> dict[str, Any]:
        """Deploy a contract from ``account``; returns the receipt (``contractAddress`` set)."""
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        constructor = factory.constructor()
        with self._lock(account.address):
            tx_params: dict[str, Any] = {"from": account.address}
            try:
                gas = constructor.estimate_gas(tx_params)
            except Exception as exc:  # noqa: BLE001
                raise self._translate(exc, RevertDecoder(abi)) from None
            tx = constructor.build_transaction(self._fill(account, tx_params, gas))
            try:
                receipt = self._send(account, tx, RevertDecoder(abi), None)
            finally:
                self.chain_moved()
        if not receipt.get("contractAddress"):
            raise TransactionFailedError("deployment receipt has no contract address")
        return receipt

    def _fill(self, account: LocalAccount, params: dict[str, Any], gas: int) -> dict[str, Any]:
        gas_limit = int(gas * GAS_MARGIN) + GAS_HEADROOM
        block_gas_limit = int(self.read(lambda: self.w3.eth.get_block("latest")["gasLimit"]))
        gas_price = int(self.read(lambda: self.w3.eth.gas_price))
        needed = gas_limit * gas_price + int(params.get("value", 0))
        have = self.balance(account.address)
        if have < needed:
            raise InsufficientFundsError(
                f"account {account.address} has {have} wei but needs {needed} wei for gas; "
                "fund it from the operator or a faucet account"
            )
        return {
            **params,
            "gas": min(gas_limit, block_gas_limit),
            "gasPrice": gas_price,
            "nonce": self.read(lambda: self.w3.eth.get_transaction_count(account.address, "pending")),
            "chainId": self.chain_id,
        }

    def _send(
        self,
        account: LocalAccount,
        tx: dict[str, Any],
        decoder: RevertDecoder | None,
        fn: ContractFunction | None,
    ) -> dict[str, Any]:
        signed = account.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:  # noqa: BLE001
            raise self._translate(exc, decoder) from None
        receipt = self._wait_for_receipt(tx_hash, decoder)
        if receipt["status"] != 1:
            raise self._explain_failure(tx, receipt, decoder, fn)
        return receipt

    def _wait_for_receipt(self, tx_hash: bytes, decoder: RevertDecoder | None) -> dict[str, Any]:
        """Poll for the receipt of an accepted transaction until ``receipt_timeout``: first after
        5 ms, then at doubling intervals up to 0.1 s (an instamine chain answers within milliseconds,
        a chain with a block time at its next block).

        An error answer while polling does not mean the transaction failed: ganache 7 answers
        ``eth_getTransactionReceipt`` with an internal error ("reading 'toJSON'") when asked between
        storing a mined transaction and storing its receipt. Such answers are retried until the
        timeout, which then names the last one; a lost connection is raised at once.
        """
        deadline = time.monotonic() + self.receipt_timeout
        last_error = ""
        delay = RECEIPT_FIRST_POLL
        while True:
            try:
                return dict(self.w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
            except TransactionNotFound:
                pass
            except Web3RPCError as exc:
                last_error = str(exc)
            except Exception as exc:  # noqa: BLE001 - e.g. the connection dropped while waiting
                raise self._translate(exc, decoder) from None
            if time.monotonic() >= deadline:
                detail = f"; the node's last answer was an error: {last_error}" if last_error else ""
                raise TransactionFailedError(
                    f"transaction {tx_hash.hex()} was not mined within {self.receipt_timeout:g} s{detail}"
                )
            time.sleep(delay)
            delay = min(delay * 2, RECEIPT_POLL_INTERVAL)

    def _explain_failure(
        self,
        tx: dict[str, Any],
        receipt: dict[str, Any],
        decoder: RevertDecoder | None,
        fn: ContractFunction | None,
    ) -> ChainError:
        """Replay a reverted transaction as a call at its block to learn the error."""
        if fn is not None:
            try:
                fn.call({"from": tx["from"], "value": tx.get("value", 0)}, block_identifier=receipt["blockNumber"])
            except Exception as exc:  # noqa: BLE001
                translated = self._translate(exc, decoder)
                if isinstance(translated, ContractRevertError):
                    return translated
        return TransactionFailedError(
            f"transaction {receipt['transactionHash'].hex()} reverted in block {receipt['blockNumber']} "
            f"(gas used {receipt['gasUsed']} of {tx['gas']})"
        )

    def _translate(self, exc: BaseException, decoder: RevertDecoder | None) -> ChainError:
        """Turn a web3/provider exception into one of our errors."""
        if isinstance(exc, ChainError):
            return exc
        data = _revert_data(exc)
        if decoder is not None:
            decoded = decoder.decode(data)
            if decoded is not None:
                return decoded
        message = str(exc)
        lowered = message.lower()
        if "insufficient funds" in lowered or "doesn't have enough funds" in lowered:
            return InsufficientFundsError(f"the sending account cannot pay for gas: {message}")
        if isinstance(exc, (ContractCustomError, ContractLogicError, ContractPanicError)):
            return TransactionFailedError(f"call reverted: {message}")
        if "database is not open" in lowered or "ganache is disconnected" in lowered:
            # ganache 7 answers so between closing its database and closing its port (a stop or a
            # restart; "Cannot process request, Ganache is disconnected." once its provider closed):
            # the chain is going away, which callers wait out like a lost connection.
            return ChainUnreachableError(f"the chain at {_endpoint(self.w3)} is shutting down: {message}")
        if isinstance(exc, Web3RPCError):
            return ChainError(f"the node refused the request: {message}")
        if isinstance(exc, (ConnectionError, OSError)) or "connection" in lowered:
            return ChainUnreachableError(f"lost the connection to {_endpoint(self.w3)}: {message}")
        return TransactionFailedError(f"{exc.__class__.__name__}: {message}")

    def _lock(self, address: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(address, threading.Lock())

    # -- misc -----------------------------------------------------------------------------------

    def contract(self, address: str, abi: list[dict[str, Any]]) -> Contract:
        """A web3 contract object at ``address``."""
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)


def _endpoint(w3: Web3) -> str:
    uri = getattr(w3.provider, "endpoint_uri", None)
    return str(uri) if uri else w3.provider.__class__.__name__
