"""Key files and keystores load, and every malformed input gets a clear KeyFileError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from fl_chain.chain.keys import dev_account, load_key
from fl_chain.errors import KeyFileError


def test_dev_account_zero_is_the_well_known_development_address() -> None:
    """Development accounts match anvil's and ganache's defaults for the same mnemonic."""
    assert dev_account(0).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert dev_account(1).address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_load_key_reads_hex_key_with_or_without_prefix(tmp_path: Path) -> None:
    """A key file holds a 64-hex-digit private key, with or without 0x."""
    account = dev_account(3)
    (tmp_path / "a").write_text(account.key.hex() + "\n")
    (tmp_path / "b").write_text("0x" + account.key.hex().removeprefix("0x"))
    assert load_key(tmp_path / "a").address == account.address
    assert load_key(tmp_path / "b").address == account.address


def test_load_key_opens_keystore_with_password(tmp_path: Path) -> None:
    """An encrypted JSON keystore opens with its password."""
    account = dev_account(4)
    keystore = Account.encrypt(account.key, "s3cret", iterations=2)
    path = tmp_path / "ks.json"
    path.write_text(json.dumps(keystore))
    assert load_key(path, "s3cret").address == account.address


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not a key", "not a 32-byte hex private key"),
        ("0x" + "zz" * 32, "not a 32-byte hex private key"),
        ("0x" + "00" * 32, "invalid secp256k1 private key"),
        ("{not json", "not valid JSON"),
    ],
)
def test_load_key_rejects_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    """Malformed key files raise KeyFileError naming the file and the problem."""
    path = tmp_path / "bad.key"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=message) as exc:
        load_key(path)
    assert str(path) in str(exc.value)


def test_load_key_missing_file_says_so(tmp_path: Path) -> None:
    """A missing key file is reported as missing."""
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key(tmp_path / "nope.key")


def test_load_key_wrong_keystore_password(tmp_path: Path) -> None:
    """A wrong keystore password is reported as a wrong password."""
    path = tmp_path / "ks.json"
    path.write_text(json.dumps(Account.encrypt(dev_account(5).key, "right", iterations=2)))
    with pytest.raises(KeyFileError, match="wrong password"):
        load_key(path, "wrong")


def test_load_key_keystore_without_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keystore with no password given asks for one."""
    monkeypatch.delenv("FLCHAIN_KEY_PASSWORD", raising=False)
    path = tmp_path / "ks.json"
    path.write_text(json.dumps(Account.encrypt(dev_account(5).key, "pw", iterations=2)))
    with pytest.raises(KeyFileError, match="needs a password"):
        load_key(path)
