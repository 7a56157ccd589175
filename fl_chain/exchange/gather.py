"""The one all-gather of a round's global model: every final partition, fetched, verified, joined.

Used by the node (the model a round starts from), the audit and ``flchain model get``. Each final
partition is fetched by the digest the chain finalized, its header is checked against the chain's
view (aggregate of this task, round, partition, offset and length), and with the model's dimension
known every fetch is bounded by the partition's exact blob size.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from fl_chain.chain.coordinator import Coordinator
from fl_chain.errors import BlobInvalidError, BlobNotFoundError, ConfigError, StorageError
from fl_chain.protocol.blob import BlobHeader, BlobKind, blob_size, decode_header, decode_partition
from fl_chain.protocol.cid import cid_from_digest
from fl_chain.protocol.partitioning import join_partitions, partition_bounds
from fl_chain.storage.base import Storage
from fl_chain.storage.concurrent import run_gets


def final_digests(coordinator: Coordinator, task_id: int, round_: int) -> list[bytes] | None:
    """The digests of ``round_``'s final partitions in partition order; None while any is not final."""
    digests = coordinator.get_final_digests(task_id, round_)
    if any(digest is None for digest in digests):
        return None
    return [digest for digest in digests if digest is not None]


def gather_partitions(
    storage: Storage,
    digests: list[bytes],
    *,
    task_id: int,
    round_: int,
    timeout: float,
    dimension: int | None = None,
) -> np.ndarray:
    """The global model whose final partitions have ``digests`` (one per partition, in order), verified.

    Parameters
    ----------
    dimension:
        The model's parameter count. With it each partition's length is known and each fetch is
        bounded by the exact blob size; without it (a caller with no task file) the lengths are
        read from the blob headers and still checked to tile the vector in order.

    Raises
    ------
    BlobNotFoundError
        If a partition is not served within ``timeout``; the message names the partition.
    BlobInvalidError
        If a partition does not verify (the same subclass as the cause); the message names it.
    """
    partitions = len(digests)
    bounds = partition_bounds(dimension, partitions) if dimension is not None else None
    lengths = [bound.length for bound in bounds] if bounds is not None else [None] * partitions
    fetched = run_gets(
        [
            partial(
                storage.get,
                cid_from_digest(digest),
                timeout=timeout,
                max_size=blob_size(length) if length is not None else None,
            )
            for digest, length in zip(digests, lengths)
        ],
        parallel=storage.parallel_gets,
    )
    parts = []
    offset = 0
    for index, (blob, length) in enumerate(zip(fetched, lengths)):
        try:
            if isinstance(blob, StorageError):
                raise blob
            if length is None:
                length = decode_header(blob).length  # checked against the chain's view next, with the rest
            expected = BlobHeader(BlobKind.AGGREGATE, task_id, round_, index, partitions, offset, length)
            parts.append(decode_partition(blob, expected)[1])
        except (BlobNotFoundError, BlobInvalidError) as exc:
            raise type(exc)(f"round {round_} global model partition {index}: {exc}") from exc
        offset += length
    return join_partitions(parts)


def fetch_global(
    storage: Storage,
    coordinator: Coordinator,
    task_id: int,
    round_: int,
    *,
    timeout: float,
    dimension: int | None = None,
) -> np.ndarray:
    """The global model of finalized ``round_``: its final partitions, fetched and verified in order.

    Raises
    ------
    ConfigError
        If a partition of ``round_`` is not final.
    BlobNotFoundError, BlobInvalidError
        As :func:`gather_partitions`.
    """
    digests = final_digests(coordinator, task_id, round_)
    if digests is None:
        raise ConfigError(f"round {round_} of task {task_id} is not finalized; pick a finalized round")
    return gather_partitions(storage, digests, task_id=task_id, round_=round_, timeout=timeout, dimension=dimension)
