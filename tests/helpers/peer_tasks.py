"""Functions the tests run inside kubo peer processes (through ``PeerProcess.request("call", ...)``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fl_chain.storage.base import Storage


def publish_update(
    storage: Storage, vector: np.ndarray, task_id: int, round_: int, partitions: int, contributor: str
) -> bytes:
    """Publish ``vector`` as an update; returns the manifest digest to commit on chain."""
    from fl_chain.exchange.transfer import publish_vector
    from fl_chain.protocol.blob import BlobKind

    digest, _ = publish_vector(
        storage,
        vector,
        blob_kind=BlobKind.UPDATE,
        task_id=task_id,
        round_=round_,
        partitions=partitions,
        contributor=contributor,
    )
    return digest


def fetch_update_via_chain(
    storage: Storage, rpc_url: str, address: str, task_id: int, round_: int, partition: int, timeout: float
) -> dict[str, Any]:
    """Find every contributor of ``round_`` on chain, connect to its registered peer, fetch ``partition``."""
    from fl_chain.chain.backends import RemoteChain
    from fl_chain.chain.client import ChainClient
    from fl_chain.chain.coordinator import Coordinator
    from fl_chain.exchange.peering import connect_to_participants
    from fl_chain.exchange.transfer import fetch_manifest, fetch_partition
    from fl_chain.protocol.blob import BlobKind

    coordinator = Coordinator.at(ChainClient(RemoteChain(rpc_url).w3), address)
    config, _ = coordinator.get_task(task_id)
    commits = coordinator.find_update_commits(task_id, round_)
    connected = connect_to_participants(storage, coordinator, task_id, [c.contributor for c in commits])
    parts = {}
    for commit in commits:
        manifest = fetch_manifest(
            storage,
            commit.digest,
            kind="update",
            task_id=task_id,
            round_=round_,
            partitions=config.partitions,
            contributor=commit.contributor,
            timeout=timeout,
        )
        parts[commit.contributor] = fetch_partition(
            storage, manifest, partition, blob_kind=BlobKind.UPDATE, timeout=timeout
        )
    return {"connected": connected, "parts": parts}


def put_directory(storage: Storage, files: dict[str, bytes]) -> str:
    """Add a UnixFS directory holding ``files`` (kubo peers only); returns its CID."""
    import os
    import shutil
    import uuid

    from fl_chain.protocol.cid import normalize_cid
    from fl_chain.storage.libkubo import take_string

    folder = storage._staging / f"dir-{uuid.uuid4().hex}"  # type: ignore[attr-defined]
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    try:
        cid = take_string(storage._lib.AddFile(storage._key, os.fsencode(str(folder)), False))  # type: ignore[attr-defined]
    finally:
        shutil.rmtree(folder)
    assert cid, "AddFile of a directory failed"
    return normalize_cid(cid)
