"""Ethereum accounts: key files, keystores and the deterministic development accounts."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fl_chain.errors import KeyFileError

#: The well-known development mnemonic (anvil's default). Local chains fund these accounts.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
#: Standard derivation path prefix; account i is ``DEV_HD_PATH/i``.
DEV_HD_PATH = "m/44'/60'/0'/0"
#: Environment variable holding a keystore password when no password file is given.
PASSWORD_ENV = "FLCHAIN_KEY_PASSWORD"

Account.enable_unaudited_hdwallet_features()


@lru_cache(maxsize=512)
def dev_account(index: int) -> LocalAccount:
    """Development account ``index`` of :data:`DEV_MNEMONIC` (funded on local chains)."""
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"{DEV_HD_PATH}/{index}")


def dev_accounts(count: int) -> list[LocalAccount]:
    """The first ``count`` development accounts."""
    return [dev_account(i) for i in range(count)]


def load_key(path: str | os.PathLike[str], password: str | None = None) -> LocalAccount:
    """Load an account from a key file.

    A key file is either a text file with one hex private key (``0x`` optional), or an encrypted
    JSON keystore (geth/clef format) opened with ``password`` or the ``FLCHAIN_KEY_PASSWORD``
    environment variable.

    Raises
    ------
    KeyFileError
        The file is missing or unreadable, is not a key, or the password is wrong or missing.
    """
    key_path = Path(path)
    if not key_path.exists():
        raise KeyFileError(f"key file {key_path} does not exist; pass --key with a hex key file or keystore")
    if not key_path.is_file():
        raise KeyFileError(f"key file {key_path} is not a file; pass --key with a hex key file or keystore")
    try:
        text = key_path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"key file {key_path} cannot be read as text ({exc.__class__.__name__})") from None
    if text.startswith("{"):
        return _load_keystore(key_path, text, password)
    hex_key = text[2:] if text.lower().startswith("0x") else text
    if len(hex_key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hex_key):
        raise KeyFileError(f"key file {key_path} is not a 32-byte hex private key or a JSON keystore")
    try:
        return Account.from_key("0x" + hex_key)
    except ValueError:
        raise KeyFileError(f"key file {key_path} holds an invalid secp256k1 private key") from None


def _load_keystore(path: Path, text: str, password: str | None) -> LocalAccount:
    try:
        keystore = json.loads(text)
    except json.JSONDecodeError:
        raise KeyFileError(f"keystore {path} is not valid JSON") from None
    if password is None:
        password = os.environ.get(PASSWORD_ENV)
    if password is None:
        raise KeyFileError(f"keystore {path} needs a password: pass --password-file or set {PASSWORD_ENV}")
    try:
        return Account.from_key(Account.decrypt(keystore, password))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise KeyFileError(f"wrong password for keystore {path}") from None
        raise KeyFileError(f"keystore {path} is malformed: {exc}") from None
    except NotImplementedError:
        # eth-keyfile raises a NotImplementedError subclass for keystore versions it cannot read.
        raise KeyFileError(
            f"keystore {path} has an unsupported format (version {keystore.get('version')!r}); use a version 3 keystore"
        ) from None
    except (KeyError, TypeError, AttributeError):
        raise KeyFileError(f"keystore {path} is malformed: missing crypto fields") from None


def read_password_file(path: str | os.PathLike[str]) -> str:
    """The password in ``path`` (first line, without its newline).

    Raises
    ------
    KeyFileError
        The file is missing, not a file, or not readable as UTF-8 text.
    """
    pw_path = Path(path)
    if not pw_path.exists():
        raise KeyFileError(f"password file {pw_path} does not exist; pass --password-file with the keystore's password")
    if not pw_path.is_file():
        raise KeyFileError(f"password file {pw_path} is not a file; pass --password-file with the keystore's password")
    try:
        text = pw_path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"password file {pw_path} cannot be read as text ({exc.__class__.__name__})") from None
    return text.splitlines()[0] if text else ""
