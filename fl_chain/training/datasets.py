"""Datasets that ship with scikit-learn, their seeded train/test split, and shards for federated nodes.

Nothing is downloaded: ``digits`` and ``breast_cancer`` are bundled with scikit-learn. Every split is
a pure function of its seed, so every node computes the same train/test split and the same assignment
of samples to shards (given the same numpy version).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fl_chain.errors import ConfigError

__all__ = ["DATASETS", "SHARD_SCHEMES", "TEST_FRACTION", "ArrayDataset", "load_dataset", "shard"]

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("digits", "breast_cancer")
#: Schemes accepted by :func:`shard`.
SHARD_SCHEMES: tuple[str, ...] = ("iid", "dirichlet", "quantity")
#: Share of each class that goes to the test split.
TEST_FRACTION = 0.2

# Domain tags that keep the random streams of the split and of each shard scheme apart.
_SPLIT_TAG = 0x5350
_SCHEME_TAGS = {"iid": 1, "dirichlet": 2, "quantity": 3}


@dataclass
class ArrayDataset:
    """Features and integer class labels held in memory.

    Attributes
    ----------
    features:
        float32 array of shape ``[n, ...]``; converted on construction.
    labels:
        int64 array of shape ``[n]``; converted on construction.
    """

    features: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.features = np.ascontiguousarray(self.features, dtype=np.float32)
        self.labels = np.ascontiguousarray(self.labels, dtype=np.int64)
        if self.labels.ndim != 1 or self.features.ndim < 1 or len(self.features) != len(self.labels):
            raise ConfigError(
                f"dataset needs features [n, ...] and labels [n]; got {self.features.shape} and {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray) -> ArrayDataset:
        """The samples at ``indices``, in that order (copies)."""
        return ArrayDataset(self.features[indices], self.labels[indices])


def load_dataset(name: str, *, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Load a bundled dataset and split it 80/20, stratified by class.

    Parameters
    ----------
    name:
        ``"digits"`` (1797 8x8 images as features ``[n, 64]`` scaled to [0, 1], 10 classes) or
        ``"breast_cancer"`` (569 samples, 30 features standardized with the train split's mean and
        standard deviation, 2 classes).
    seed:
        Seed of the split; the same seed gives the same split everywhere.

    Returns
    -------
    (train, test):
        Both with samples in ascending order of their index in the original dataset.

    Raises
    ------
    ConfigError
        If ``name`` is not one of :data:`DATASETS`.
    """
    loader = _LOADERS.get(name)
    if loader is None:
        raise ConfigError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    features, labels = loader()
    train_idx, test_idx = _stratified_split(labels, TEST_FRACTION, seed)
    if name == "breast_cancer":
        mean = features[train_idx].mean(axis=0)
        std = features[train_idx].std(axis=0)
        features = (features - mean) / np.where(std > 0, std, 1.0)
    return ArrayDataset(features[train_idx], labels[train_idx]), ArrayDataset(features[test_idx], labels[test_idx])


def shard(
    dataset: ArrayDataset, index: int, count: int, *, seed: int, scheme: str = "iid", alpha: float = 0.5
) -> ArrayDataset:
    """The part of ``dataset`` that node ``index`` of ``count`` trains on.

    The shards of ``index = 0 .. count - 1`` (same dataset, seed, scheme and alpha) are disjoint and
    together cover the dataset; every shard has at least one sample.

    Parameters
    ----------
    dataset:
        The dataset to split, usually the train split of :func:`load_dataset`.
    index, count:
        This node's shard and the number of shards, ``0 <= index < count <= len(dataset)``.
    seed:
        Seed of the assignment; all nodes must use the same one.
    scheme:
        ``"iid"``: a seeded permutation cut into near-equal parts.
        ``"dirichlet"``: label skew; each class is divided among the nodes in proportions drawn from
        Dirichlet(alpha); a node left empty takes one sample from the largest shard.
        ``"quantity"``: shard sizes ~ 1 + Dirichlet(alpha) share of the rest, labels IID.
    alpha:
        Dirichlet concentration (> 0); smaller means more skew. Ignored by ``"iid"``.

    Returns
    -------
    ArrayDataset
        The shard's samples in ascending order of their index in ``dataset``.

    Raises
    ------
    ConfigError
        For an unknown scheme, ``alpha <= 0``, an index out of range, or more shards than samples.
    """
    if scheme not in SHARD_SCHEMES:
        raise ConfigError(f"unknown shard scheme {scheme!r}; use one of {', '.join(SHARD_SCHEMES)}")
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard index must be in 0..count-1 with count >= 1; got index={index}, count={count}")
    if count > len(dataset):
        raise ConfigError(f"cannot cut {len(dataset)} samples into {count} non-empty shards; use fewer shards")
    if scheme != "iid" and not alpha > 0:
        raise ConfigError(f"shard alpha must be a positive number; got {alpha}")
    rng = np.random.default_rng([seed, count, _SCHEME_TAGS[scheme]])
    parts = _assign(dataset.labels, count, rng, scheme, alpha)
    return dataset.subset(np.sort(parts[index]))


# -- loaders --------------------------------------------------------------------------------------


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float64) / 16.0, data.target.astype(np.int64)


def _load_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return data.data.astype(np.float64), data.target.astype(np.int64)


_LOADERS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "digits": _load_digits,
    "breast_cancer": _load_breast_cancer,
}


# -- splitting ------------------------------------------------------------------------------------


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices with ``round(fraction * n_c)`` samples of each class c in test."""
    rng = np.random.default_rng([seed, _SPLIT_TAG])
    test: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test.append(members[: int(round(fraction * len(members)))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def _assign(labels: np.ndarray, count: int, rng: np.random.Generator, scheme: str, alpha: float) -> list[np.ndarray]:
    """Indices of every shard: disjoint, covering ``range(len(labels))``, none empty."""
    n = len(labels)
    if scheme == "iid":
        return list(np.array_split(rng.permutation(n), count))
    if scheme == "quantity":
        sizes = 1 + _apportion(rng.dirichlet(np.full(count, alpha)), n - count)
        return np.split(rng.permutation(n), np.cumsum(sizes)[:-1])
    parts: list[list[np.ndarray]] = [[] for _ in range(count)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        sizes = _apportion(rng.dirichlet(np.full(count, alpha)), len(members))
        for node, piece in enumerate(np.split(members, np.cumsum(sizes)[:-1])):
            parts[node].append(piece)
    shards = [np.concatenate(p) for p in parts]
    for node in range(count):
        if len(shards[node]) == 0:  # take the last sample of the largest shard (lowest index on ties)
            donor = max(range(count), key=lambda k: (len(shards[k]), -k))
            shards[node], shards[donor] = shards[donor][-1:], shards[donor][:-1]
    return shards


def _apportion(proportions: np.ndarray, total: int) -> np.ndarray:
    """Non-negative integer sizes summing exactly to ``total``, by rounding the cumulative shares."""
    cumulative = np.cumsum(proportions)
    edges = np.floor(cumulative / cumulative[-1] * total + 0.5).astype(np.int64)
    edges[-1] = total
    return np.diff(edges, prepend=0)
