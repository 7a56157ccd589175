"""Every ``flchain`` command once through the real entry points, in its own process.

The CLI's behaviour is tested in-process (tests/unit/test_cli_errors.py, tests/unit/test_bad_input.py);
these prove that ``python -m fl_chain.cli`` and the ``flchain`` console script (pyproject's
``fl_chain.cli:main``) reach each command and turn its error into one ``error:`` line and exit status 2.
Each case fails before any chain, IPFS peer or training starts, so each costs one interpreter start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fl_chain.chain.keys import dev_account

#: The ``flchain`` console script pip generated for this environment.
CONSOLE_SCRIPT = Path(sys.executable).parent / "flchain"
#: An RPC URL the CLI refuses before connecting (no scheme).
NO_SCHEME_RPC = "127.0.0.1:8545"
#: Every command: (arguments, fragment of the one error line). Paths are relative to the test's directory.
COMMANDS: dict[str, tuple[list[str], str]] = {
    "demo": (["demo", "--participants", "1"], "--participants must be at least 2"),
    "simulate": (["simulate", "--nodes", "0"], "--nodes must be at least 1"),
    "chain start": (["chain", "start", "ganache", "--port", "70000"], "--port must be in 1..65535"),
    "deploy": (["deploy", "--rpc", NO_SCHEME_RPC, "--key", "key.hex"], "must start with http://"),
    "admit": (["admit", "--rpc", NO_SCHEME_RPC, "--key", "key.hex", "0x1234"], "not an Ethereum address"),
    "revoke": (["revoke", "--rpc", NO_SCHEME_RPC, "--key", "key.hex", "0x1234"], "not an Ethereum address"),
    "status": (["status", "--rpc", NO_SCHEME_RPC], "must start with http://"),
    "task create": (["task", "create", "--rpc", NO_SCHEME_RPC, "--key", "key.hex", "none.toml"], "none.toml"),
    "task start": (
        ["task", "start", "--rpc", NO_SCHEME_RPC, "--key", "key.hex", "--task", "1"],
        "must start with http://",
    ),
    "task cancel": (
        ["task", "cancel", "--rpc", NO_SCHEME_RPC, "--key", "key.hex", "--task", "1"],
        "must start with http://",
    ),
    "operator transfer": (
        ["operator", "transfer", "--rpc", NO_SCHEME_RPC, "--key", "key.hex", "--to", "0x1234"],
        "not an Ethereum address",
    ),
    "operator accept": (["operator", "accept", "--rpc", NO_SCHEME_RPC, "--key", "key.hex"], "must start with http://"),
    "audit": (["audit", "--rpc", NO_SCHEME_RPC, "--task", "1", "--task-file", "none.toml"], "none.toml"),
    "node": (
        ["node", "--rpc", NO_SCHEME_RPC, "--key", "key.hex", "--task-file", "none.toml", "--state-dir", "state"],
        "none.toml",
    ),
    "model get": (["model", "get", "--rpc", NO_SCHEME_RPC, "--task", "1", "--out", "m.npy"], "must start with http://"),
}


def flchain(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (an interpreter and module, or the console script) with ``flchain`` arguments."""
    env = {k: v for k, v in os.environ.items() if k not in ("FLCHAIN_DEBUG", "FLCHAIN_KEY_PASSWORD")}
    return subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=180, env=env, check=False)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_prints_one_error_line_in_its_own_process(name: str, tmp_path: Path) -> None:
    """``python -m fl_chain.cli <command>`` with one mistake: exit status 2, one ``error:`` line, no traceback."""
    # Prepare
    (tmp_path / "key.hex").write_text(dev_account(0).key.hex())
    args, fragment = COMMANDS[name]
    # Execute
    result = flchain(sys.executable, "-m", "fl_chain.cli", *args, cwd=tmp_path)
    # Assert
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0], lines[0]
    assert not (tmp_path / "state").exists()


def test_dev_key_writes_the_key_file_in_its_own_process(tmp_path: Path) -> None:
    """``python -m fl_chain.cli dev-key 0``: the development account's key, readable by its owner only."""
    result = flchain(sys.executable, "-m", "fl_chain.cli", "dev-key", "0", "--out", "key0.hex", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote the key of {dev_account(0).address} to key0.hex\n"
    assert (tmp_path / "key0.hex").read_text() == dev_account(0).key.hex() + "\n"
    assert (tmp_path / "key0.hex").stat().st_mode & 0o777 == 0o600


def test_console_script_lists_every_command_and_loads_no_chain_or_torch(tmp_path: Path) -> None:
    """The ``flchain`` script (pyproject's entry point) prints its help; the help imports neither web3 nor torch."""
    # Execute
    help_text = flchain(str(CONSOLE_SCRIPT), "--help", cwd=tmp_path)
    probe = flchain(
        sys.executable,
        "-c",
        "import sys\nfrom fl_chain.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({'torch', 'web3', 'eth_account'} & set(sys.modules)), file=sys.stderr)",
        cwd=tmp_path,
    )
    # Assert
    assert help_text.returncode == 0, help_text.stderr
    for command in (
        "demo",
        "simulate",
        "chain",
        "dev-key",
        "deploy",
        "admit",
        "revoke",
        "operator",
        "status",
        "task",
        "node",
        "model",
        "audit",
    ):
        assert command in help_text.stdout
    assert probe.stderr.strip() == "[]", probe.stderr
