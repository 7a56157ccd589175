"""The embedded chain: eth-tester with py-evm in this process, for simulation and unit tests."""

from __future__ import annotations

from functools import partial
from typing import Any

from eth.estimators.gas import _get_computation_error, binary_gas_search_intrinsic_tolerance
from eth.vm.spoof import SpoofTransaction
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.utils.filters import check_if_log_matches
from web3 import EthereumTesterProvider, Web3

from fl_chain.chain.keys import DEV_HD_PATH, DEV_MNEMONIC

#: Chain id of the embedded chain (eth-tester's fixed id).
EMBEDDED_CHAIN_ID = 131277322940537
#: Block gas limit of the embedded chain.
EMBEDDED_GAS_LIMIT = 60_000_000


#: Tolerance of py-evm's default gas estimator (``binary_gas_search_intrinsic_tolerance``).
_ESTIMATE_TOLERANCE = 21_000


def _replayed_gas_search(state: Any, transaction: Any) -> int:
    """py-evm's default gas estimate, the same number from about 5 executions instead of about 14.

    ``binary_gas_search(tolerance=21000)`` bisects ``[intrinsic gas, block gas limit]``, executing
    the transaction at every midpoint. Its answer depends only on which midpoints succeed. This
    runs the intrinsic and block-limit executions as it does, takes the gas the block-limit run
    consumed as the guess "succeeds from here", replays the bisection with that guess, and then
    executes the first midpoint (the largest gas a midpoint asks for) and the two ends of the final
    bracket. When those three outcomes are what the guess said, every other decision follows (the
    search assumes, as py-evm's does, that more gas never turns success into failure) and the
    result is py-evm's; otherwise py-evm's own search runs.
    """
    if not hasattr(transaction, "sender"):
        return int(binary_gas_search_intrinsic_tolerance(state, transaction))
    intrinsic = transaction.intrinsic_gas
    # SpoofTransaction stands in for the signed transaction (py-evm's own gas search does the same).
    if _get_computation_error(state, SpoofTransaction(transaction, gas=intrinsic, gas_price=0)) is None:  # type: ignore[arg-type]
        return int(intrinsic)
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0))
        if computation.is_error:
            raise computation.error
        needed = intrinsic + computation.get_gas_used()
    finally:
        state.revert(snapshot)

    def succeeds(gas: int) -> bool:
        return _get_computation_error(state, SpoofTransaction(transaction, gas=gas)) is None  # type: ignore[arg-type]

    viable, out_of_gas = state.gas_limit, intrinsic
    first = True
    while viable - out_of_gas > _ESTIMATE_TOLERANCE:
        midpoint = (viable + out_of_gas) // 2
        ok = succeeds(midpoint) if first else midpoint >= needed
        first = False
        if ok:
            viable = midpoint
        else:
            out_of_gas = midpoint
    # The block gas limit and the intrinsic gas are the search's starting points, not outcomes of it.
    if (viable == state.gas_limit or succeeds(viable)) and (out_of_gas == intrinsic or not succeeds(out_of_gas)):
        return int(viable)
    return int(binary_gas_search_intrinsic_tolerance(state, transaction))


class _IndexedTester(EthereumTester):
    """eth-tester whose ``get_logs`` reads each mined block's logs once, not on every call.

    eth-tester answers ``eth_getLogs`` by walking every block in the range and rebuilding every
    transaction's receipt (recovering its sender's public key in pure Python), so a query costs
    time in proportion to the chain's length. Here the raw log entries of a mined block are kept
    after the first query that reaches it and filtered with eth-tester's own matcher, so the
    results (entries, order, filtering) are the same. Mined blocks only change when the chain is
    reverted to a snapshot or reset, and both drop the index. Ranges that reach past the latest
    mined block (``pending``) go to eth-tester unchanged.
    """

    def _reset_local_state(self) -> None:
        super()._reset_local_state()
        self._block_logs: dict[int, list[Any]] = {}
        self._accounts: tuple[Any, Any] | None = None
        self._calls: tuple[Any, dict[Any, Any]] = (None, {})

    def call(self, transaction: Any, block_number: Any = "latest") -> Any:
        # A call at "latest" runs on the state and header of the latest mined block, so its result
        # is a function of that block and the call: many nodes read the same views between two
        # blocks. Keep the results of the current head only.
        if block_number != "latest":
            return super().call(transaction, block_number)
        try:
            key = tuple(sorted(transaction.items()))
            hash(key)
        except TypeError:
            return super().call(transaction, block_number)
        pending = self.backend.chain.header
        head = (pending.parent_hash, pending.block_number)
        if self._calls[0] != head:
            self._calls = (head, {})
        results = self._calls[1]
        if key in results:
            return results[key]
        result = super().call(transaction, block_number)
        results[key] = result
        return result

    def get_accounts(self) -> Any:
        # web3 fills in the sender of every eth_call from eth_accounts, and eth-tester answers it by
        # hashing and checksumming every funded account's public key: keep the answer until the
        # backend's key tuple changes (add_account and reset_to_genesis replace it).
        keys = self.backend.account_keys
        if self._accounts is None or self._accounts[0] is not keys:
            self._accounts = (keys, super().get_accounts())
        accounts = self._accounts[1]
        return type(accounts)(accounts)

    def revert_to_snapshot(self, snapshot_id: Any) -> None:
        self._block_logs = {}
        try:
            super().revert_to_snapshot(snapshot_id)
        finally:
            self._block_logs = {}

    def get_logs(
        self, from_block: Any = None, to_block: Any = None, address: Any = None, topics: Any = None
    ) -> tuple[Any, ...]:
        params = {"from_block": from_block, "to_block": to_block, "address": address, "topics": topics}
        self.validator.validate_inbound_filter_params(**params)
        raw_from, raw_to, raw_address, raw_topics = self.normalizer.normalize_inbound_filter_params(**params)
        lower = raw_from if isinstance(raw_from, int) else self.get_block_by_number(raw_from or "latest")["number"]
        upper = raw_to if isinstance(raw_to, int) else self.get_block_by_number(raw_to or "latest")["number"]
        if upper > self.get_block_by_number("latest")["number"]:
            return super().get_logs(**params)
        matches = partial(
            check_if_log_matches, from_block=raw_from, to_block=raw_to, addresses=raw_address, topics=raw_topics
        )
        return tuple(
            self.normalizer.normalize_outbound_log_entry(entry)
            for number in range(lower, upper + 1)
            for entry in self._logs_of_block(number)
            if matches(entry)
        )

    def estimate_gas(self, transaction: Any, block_number: Any = "latest") -> Any:
        # The backend builds a new py-evm chain object on reset and revert: set the estimator each time.
        chain = self.backend.chain
        if chain.gas_estimator is not _replayed_gas_search:
            chain.gas_estimator = _replayed_gas_search
        return super().estimate_gas(transaction, block_number)

    def _logs_of_block(self, number: int) -> list[Any]:
        """Raw log entries of mined block ``number``, in transaction and log order."""
        entries = self._block_logs.get(number)
        if entries is None:
            block = self.get_block_by_number(number)
            entries = [
                self.normalizer.normalize_inbound_log_entry(log_entry)
                for transaction_hash in block["transactions"]
                for log_entry in self.get_transaction_receipt(transaction_hash)["logs"]
            ]
            self._block_logs[number] = entries
        return entries


class EmbeddedChain:
    """An in-process py-evm chain that funds the development accounts and can travel in time.

    Parameters
    ----------
    accounts:
        Number of funded development accounts.
    """

    name = "embedded"
    rpc_url: str | None = None

    def __init__(self, *, accounts: int = 10) -> None:
        backend = PyEVMBackend.from_mnemonic(
            DEV_MNEMONIC,
            num_accounts=accounts,
            hd_path=DEV_HD_PATH,
            genesis_parameters=PyEVMBackend.generate_genesis_params({"gas_limit": EMBEDDED_GAS_LIMIT}),
        )
        self.tester = _IndexedTester(backend=backend, auto_mine_transactions=True)
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        # A call or estimate without "from" gets eth_accounts[0] from the eth-tester middleware,
        # which asks for (and checksums) every account twice per call; web3 fills in the same
        # address itself when it is the default account.
        self.w3.eth.default_account = self.w3.eth.accounts[0]
        self.accounts = accounts

    def increase_time(self, seconds: int) -> None:
        """Mine a block ``seconds`` after the latest one."""
        latest = int(self.tester.get_block_by_number("latest")["timestamp"])
        # eth-tester mines the travel block at ``to_timestamp - 1``.
        self.tester.time_travel(latest + int(seconds) + 1)

    def mine(self) -> None:
        """Mine one empty block."""
        self.tester.mine_blocks(1)

    def close(self) -> None:
        """Nothing to release: the chain lives in this process."""
