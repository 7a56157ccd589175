"""Dataset sources: Fashion-MNIST from Debian's package, the IDX format, a site's own CSV file, and the
[dataset] section of a task that chooses them."""

from __future__ import annotations

import gzip
import hashlib
import re
import time
from pathlib import Path

import numpy as np
import pytest

from fl_chain.errors import ConfigError
from fl_chain.protocol.task import TaskSpec
from fl_chain.training import ArrayDataset, TorchAdapter, build_model, load_dataset, shard
from fl_chain.training import datasets as datasets_module
from fl_chain.training.idx import read_idx
from fl_chain.training.node_data import load_node_data

INSTALL_HINT = "Fashion-MNIST not installed: apt-get install dataset-fashion-mnist (or set FLCHAIN_FASHION_MNIST_DIR)"
NODES = 8

needs_fashion_mnist = pytest.mark.skipif(
    not (datasets_module.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(), reason=INSTALL_HINT
)


@pytest.fixture
def real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> tuple[ArrayDataset, ArrayDataset]:
    """Debian's Fashion-MNIST, whatever FLCHAIN_FASHION_MNIST_DIR says in the environment."""
    monkeypatch.delenv(datasets_module.FASHION_MNIST_ENV, raising=False)
    return load_dataset("fashion_mnist")


# -- helpers --------------------------------------------------------------------------------------


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file holding ``array`` with dtype code ``code``."""
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(path: Path, data: bytes, *, gzipped: bool) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if gzipped else data)
    return path


def _fake_fashion_mnist(
    directory: Path, *, train: int = 20, test: int = 10, gzipped: bool = True
) -> dict[str, np.ndarray]:
    """A directory laid out like Debian's Fashion-MNIST, with ``train`` and ``test`` random samples."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(test) % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        _write(directory / (f"{stem}.gz" if gzipped else stem), _idx_bytes(array, 0x08), gzipped=gzipped)
    return arrays


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _table(rows: int = 60, classes: int = 3) -> str:
    """A CSV with features x1, x2, the label in the middle, and a third feature x3."""
    lines = ["x1,label,x2,x3"]
    for i in range(rows):
        lines.append(f"{i},{i % classes},{2.5 * i + 100},{-i / 4}")
    return "\n".join(lines) + "\n"


def _spec(dataset: dict[str, object]) -> TaskSpec:
    return TaskSpec.from_dict({"model": {"name": "mlp"}, "dataset": dataset})


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(array.tobytes())
    return digest.hexdigest()


# -- Fashion-MNIST from the Debian package --------------------------------------------------------


@needs_fashion_mnist
def test_fashion_mnist_is_the_packages_60000_10000_split_of_784_pixels_in_0_1(
    real_fashion_mnist: tuple[ArrayDataset, ArrayDataset],
) -> None:
    """The package's own split, [n, 784] float32 in [0, 1], 10 balanced classes."""
    # Prepare
    train, test = real_fashion_mnist

    # Assert
    assert (len(train), len(test)) == (60000, 10000)
    assert train.features.shape == (60000, 784) and test.features.shape == (10000, 784)
    assert train.features.dtype == np.float32 and train.labels.dtype == np.int64
    assert train.features.min() == 0.0 and train.features.max() == 1.0
    assert np.array_equal(np.bincount(train.labels), np.full(10, 6000))
    assert np.array_equal(np.bincount(test.labels), np.full(10, 1000))


@needs_fashion_mnist
def test_fashion_mnist_split_does_not_depend_on_the_seed(real_fashion_mnist: tuple[ArrayDataset, ArrayDataset]) -> None:
    """seed chooses our 80/20 splits, not the package's: another seed gives the same samples."""
    # Execute
    other_train, other_test = load_dataset("fashion_mnist", seed=5)

    # Assert
    assert np.array_equal(other_train.labels, real_fashion_mnist[0].labels)
    assert np.array_equal(other_test.labels, real_fashion_mnist[1].labels)


@needs_fashion_mnist
def test_fashion_mnist_is_decoded_once_per_process_into_shared_read_only_arrays(
    real_fashion_mnist: tuple[ArrayDataset, ArrayDataset],
) -> None:
    """A second load returns the same arrays, quickly; they cannot be written; shards are writable copies."""
    # Prepare
    train, test = real_fashion_mnist

    # Execute
    started = time.perf_counter()
    again_train, again_test = load_dataset("fashion_mnist")
    seconds = time.perf_counter() - started
    part = shard(train, 0, NODES, seed=0)

    # Assert
    assert again_train.features is train.features and again_test.features is test.features
    assert seconds < 0.1
    assert not train.features.flags.writeable and not test.labels.flags.writeable
    assert part.features.flags.writeable and not np.shares_memory(part.features, train.features)


@needs_fashion_mnist
def test_fashion_mnist_decodes_to_identical_bytes_every_time(
    real_fashion_mnist: tuple[ArrayDataset, ArrayDataset],
) -> None:
    """Decoding the files again (cache cleared) gives byte-identical features and labels."""
    # Prepare
    train, test = real_fashion_mnist
    first = _digest(train.features, train.labels, test.features, test.labels)

    # Execute
    datasets_module._decode_fashion_mnist.cache_clear()
    again_train, again_test = load_dataset("fashion_mnist")

    # Assert
    assert again_train.features is not train.features
    assert _digest(again_train.features, again_train.labels, again_test.features, again_test.labels) == first


@needs_fashion_mnist
def test_dirichlet_shards_of_fashion_mnist_across_8_nodes_are_disjoint_and_cover_it(
    real_fashion_mnist: tuple[ArrayDataset, ArrayDataset],
) -> None:
    """8 dirichlet shards of the 60000 training images partition them; each holds the images at its indices."""
    # Prepare: a twin dataset whose feature is the sample's index (shards depend on the labels only)
    train, _ = real_fashion_mnist
    indexed = ArrayDataset(np.arange(len(train), dtype=np.float32)[:, None], train.labels)

    # Execute
    parts = [shard(train, i, NODES, seed=0, scheme="dirichlet", alpha=0.5) for i in range(NODES)]
    twins = [shard(indexed, i, NODES, seed=0, scheme="dirichlet", alpha=0.5) for i in range(NODES)]
    ids = [twin.features[:, 0].astype(np.int64) for twin in twins]

    # Assert
    assert np.array_equal(np.sort(np.concatenate(ids)), np.arange(len(train)))
    for part, index in zip(parts, ids, strict=True):
        assert len(part) >= 1
        assert np.array_equal(part.features, train.features[index]) and np.array_equal(part.labels, train.labels[index])


@needs_fashion_mnist
def test_cnn_trained_on_a_few_hundred_fashion_mnist_images_beats_chance(
    real_fashion_mnist: tuple[ArrayDataset, ArrayDataset],
) -> None:
    """The cnn takes [n, 784] as 28x28 images; 3 epochs on 500 images lift accuracy from ~0.1 to > 0.45."""
    # Prepare
    train, test = real_fashion_mnist
    adapter = TorchAdapter(build_model("cnn", input_shape=train.features.shape[1:], num_classes=10, seed=0), threads=1)
    part = shard(train, 0, 120, seed=0)
    held_out = test.subset(np.arange(0, len(test), 10))
    _, before = adapter.evaluate(held_out)

    # Execute
    adapter.train(part, epochs=3, batch_size=32, lr=0.1, seed=0)

    # Assert
    _, after = adapter.evaluate(held_out)
    assert len(part) == 500
    assert before < 0.2
    assert after > 0.45


# -- Fashion-MNIST layout: directory choice and errors ---------------------------------------------


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzipped", "plain"])
def test_fashion_mnist_directory_from_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gzipped: bool
) -> None:
    """FLCHAIN_FASHION_MNIST_DIR points at a directory in the package's layout, gzipped or plain."""
    # Prepare
    arrays = _fake_fashion_mnist(tmp_path / "fmnist", gzipped=gzipped)
    monkeypatch.setenv(datasets_module.FASHION_MNIST_ENV, str(tmp_path / "fmnist"))

    # Execute
    train, test = load_dataset("fashion_mnist")

    # Assert
    assert train.features.shape == (20, 784) and test.features.shape == (10, 784)
    expected = arrays["train-images-idx3-ubyte"].reshape(20, 784).astype(np.float32) / np.float32(255)
    assert np.array_equal(train.features, expected)
    assert np.array_equal(test.labels, arrays["t10k-labels-idx1-ubyte"])


def test_fashion_mnist_path_option_wins_over_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path option (from the task or the node) is used even when the environment names another directory."""
    # Prepare
    _fake_fashion_mnist(tmp_path / "chosen", train=30)
    _fake_fashion_mnist(tmp_path / "env", train=40)
    monkeypatch.setenv(datasets_module.FASHION_MNIST_ENV, str(tmp_path / "env"))

    # Execute
    train, _ = load_dataset("fashion_mnist", path=str(tmp_path / "chosen"))

    # Assert
    assert len(train) == 30


def test_missing_fashion_mnist_names_the_directory_and_how_to_install_it(tmp_path: Path) -> None:
    """No files in the directory: one line naming it, the Debian package and the environment variable."""
    # Execute / Assert
    with pytest.raises(ConfigError) as info:
        load_dataset("fashion_mnist", path=str(tmp_path / "nowhere"))
    message = str(info.value)
    assert f"Fashion-MNIST not found in {tmp_path / 'nowhere'}" in message
    assert "apt-get install dataset-fashion-mnist" in message and "FLCHAIN_FASHION_MNIST_DIR" in message
    assert "\n" not in message


def test_fashion_mnist_with_one_file_missing_names_that_file(tmp_path: Path) -> None:
    """A directory with three of the four files names the missing one."""
    # Prepare
    _fake_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()

    # Execute / Assert
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte"):
        load_dataset("fashion_mnist", path=str(tmp_path))


def test_truncated_fashion_mnist_images_file_is_named_in_the_error(tmp_path: Path) -> None:
    """A cut-off download is reported as truncated, with the file's path."""
    # Prepare
    _fake_fashion_mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-30])

    # Execute / Assert
    with pytest.raises(ConfigError, match=re.escape(f"{images} is truncated")):
        load_dataset("fashion_mnist", path=str(tmp_path))


def test_fashion_mnist_images_and_labels_of_different_counts_are_rejected(tmp_path: Path) -> None:
    """20 training images with 19 labels is an error naming both files."""
    # Prepare
    _fake_fashion_mnist(tmp_path)
    _write(tmp_path / "train-labels-idx1-ubyte.gz", _idx_bytes(np.zeros(19, dtype=np.uint8), 0x08), gzipped=True)

    # Execute / Assert
    with pytest.raises(ConfigError, match="20 images but .*train-labels-idx1-ubyte.gz has 19 labels"):
        load_dataset("fashion_mnist", path=str(tmp_path))


def test_fashion_mnist_images_that_are_not_28x28_are_rejected(tmp_path: Path) -> None:
    """An MNIST-like file of 8x8 images is not Fashion-MNIST."""
    # Prepare
    _fake_fashion_mnist(tmp_path)
    _write(tmp_path / "t10k-images-idx3-ubyte.gz", _idx_bytes(np.zeros((10, 8, 8), dtype=np.uint8), 0x08), gzipped=True)

    # Execute / Assert
    with pytest.raises(ConfigError, match="28x28"):
        load_dataset("fashion_mnist", path=str(tmp_path))


# -- the IDX parser -------------------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzipped", "plain"])
@pytest.mark.parametrize(("dtype", "code"), [("u1", 0x08), ("i2", 0x0B), ("i4", 0x0C), ("f4", 0x0D), ("f8", 0x0E)])
def test_read_idx_round_trips_every_dtype(tmp_path: Path, dtype: str, code: int, gzipped: bool) -> None:
    """Big-endian values of each dtype come back native-endian with their shape."""
    # Prepare
    values = np.arange(24) * 3 - (5 if dtype != "u1" else 0)
    array = values.astype(dtype).reshape(2, 3, 4)
    path = _write(tmp_path / "values.idx", _idx_bytes(array, code), gzipped=gzipped)

    # Execute
    result = read_idx(path)

    # Assert
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative
    assert np.array_equal(result, array)


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzipped", "plain"])
def test_read_idx_rejects_a_bad_magic_number(tmp_path: Path, gzipped: bool) -> None:
    """A file that does not start with two zero bytes is not IDX."""
    # Prepare
    path = _write(tmp_path / "bad.idx", b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x07", gzipped=gzipped)

    # Execute / Assert
    with pytest.raises(ConfigError, match=re.escape(f"{path} is not an IDX file")):
        read_idx(path)


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzipped", "plain"])
def test_read_idx_rejects_data_shorter_than_its_dimensions(tmp_path: Path, gzipped: bool) -> None:
    """A 3x4 uint8 file with 11 values is truncated."""
    # Prepare
    data = _idx_bytes(np.zeros((3, 4), dtype=np.uint8), 0x08)[:-1]
    path = _write(tmp_path / "short.idx", data, gzipped=gzipped)

    # Execute / Assert
    expected = f"{path} is truncated: 23 bytes, dimensions (3, 4) of uint8 need 24"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        read_idx(path)


def test_read_idx_rejects_a_header_cut_inside_the_dimensions(tmp_path: Path) -> None:
    """The magic says 3 dimensions but only one is there."""
    # Prepare
    path = _write(tmp_path / "cut.idx", b"\x00\x00\x08\x03\x00\x00\x00\x02", gzipped=False)

    # Execute / Assert
    with pytest.raises(ConfigError, match="truncated: 8 bytes, its IDX header alone needs 16"):
        read_idx(path)


def test_read_idx_rejects_trailing_bytes(tmp_path: Path) -> None:
    """Extra bytes after the values mean the dimensions are wrong."""
    # Prepare
    path = _write(tmp_path / "long.idx", _idx_bytes(np.zeros(4, dtype=np.uint8), 0x08) + b"\x00", gzipped=False)

    # Execute / Assert
    with pytest.raises(ConfigError, match="longer than its dimensions say"):
        read_idx(path)


def test_read_idx_rejects_a_truncated_gzip_stream(tmp_path: Path) -> None:
    """A gzip file cut in the middle is reported as truncated, not as a zlib traceback."""
    # Prepare
    packed = gzip.compress(_idx_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8), 0x08))
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])

    # Execute / Assert
    with pytest.raises(ConfigError, match=re.escape(f"{path} is truncated: the gzip stream ends early")):
        read_idx(path)


def test_read_idx_rejects_a_corrupt_gzip_stream(tmp_path: Path) -> None:
    """Flipped bytes inside the gzip body are a corrupt file."""
    # Prepare
    packed = bytearray(gzip.compress(_idx_bytes(np.arange(200, dtype=np.uint8), 0x08)))
    packed[20:30] = b"\xff" * 10
    path = tmp_path / "corrupt.gz"
    path.write_bytes(bytes(packed))

    # Execute / Assert
    with pytest.raises(ConfigError, match=re.escape(f"{path} is a corrupt gzip file")):
        read_idx(path)


def test_read_idx_rejects_an_unknown_dtype_code(tmp_path: Path) -> None:
    """dtype code 0x0A does not exist in IDX."""
    # Prepare
    path = _write(tmp_path / "odd.idx", b"\x00\x00\x0a\x01\x00\x00\x00\x00", gzipped=False)

    # Execute / Assert
    with pytest.raises(ConfigError, match="unknown IDX dtype code 0x0a"):
        read_idx(path)


def test_read_idx_checks_the_expected_dtype_and_dimensions(tmp_path: Path) -> None:
    """A float file where bytes are expected, or 2 dimensions where 3 are expected, is rejected."""
    # Prepare
    floats = _write(tmp_path / "floats.idx", _idx_bytes(np.zeros((2, 2), dtype=np.float32), 0x0D), gzipped=False)

    # Execute / Assert
    with pytest.raises(ConfigError, match="holds float32 values, expected uint8"):
        read_idx(floats, dtype=np.uint8)
    with pytest.raises(ConfigError, match=r"has 2 dimension\(s\) \(2, 2\), expected 3"):
        read_idx(floats, ndim=3)


def test_read_idx_of_a_missing_file_names_it(tmp_path: Path) -> None:
    """A missing file is a one-line ConfigError, not FileNotFoundError."""
    # Execute / Assert
    with pytest.raises(ConfigError, match="absent.idx does not exist"):
        read_idx(tmp_path / "absent.idx")


# -- a site's own CSV file ------------------------------------------------------------------------


def test_csv_loads_numeric_features_and_a_stratified_20_percent_test_split(tmp_path: Path) -> None:
    """Every non-label column is a feature, in file order and unscaled; 20% of each class is in test."""
    # Prepare
    path = _write_csv(tmp_path / "site.csv", _table(rows=60, classes=3))

    # Execute
    train, test = load_dataset("csv", seed=0, path=str(path))

    # Assert
    assert (len(train), len(test)) == (48, 12)
    assert train.features.shape == (48, 3) and train.features.dtype == np.float32
    assert np.array_equal(np.bincount(test.labels), [4, 4, 4])
    rows = np.concatenate([train.features[:, 0], test.features[:, 0]]).astype(np.int64)
    assert np.array_equal(np.sort(rows), np.arange(60))
    first = train.features[0]
    assert np.array_equal(first, np.array([first[0], 2.5 * first[0] + 100, -first[0] / 4], dtype=np.float32))


def test_csv_split_is_a_function_of_the_seed(tmp_path: Path) -> None:
    """Same seed, same test rows; another seed, other test rows."""
    # Prepare
    path = str(_write_csv(tmp_path / "site.csv", _table()))

    # Execute
    first, again, other = (load_dataset("csv", seed=s, path=path)[1] for s in (3, 3, 4))

    # Assert
    assert first.features.tobytes() == again.features.tobytes()
    assert not np.array_equal(first.features, other.features)


def test_csv_label_option_names_another_column(tmp_path: Path) -> None:
    """label = "y": that column holds the classes, the column called "label" is then a feature."""
    # Prepare
    path = _write_csv(tmp_path / "site.csv", "label,y\n" + "".join(f"{i * 10},{i % 2}\n" for i in range(20)))

    # Execute
    train, test = load_dataset("csv", path=str(path), label="y")

    # Assert
    assert train.features.shape[1] == 1
    assert set(np.concatenate([train.labels, test.labels])) == {0, 1}


def test_csv_standardize_uses_the_train_splits_mean_and_std(tmp_path: Path) -> None:
    """standardize = true: train columns have mean 0 and std 1; test rows get the same transform."""
    # Prepare
    path = str(_write_csv(tmp_path / "site.csv", _table()))
    raw_train, raw_test = load_dataset("csv", path=path)

    # Execute
    train, test = load_dataset("csv", path=path, standardize=True)

    # Assert
    assert np.allclose(train.features.mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(train.features.std(axis=0), 1.0, atol=1e-5)
    mean, std = raw_train.features.astype(np.float64).mean(axis=0), raw_train.features.astype(np.float64).std(axis=0)
    assert np.allclose(test.features, (raw_test.features - mean) / std, atol=1e-5)


def test_csv_with_num_classes_accepts_a_site_holding_one_class(tmp_path: Path) -> None:
    """A site may hold only class 2 when the task says num_classes = 3."""
    # Prepare
    path = _write_csv(tmp_path / "site.csv", "a,label\n" + "".join(f"{i},2\n" for i in range(10)))

    # Execute
    train, test = load_dataset("csv", path=str(path), num_classes=3)

    # Assert
    assert set(train.labels) == {2} and len(test) == 2


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("", {}, r"site.csv is empty; it needs a header row"),
        ("\n\n", {}, r"site.csv is empty"),
        ("a,label\n", {}, r"site.csv has a header but no data rows"),
        ("a,b,label\n1,2,0\n3,4\n", {}, r"site.csv line 3 has 2 field\(s\), the header has 3"),
        ("a,b,label\n1,2,0\n3,x,1\n", {}, r"site.csv line 3, column 'b': 'x' is not a number"),
        ("a,b,label\n1,2,0\n3,,1\n", {}, r"site.csv line 3, column 'b': '' is not a number"),
        ("a,b,label\n1,nan,0\n", {}, r"site.csv line 2, column 'b': 'nan' is not a finite number"),
        ("a,b,class\n1,2,0\n", {}, r"site.csv has no label column 'label'; its columns are a, b, class"),
        ("a,label\n1,0\n2,0\n3,0\n", {}, r"site.csv has only class 0 in column 'label'; a classifier needs at least 2"),
        ("a,label\n1,0\n2,cat\n", {}, r"site.csv line 3, column 'label': label 'cat' is not an integer"),
        ("a,label\n1,0\n2,-1\n", {}, r"site.csv line 3, column 'label': label '-1' is not an integer"),
        ("a,label\n1,0\n2,1.5\n", {}, r"site.csv line 3, column 'label': label '1.5' is not an integer"),
        (
            "a,label\n1,0\n2,3\n",
            {"num_classes": 3},
            r"site.csv line 3, column 'label': label '3' is not an integer in 0\.\.2",
        ),
        ("a,a,label\n1,2,0\n", {}, r"site.csv header: column name\(s\) 'a' appear more than once"),
        ("a,,label\n1,2,0\n", {}, r"site.csv header: column 2 has no name"),
        ("label\n0\n1\n", {}, r"site.csv has only the label column 'label'; it needs a feature column too"),
        ("a,label\n1,0\n2,1\n", {}, r"site.csv has 2 data row\(s\), too few for a 20% test split"),
    ],
    ids=[
        "empty-file",
        "blank-lines-only",
        "header-only",
        "ragged-row",
        "non-numeric-value",
        "empty-value",
        "nan-value",
        "missing-label-column",
        "one-class",
        "string-label",
        "negative-label",
        "fractional-label",
        "label-beyond-num-classes",
        "repeated-column",
        "unnamed-column",
        "no-feature-column",
        "too-few-rows",
    ],
)
def test_csv_errors_name_the_file_line_and_column(
    tmp_path: Path, text: str, options: dict[str, int], expected: str
) -> None:
    """Each malformed file gives a one-line ConfigError saying where the problem is."""
    # Prepare
    path = _write_csv(tmp_path / "site.csv", text)

    # Execute / Assert
    with pytest.raises(ConfigError, match=expected) as info:
        load_dataset("csv", path=str(path), **options)
    assert "\n" not in str(info.value)


def test_csv_missing_file_is_named(tmp_path: Path) -> None:
    """A path that does not exist is a one-line error naming it."""
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"csv file .*absent.csv does not exist"):
        load_dataset("csv", path=str(tmp_path / "absent.csv"))


def test_csv_that_is_not_utf8_is_rejected(tmp_path: Path) -> None:
    """A Latin-1 export is reported as not UTF-8."""
    # Prepare
    path = tmp_path / "site.csv"
    path.write_bytes("caf\xe9,label\n1,0\n".encode("latin-1"))

    # Execute / Assert
    with pytest.raises(ConfigError, match="site.csv is not UTF-8 text"):
        load_dataset("csv", path=str(path))


def test_csv_without_a_path_says_where_to_give_one() -> None:
    """csv with no path anywhere names the option."""
    # Execute / Assert
    with pytest.raises(ConfigError, match="dataset 'csv' needs a path"):
        load_dataset("csv")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"columns": 3}, r"unknown option\(s\) columns; accepted: label, num_classes, path, standardize"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2"),
        ({"standardize": "yes"}, "standardize must be true or false"),
        ({"label": ""}, "label must be a column name"),
        ({"path": 3}, "path must be a non-empty path string"),
    ],
)
def test_bad_csv_options_are_rejected_before_reading(options: dict[str, object], expected: str) -> None:
    """Options are checked without touching the disk."""
    # Execute / Assert
    with pytest.raises(ConfigError, match=expected):
        load_dataset("csv", **{"path": "/nonexistent.csv", **options})


def test_bundled_datasets_take_no_options() -> None:
    """digits with a path is an unknown option."""
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"dataset 'digits' got unknown option\(s\) path; accepted: none"):
        load_dataset("digits", path="x")


# -- a node's data --------------------------------------------------------------------------------


def test_node_with_its_own_csv_uses_the_whole_file_not_a_shard(tmp_path: Path) -> None:
    """data_path overrides the task's path; the node trains on all of its file's train split."""
    # Prepare
    task_file = _write_csv(tmp_path / "task.csv", _table(rows=30))
    own = _write_csv(tmp_path / "own.csv", _table(rows=60))
    spec = _spec({"name": "csv", "path": str(task_file), "split": "dirichlet"})

    # Execute
    train, test = load_node_data(spec, 3, 4, data_path=own)

    # Assert
    expected_train, expected_test = load_dataset("csv", path=str(own))
    assert (len(train), len(test)) == (48, 12)
    assert train.features.tobytes() == expected_train.features.tobytes()
    assert test.features.tobytes() == expected_test.features.tobytes()


def test_node_without_data_path_takes_its_shard_of_the_tasks_csv(tmp_path: Path) -> None:
    """With the path in the task, node i of 4 gets shard i of the file's train split."""
    # Prepare
    path = _write_csv(tmp_path / "shared.csv", _table(rows=60))
    spec = _spec({"name": "csv", "path": str(path), "label": "label", "seed": 2})

    # Execute
    parts = [load_node_data(spec, i, 4)[0] for i in range(4)]

    # Assert
    assert [len(p) for p in parts] == [12, 12, 12, 12]
    rows = np.concatenate([p.features[:, 0] for p in parts])
    assert len(np.unique(rows)) == 48


def test_node_data_path_for_fashion_mnist_is_its_directory_and_still_sharded(tmp_path: Path) -> None:
    """For fashion_mnist the data path is where the files are; the node still takes its shard."""
    # Prepare
    _fake_fashion_mnist(tmp_path / "fm", train=40)
    spec = _spec({"name": "fashion_mnist", "path": str(tmp_path / "elsewhere")})

    # Execute
    train, test = load_node_data(spec, 1, 4, data_path=tmp_path / "fm")

    # Assert
    assert len(train) == 10 and len(test) == 10


def test_node_data_path_for_a_bundled_dataset_is_rejected(tmp_path: Path) -> None:
    """digits ships with scikit-learn: a data path is a mistake, said in one line."""
    # Prepare
    spec = _spec({"name": "digits"})

    # Execute / Assert
    with pytest.raises(ConfigError, match="dataset 'digits' ships with scikit-learn and takes no data path"):
        load_node_data(spec, 0, 2, data_path=tmp_path / "x.csv")


# -- the task's [dataset] section -----------------------------------------------------------------


def test_task_accepts_fashion_mnist_and_a_csv_without_path() -> None:
    """fashion_mnist needs no options; csv may leave the path to each node."""
    # Execute
    fashion = _spec({"name": "fashion_mnist", "split": "dirichlet", "alpha": 0.3})
    table = _spec({"name": "csv", "label": "diagnosis", "num_classes": 2, "standardize": True})

    # Assert
    assert fashion.dataset["name"] == "fashion_mnist"
    assert "path" not in table.dataset


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        (
            {"name": "csv", "colour": "red"},
            (
                r"unknown \[dataset\] key\(s\) \['colour'\] for dataset 'csv'; "
                r"accepted: alpha, label, name, num_classes, path, seed, split, standardize"
            ),
        ),
        (
            {"name": "digits", "path": "x"},
            r"unknown \[dataset\] key\(s\) \['path'\] for dataset 'digits'; accepted: alpha, name, seed, split",
        ),
        ({"name": "csv", "num_classes": 1}, "task: dataset 'csv' option num_classes must be an integer >= 2"),
        ({"name": "csv", "standardize": 1}, "option standardize must be true or false"),
        ({"name": "fashion_mnist", "split": "pathological"}, "dataset.split must be one of iid, dirichlet, quantity"),
        ({"name": "digits", "alpha": 0}, "dataset.alpha must be a positive number"),
        ({"name": "digits", "seed": "one"}, "dataset.seed must be a non-negative integer"),
        ({"name": "mnist"}, "unknown dataset 'mnist'; use one of digits, breast_cancer, fashion_mnist, csv"),
    ],
)
def test_task_rejects_bad_dataset_sections_naming_what_to_fix(dataset: dict[str, object], expected: str) -> None:
    """Each bad [dataset] is a one-line ConfigError saying which key and what is accepted."""
    # Execute / Assert
    with pytest.raises(ConfigError, match=expected):
        _spec(dataset)


def test_task_rejects_dataset_and_model_class_counts_that_differ() -> None:
    """num_classes in [dataset] and [model] must agree: it fixes the model's output size."""
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"dataset.num_classes \(3\) and model.num_classes \(4\) differ"):
        TaskSpec.from_dict({"model": {"name": "mlp", "num_classes": 4}, "dataset": {"name": "csv", "num_classes": 3}})


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        ({"lr": 0}, "training.lr must be a positive number"),
        ({"momentum": 1.0}, r"training.momentum must be a number in \[0, 1\), got 1.0"),
        ({"momentum": -0.1}, r"training.momentum must be a number in \[0, 1\)"),
        ({"momentum": True}, r"training.momentum must be a number in \[0, 1\)"),
        ({"weight_decay": -1}, "training.weight_decay must be a non-negative number, got -1"),
        ({"weight_decay": float("nan")}, "training.weight_decay must be a non-negative number"),
    ],
)
def test_task_rejects_bad_training_sections_naming_what_to_fix(training: dict[str, object], expected: str) -> None:
    """Optimizer settings are checked when the task is read, not when a node's training breaks."""
    with pytest.raises(ConfigError, match=expected):
        TaskSpec.from_dict({"model": {"name": "mlp"}, "dataset": {"name": "digits"}, "training": training})
