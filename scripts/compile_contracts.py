#!/usr/bin/env python3
"""Compile ``contracts/*.sol`` with the pinned solc and write artifacts to ``contracts/build/``.

The compiler is solcjs from ``contracts/node_modules`` (``npm ci --prefix contracts``), or a native
``solc`` of exactly the pinned version when one is on PATH (driven through py-solc-x when installed).
Both give identical bytecode for identical settings.

Usage: python scripts/compile_contracts.py [--check]
  --check   compile and exit 1 if the committed artifacts differ from a fresh compile.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fl_chain.chain.compile import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
