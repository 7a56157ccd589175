"""The data path between nodes: a model vector to partition blobs and a manifest in storage, and back.

Everything fetched is verified: the bytes against their CID (by the storage), the blob header and
payload hash, and the header against what the caller knows from the chain (task, round, partition,
offset, length, and for updates the contributor). Nothing that fails verification is returned.
Every fetch has a size bound known before it starts (:func:`manifest_size_limit`, the exact
:func:`blob_size`): bigger content is a BlobTooLargeError and is never read into memory.
"""

from __future__ import annotations

import numpy as np

from fl_chain.protocol.blob import (
    BlobHeader,
    BlobKind,
    blob_dtype,
    blob_dtype_name,
    blob_size,
    contributor_bytes,
    decode_partition,
)
from fl_chain.protocol.cid import cid_from_digest, digest_from_cid
from fl_chain.protocol.manifest import Evaluation, Manifest, manifest_size_limit, parse_manifest
from fl_chain.protocol.partitioning import as_model_vector, join_partitions, partition_bounds
from fl_chain.protocol.vector import vector_blobs, vector_manifest
from fl_chain.storage.base import DEFAULT_GET_TIMEOUT, Storage


def publish_vector(
    storage: Storage,
    vector: np.ndarray,
    *,
    blob_kind: BlobKind,
    task_id: int,
    round_: int,
    partitions: int,
    contributor: str | None = None,
    evaluation: Evaluation | None = None,
) -> tuple[bytes, Manifest]:
    """Store ``vector`` as ``partitions`` blobs plus a manifest; returns the manifest digest and manifest.

    ``contributor`` set makes an update manifest (and goes into every blob header, and the
    contributor's ``evaluation`` of the global model it trained from into the manifest), otherwise a
    model manifest. A ``BlobKind.MASKED_UPDATE`` vector is uint64 ring words (secure aggregation).
    """
    masked = blob_kind == BlobKind.MASKED_UPDATE
    flat = np.asarray(vector).reshape(-1) if masked else as_model_vector(vector)
    blobs = vector_blobs(
        flat, blob_kind=blob_kind, task_id=task_id, round_=round_, partitions=partitions, contributor=contributor
    )
    cids = [storage.put(blob) for blob in blobs]
    manifest = vector_manifest(
        cids,
        dimension=flat.size,
        task_id=task_id,
        round_=round_,
        contributor=contributor,
        dtype=blob_dtype_name(blob_kind),
        evaluation=evaluation,
    )
    return digest_from_cid(storage.put(manifest.to_bytes())), manifest


def fetch_manifest(
    storage: Storage,
    digest: bytes,
    *,
    kind: str,
    task_id: int,
    round_: int,
    partitions: int,
    contributor: str | None = None,
    dimension: int | None = None,
    timeout: float = DEFAULT_GET_TIMEOUT,
    dtype: str = "float32",
) -> Manifest:
    """The manifest whose CID has ``digest``, checked against the chain's view and the model's ``dimension``.

    Pass ``dimension`` whenever it is known: the partition fetch bounds come from the manifest's.
    ``dtype`` is ``uint64`` for a masked update (secure aggregation).
    """
    data = storage.get(cid_from_digest(digest), timeout=timeout, max_size=manifest_size_limit(partitions))
    manifest = parse_manifest(data)
    manifest.check(
        kind=kind,
        task_id=task_id,
        round_=round_,
        partitions=partitions,
        contributor=contributor,
        dimension=dimension,
        dtype=dtype,
    )
    return manifest


def fetch_partition(
    storage: Storage,
    manifest: Manifest,
    partition: int,
    *,
    blob_kind: BlobKind,
    timeout: float = DEFAULT_GET_TIMEOUT,
) -> np.ndarray:
    """Partition ``partition`` of ``manifest``'s vector, verified (an update's blobs name its contributor).

    At most the exact blob size of the partition is read; it follows from the manifest's dimension,
    so fetch the manifest with ``dimension`` (or check it) first.
    """
    bounds = partition_bounds(manifest.dimension, len(manifest.partitions))[partition]
    expected = BlobHeader(
        kind=blob_kind,
        task_id=manifest.task_id,
        round=manifest.round,
        partition=partition,
        partitions=len(manifest.partitions),
        offset=bounds.offset,
        length=bounds.length,
        dtype=blob_dtype(blob_kind),
        contributor=contributor_bytes(manifest.contributor),
    )
    blob = storage.get(
        manifest.partitions[partition], timeout=timeout, max_size=blob_size(bounds.length, blob_dtype(blob_kind))
    )
    _, values = decode_partition(blob, expected)
    return values


def fetch_vector(
    storage: Storage, manifest: Manifest, *, blob_kind: BlobKind, timeout: float = DEFAULT_GET_TIMEOUT
) -> np.ndarray:
    """The whole vector of ``manifest`` (all partitions), verified (uint64 ring words for a masked update)."""
    parts = [
        fetch_partition(storage, manifest, p, blob_kind=blob_kind, timeout=timeout)
        for p in range(len(manifest.partitions))
    ]
    return np.concatenate(parts) if blob_kind == BlobKind.MASKED_UPDATE else join_partitions(parts)
