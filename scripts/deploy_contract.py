#!/usr/bin/env python3
"""Deploy FLCoordinator to a JSON-RPC chain and write a deployment file the CLI reads.

Usage:
  python scripts/deploy_contract.py --rpc http://127.0.0.1:8545 --key operator.key [--out deployment.json]

The key file holds a hex private key or a JSON keystore (password from --password-file or
FLCHAIN_KEY_PASSWORD). Prints the contract address; the deployment file records chain id,
address, block, deployer, transaction and the sha256 of the contract artifact.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fl_chain.cli import main

if __name__ == "__main__":
    sys.exit(main(["deploy", *sys.argv[1:]]))
