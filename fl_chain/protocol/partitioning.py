"""Cutting a flat parameter vector of D values into P contiguous partitions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_chain.errors import ConfigError


@dataclass(frozen=True)
class PartitionBounds:
    """Partition ``index`` covers ``vector[offset : offset + length]``."""

    index: int
    offset: int
    length: int


def partition_bounds(dimension: int, partitions: int) -> list[PartitionBounds]:
    """Bounds of ``partitions`` contiguous parts of a ``dimension``-long vector.

    The first ``dimension % partitions`` parts are one element longer (``numpy.array_split``
    convention), so every node cuts the vector identically.
    """
    if dimension < 1:
        raise ConfigError(f"model dimension must be >= 1, got {dimension}")
    if not 1 <= partitions <= dimension:
        raise ConfigError(f"partitions must be between 1 and the model dimension {dimension}, got {partitions}")
    base, extra = divmod(dimension, partitions)
    bounds = []
    offset = 0
    for index in range(partitions):
        length = base + (1 if index < extra else 0)
        bounds.append(PartitionBounds(index, offset, length))
        offset += length
    return bounds


def split_vector(vector: np.ndarray, partitions: int) -> list[np.ndarray]:
    """The ``partitions`` contiguous float32 slices of ``vector`` (views, no copy)."""
    flat = as_model_vector(vector)
    return [flat[b.offset : b.offset + b.length] for b in partition_bounds(flat.size, partitions)]


def join_partitions(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate partitions back into one float32 vector."""
    return np.concatenate([as_model_vector(p) for p in parts]) if parts else np.zeros(0, dtype=np.float32)


def as_model_vector(vector: np.ndarray) -> np.ndarray:
    """``vector`` as a 1-D little-endian float32 array (raises on other dtypes rather than cast silently)."""
    array = np.asarray(vector)
    if array.dtype != np.float32:
        raise ConfigError(f"model vectors are float32, got {array.dtype}")
    return array.reshape(-1).astype("<f4", copy=False)
