"""Deployment files: where an FLCoordinator lives, written by the deploy script, read by the CLI."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fl_chain.chain.artifacts import load_artifact
from fl_chain.chain.client import ChainClient
from fl_chain.chain.coordinator import Coordinator
from fl_chain.errors import ConfigError, ContractNotFoundError

DEFAULT_DEPLOYMENT_FILE = "deployment.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Deployment:
    """One deployed FLCoordinator."""

    chain_id: int
    address: str
    block: int
    artifact_sha256: str
    deployer: str
    transaction: str
    format_version: int = FORMAT_VERSION

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the deployment as JSON to ``path`` (atomically) and return the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(target)
        return target

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Deployment:
        """Read a deployment file written by :meth:`write`.

        Raises
        ------
        ConfigError
            The file is missing or is not a deployment file.
        """
        source = Path(path)
        if not source.is_file():
            raise ConfigError(f"deployment file {source} does not exist; run scripts/deploy_contract.py first")
        try:
            data = json.loads(source.read_text())
            deployment = cls(
                chain_id=int(data["chain_id"]),
                address=str(data["address"]),
                block=int(data["block"]),
                artifact_sha256=str(data["artifact_sha256"]),
                deployer=str(data["deployer"]),
                transaction=str(data["transaction"]),
                format_version=int(data.get("format_version", FORMAT_VERSION)),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ConfigError(
                f"{source} is not an fl-chain deployment file (JSON with chain_id, address, block, ...)"
            ) from None
        if not Web3.is_address(deployment.address):
            raise ConfigError(f"deployment file {source} has an invalid address {deployment.address!r}")
        return deployment


def deploy(client: ChainClient, account: LocalAccount) -> tuple[Coordinator, Deployment]:
    """Deploy an FLCoordinator from ``account`` and describe it as a :class:`Deployment`."""
    artifact = load_artifact()
    receipt = client.deploy(account, artifact.abi, artifact.bytecode)
    block = int(receipt["blockNumber"])
    coordinator = Coordinator.at(client, receipt["contractAddress"], artifact, deploy_block=block)
    deployment = Deployment(
        chain_id=client.chain_id,
        address=coordinator.address,
        block=block,
        artifact_sha256=artifact.sha256,
        deployer=account.address,
        transaction="0x" + bytes(receipt["transactionHash"]).hex(),
    )
    return coordinator, deployment


def open_deployment(client: ChainClient, deployment: Deployment) -> Coordinator:
    """The coordinator described by ``deployment``, after checking chain id and code.

    Raises
    ------
    ConfigError
        The connected chain is not the one the deployment was made on.
    ContractNotFoundError
        No FLCoordinator of this version lives at the address.
    """
    if client.chain_id != deployment.chain_id:
        raise ConfigError(
            f"the deployment is for chain id {deployment.chain_id} but the RPC endpoint serves chain id "
            f"{client.chain_id}; use the matching --rpc or deployment file"
        )
    artifact = load_artifact()
    try:
        return Coordinator.at(client, deployment.address, artifact, deploy_block=deployment.block)
    except ContractNotFoundError as exc:
        if deployment.artifact_sha256 != artifact.sha256:
            raise ContractNotFoundError(
                f"{exc}; the deployment was made from a different contract build ({deployment.artifact_sha256[:12]})"
            ) from None
        raise
