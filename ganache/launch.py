#!/usr/bin/env python3
"""Start the pinned ganache (or anvil) on 127.0.0.1 with the development accounts.

Usage:
  npm ci --prefix ganache            # once: installs ganache 7.9.2 and anvil from the lock file
  python ganache/launch.py [--port 8545] [--accounts 10] [--chain-id 1337] [--data-dir DIR]
  python ganache/launch.py anvil ...

Deterministic accounts come from the mnemonic in fl_chain/chain/keys.py (anvil's default);
`--data-dir` persists the chain across restarts; logs go to runs/chain-logs/. Ctrl-C stops it.
This is `flchain chain start` with ganache as the default backend.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fl_chain.cli import main  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    backend = args.pop(0) if args and args[0] in ("ganache", "anvil") else "ganache"
    sys.exit(main(["chain", "start", backend, *args]))
