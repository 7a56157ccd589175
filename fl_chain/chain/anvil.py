"""anvil, the binary shipped in the npm package ``@foundry-rs/anvil-linux-amd64``, as a local chain."""

from __future__ import annotations

from fl_chain.chain.local_process import (
    DEV_BALANCE_ETHER,
    DEV_MNEMONIC,
    HOST,
    LOCAL_CHAINS_DIR,
    LocalChainProcess,
    require_file,
)

ANVIL_BINARY = LOCAL_CHAINS_DIR / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


class Anvil(LocalChainProcess):
    """anvil on 127.0.0.1 with the development mnemonic; ``data_dir`` persists its state file."""

    name = "anvil"
    default_chain_id = 31337

    def build_command(self) -> list[str]:
        """The anvil command line."""
        binary = require_file(ANVIL_BINARY, f"run `npm ci --prefix {LOCAL_CHAINS_DIR}`")
        command = [
            str(binary),
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--mnemonic",
            DEV_MNEMONIC,
            "--accounts",
            str(self.accounts),
            "--balance",
            str(DEV_BALANCE_ETHER),
        ]
        if self.block_time:
            command += ["--block-time", str(self.block_time)]
        if self.data_dir is not None:
            command += ["--state", str(self.data_dir / "anvil-state.json")]
        return command
