"""A model vector as the bytes that go into IPFS: partition blobs and the manifest listing their CIDs.

Pure: the CIDs are computed here exactly as every storage backend computes them, so the digest of a
vector's manifest (for example the initial model's, fixed in the task) needs no storage at all.
"""

from __future__ import annotations

import numpy as np

from fl_chain.errors import ConfigError
from fl_chain.protocol.blob import BlobKind, encode_partition
from fl_chain.protocol.cid import cid_from_digest
from fl_chain.protocol.manifest import Evaluation, Manifest
from fl_chain.protocol.partitioning import as_model_vector, partition_bounds
from fl_chain.protocol.unixfs import unixfs_digest

#: Task id and round written into the initial model's blobs (the task id is not known yet).
INITIAL_TASK_ID = 0
INITIAL_ROUND = 0


def content_cid(data: bytes) -> str:
    """The CID under which any fl-chain storage stores ``data`` (CIDv1, UnixFS, sha2-256)."""
    return cid_from_digest(unixfs_digest(data))


def vector_blobs(
    vector: np.ndarray,
    *,
    blob_kind: BlobKind,
    task_id: int,
    round_: int,
    partitions: int,
    contributor: str | None = None,
) -> list[bytes]:
    """The ``partitions`` blobs of ``vector``, in partition order (uint64 ring words for a masked update)."""
    flat = _ring_vector(vector) if blob_kind == BlobKind.MASKED_UPDATE else as_model_vector(vector)
    return [
        encode_partition(
            flat[bounds.offset : bounds.offset + bounds.length],
            kind=blob_kind,
            task_id=task_id,
            round_=round_,
            partition=bounds.index,
            partitions=partitions,
            offset=bounds.offset,
            contributor=contributor,
        )
        for bounds in partition_bounds(flat.size, partitions)
    ]


def vector_manifest(
    cids: list[str],
    *,
    dimension: int,
    task_id: int,
    round_: int,
    contributor: str | None = None,
    dtype: str = "float32",
    evaluation: Evaluation | None = None,
) -> Manifest:
    """The manifest of a vector whose blobs have ``cids``: an update manifest when ``contributor`` is set
    (with the contributor's ``evaluation`` of the global model it trained from, if given)."""
    return Manifest(
        kind="update" if contributor is not None else "model",
        task_id=task_id,
        round=round_,
        dimension=dimension,
        partitions=tuple(cids),
        contributor=contributor,
        dtype=dtype,
        evaluation=evaluation if contributor is not None else None,
    )


def _ring_vector(vector: np.ndarray) -> np.ndarray:
    """A masked update as a 1-D uint64 array (raises on other dtypes rather than cast silently)."""
    array = np.asarray(vector)
    if array.dtype != np.uint64:
        raise ConfigError(f"masked updates are uint64 ring words, got {array.dtype}")
    return array.reshape(-1)


def initial_model_digest(vector: np.ndarray, partitions: int) -> bytes:
    """Digest of the initial model's manifest, as every node computes it without any network."""
    flat = as_model_vector(vector)
    blobs = vector_blobs(
        flat, blob_kind=BlobKind.INITIAL, task_id=INITIAL_TASK_ID, round_=INITIAL_ROUND, partitions=partitions
    )
    manifest = vector_manifest(
        [content_cid(b) for b in blobs], dimension=flat.size, task_id=INITIAL_TASK_ID, round_=INITIAL_ROUND
    )
    return unixfs_digest(manifest.to_bytes())


__all__ = ["INITIAL_ROUND", "INITIAL_TASK_ID", "content_cid", "initial_model_digest", "vector_blobs", "vector_manifest"]
