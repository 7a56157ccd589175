#!/usr/bin/env python3
"""Compile ``contracts/*.sol`` with the pinned solc and write the artifacts into the package, as
``fl_chain/chain/contracts/*.json`` (package data, so an installed wheel carries them).

The compiler is solcjs from ``contracts/node_modules`` (``npm ci --prefix contracts``) by default, or
a native ``solc`` of exactly the pinned version: ``--solc PATH`` (or ``FLCHAIN_SOLC=PATH``), or
``--solc solcx`` for the one py-solc-x installed. Both give identical bytecode for identical settings.

Usage: python scripts/compile_contracts.py [--check] [--solc PATH]
  --check   compile and exit 1 if the committed artifacts differ from a fresh compile.
  --solc    a native solc of the pinned version instead of solcjs (a path, or ``solcx``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fl_chain.chain.compile import main

if __name__ == "__main__":
    sys.exit(main())
