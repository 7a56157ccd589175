"""The embedded chain: eth-tester with py-evm in this process, for simulation and unit tests."""

from __future__ import annotations

from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3

from fl_chain.chain.keys import DEV_HD_PATH, DEV_MNEMONIC

#: Chain id of the embedded chain (eth-tester's fixed id).
EMBEDDED_CHAIN_ID = 131277322940537
#: Block gas limit of the embedded chain.
EMBEDDED_GAS_LIMIT = 60_000_000


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
        self.tester = EthereumTester(backend=backend, auto_mine_transactions=True)
        self.w3 = Web3(EthereumTesterProvider(self.tester))
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
