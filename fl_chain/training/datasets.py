"""Datasets on local disk, their train/test split, and shards for federated nodes.

Nothing is downloaded: ``digits`` and ``breast_cancer`` are bundled with scikit-learn,
``fashion_mnist`` comes from Debian's ``dataset-fashion-mnist`` package, and ``csv`` is a site's own
file. Every split is a pure function of its seed, so every node computes the same train/test split
and the same assignment of samples to shards (given the same numpy version).
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fl_chain.errors import ConfigError
from fl_chain.protocol.catalog import DATASET_OPTIONS, DATASETS, SHARD_SCHEMES, check_dataset_options
from fl_chain.training.csv_data import read_csv_table
from fl_chain.training.idx import read_idx

__all__ = [
    "DATASETS",
    "DATASET_OPTIONS",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_ENV",
    "SHARD_SCHEMES",
    "TEST_FRACTION",
    "ArrayDataset",
    "check_dataset_options",
    "load_dataset",
    "shard",
]

#: Where Debian's ``dataset-fashion-mnist`` puts the files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Environment variable naming another Fashion-MNIST directory (a ``path`` option wins over it).
FASHION_MNIST_ENV = "FLCHAIN_FASHION_MNIST_DIR"
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


def load_dataset(name: str, *, seed: int = 0, **options: Any) -> tuple[ArrayDataset, ArrayDataset]:
    """Load a dataset from local disk and split it into train and test.

    Parameters
    ----------
    name:
        ``"digits"`` (1797 8x8 images as features ``[n, 64]`` scaled to [0, 1], 10 classes),
        ``"breast_cancer"`` (569 samples, 30 features standardized with the train split's mean and
        standard deviation, 2 classes), ``"fashion_mnist"`` (28x28 grey images as features
        ``[n, 784]`` scaled to [0, 1], 10 classes; the package's own 60000/10000 split, ``seed`` is
        not used) or ``"csv"`` (a site's own table, see ``options``).
    seed:
        Seed of the stratified 80/20 split (all but ``fashion_mnist``); the same seed gives the same
        split everywhere.
    **options:
        ``fashion_mnist``: ``path``, the directory with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``
        (``.gz`` or plain); else the directory in ``$FLCHAIN_FASHION_MNIST_DIR``, else
        :data:`FASHION_MNIST_DIR`.
        ``csv``: ``path`` (required), a CSV file with a header row; ``label``, the label column
        (default ``"label"``), integers 0..K-1; every other column is a numeric feature.
        ``num_classes``, K if known (a site may then hold fewer classes). ``standardize`` (default
        false): scale features with the train split's mean and standard deviation. A site cannot see
        other sites' statistics, so features should be scaled alike by every site before export.

    Returns
    -------
    (train, test):
        Both with samples in ascending order of their index in the original dataset. The arrays of
        ``fashion_mnist`` are decoded once per process and shared: they are read-only (:func:`shard`
        and :meth:`ArrayDataset.subset` return writable copies).

    Raises
    ------
    ConfigError
        If ``name`` is not one of :data:`DATASETS`, an option is unknown or invalid, the files are
        missing or malformed, or a csv file is too small for a test split.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    check_dataset_options(name, options)
    if name == "fashion_mnist":
        return _load_fashion_mnist(options.get("path"))
    if name == "csv":
        if options.get("path") is None:
            raise ConfigError("dataset 'csv' needs a path: set path in [dataset], or give each node its own file")
        features, labels, _ = read_csv_table(
            options["path"], label=options.get("label", "label"), num_classes=options.get("num_classes")
        )
        standardize = bool(options.get("standardize", False))
    else:
        features, labels = _SKLEARN_LOADERS[name]()
        standardize = name == "breast_cancer"
    train_idx, test_idx = _stratified_split(labels, TEST_FRACTION, seed)
    if len(test_idx) == 0:  # only a tiny csv file gets here
        raise ConfigError(
            f"csv file {options['path']} has {len(labels)} data row(s), too few for a {TEST_FRACTION:.0%} test split "
            "of any class; give it at least 3 rows of one class"
        )
    if standardize:
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


def _sklearn_data_file(name: str) -> Path | None:
    """The path of scikit-learn's bundled ``sklearn/datasets/data/<name>``, found without importing
    scikit-learn (``import sklearn.datasets`` costs about 1.5 s of CPU in every node process), or
    ``None`` when that layout is not there (then the loaders import scikit-learn)."""
    spec = importlib.util.find_spec("sklearn")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    path = _sklearn_data_file("digits.csv.gz")
    if path is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        features, target = bunch.data, bunch.target
    else:  # what load_digits reads: 64 pixel columns then the label, comma-separated
        with gzip.open(path, mode="rt", encoding="utf-8") as text:
            table = np.loadtxt(text, delimiter=",")
        features, target = table[:, :-1], table[:, -1]
    return features.astype(np.float64) / 16.0, target.astype(np.int64)


def _load_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    path = _sklearn_data_file("breast_cancer.csv")
    if path is None:
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        return bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    # what load_breast_cancer reads: a header (samples, features, class names), then 30 features
    # and the label per row
    with path.open(encoding="utf-8", newline="") as text:
        rows = csv.reader(text)
        samples, n_features = (int(field) for field in next(rows)[:2])
        table = np.array([[float(field) for field in row] for row in rows], dtype=np.float64)
    if table.shape != (samples, n_features + 1):
        raise ConfigError(
            f"{path} holds a {table.shape} table, not {samples} x {n_features + 1}; reinstall scikit-learn"
        )
    return table[:, :-1], table[:, -1].astype(np.int64)


_SKLEARN_LOADERS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "digits": _load_digits,
    "breast_cancer": _load_breast_cancer,
}

_FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_FASHION_MNIST_HINT = (
    f"install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set {FASHION_MNIST_ENV}"
)
_FASHION_MNIST_CLASSES = 10
_FASHION_MNIST_SIDE = 28
# Pixel value -> float32 in [0, 1]: x / 255 correctly rounded, the same bytes on every machine.
_PIXEL_SCALE = np.arange(256, dtype=np.float32) / np.float32(255)


def _load_fashion_mnist(path: str | os.PathLike[str] | None) -> tuple[ArrayDataset, ArrayDataset]:
    """The package's train and test split, wrapping the per-process cache (no copies)."""
    directory = Path(path if path is not None else os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
    files = []
    for stem in _FASHION_MNIST_FILES:
        found = next((c for c in (directory / f"{stem}.gz", directory / stem) if c.is_file()), None)
        if found is None:
            raise ConfigError(f"Fashion-MNIST not found in {directory} (no {stem}.gz): {_FASHION_MNIST_HINT}")
        files.append(found)
    # The files' sizes and times are part of the key: a rewritten file is decoded again.
    stamps = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    train_x, train_y, test_x, test_y = _decode_fashion_mnist(stamps)
    return ArrayDataset(train_x, train_y), ArrayDataset(test_x, test_y)


@functools.lru_cache(maxsize=2)
def _decode_fashion_mnist(stamps: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, ...]:
    """Read-only (train features, train labels, test features, test labels), decoded once per process."""
    arrays: list[np.ndarray] = []
    for (images_file, _, _), (labels_file, _, _) in (stamps[:2], stamps[2:]):
        images = read_idx(images_file, dtype=np.uint8, ndim=3)
        labels = read_idx(labels_file, dtype=np.uint8, ndim=1)
        if images.shape[1:] != (_FASHION_MNIST_SIDE, _FASHION_MNIST_SIDE):
            raise ConfigError(f"{images_file} holds images of {images.shape[1:]}, Fashion-MNIST's are 28x28")
        if len(images) != len(labels):
            raise ConfigError(f"{images_file} has {len(images)} images but {labels_file} has {len(labels)} labels")
        if len(labels) == 0:
            raise ConfigError(f"{labels_file} holds no samples")
        if int(labels.max()) >= _FASHION_MNIST_CLASSES:
            raise ConfigError(f"{labels_file} holds label {int(labels.max())}; Fashion-MNIST's are 0..9")
        arrays += [_PIXEL_SCALE[images.reshape(len(images), -1)], labels.astype(np.int64)]
    for array in arrays:
        array.setflags(write=False)
    return tuple(arrays)


# -- splitting ------------------------------------------------------------------------------------


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices with ``round(fraction * n_c)`` samples of each class c in test."""
    rng = np.random.default_rng([seed, _SPLIT_TAG])
    test: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test.append(members[: round(fraction * len(members))])
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
