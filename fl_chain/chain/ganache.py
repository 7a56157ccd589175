"""The pinned ganache 7.9.2 from ``ganache/node_modules`` as a local chain process."""

from __future__ import annotations

from fl_chain.chain.local_process import (
    DEV_BALANCE_ETHER,
    DEV_MNEMONIC,
    HOST,
    LOCAL_CHAINS_DIR,
    LocalChainProcess,
    require_file,
    require_node,
)

GANACHE_CLI = LOCAL_CHAINS_DIR / "node_modules" / "ganache" / "dist" / "node" / "cli.js"


class Ganache(LocalChainProcess):
    """ganache on 127.0.0.1 with the development mnemonic; ``data_dir`` persists its database."""

    name = "ganache"
    default_chain_id = 1337

    def build_command(self) -> list[str]:
        """The ganache command line."""
        cli = require_file(GANACHE_CLI, f"run `npm ci --prefix {LOCAL_CHAINS_DIR}`")
        command = [
            require_node(),
            str(cli),
            "--server.host",
            HOST,
            "--server.port",
            str(self.port),
            "--chain.chainId",
            str(self.chain_id),
            "--chain.networkId",
            str(self.chain_id),
            "--wallet.mnemonic",
            DEV_MNEMONIC,
            "--wallet.totalAccounts",
            str(self.accounts),
            "--wallet.defaultBalance",
            str(DEV_BALANCE_ETHER),
            "--logging.quiet",
            "false",
        ]
        if self.block_time:
            command += ["--miner.blockTime", str(self.block_time)]
        else:
            command += ["--miner.instamine", "eager"]
        if self.data_dir is not None:
            command += ["--database.dbPath", str(self.data_dir)]
        return command
