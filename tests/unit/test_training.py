"""Local training: bundled datasets, disjoint shards, seeded models, the vector adapter, reproducibility."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from fl_chain import training
from fl_chain.errors import ConfigError
from fl_chain.training import (
    DATASETS,
    MODELS,
    SHARD_SCHEMES,
    ArrayDataset,
    TorchAdapter,
    build_model,
    load_dataset,
    shard,
)
from fl_chain.training.torch_adapter import PlainSGD
from tests.helpers.names import ruff_sorted

NODES = 8

# Run in one fresh child process (one torch import for the tests that use it): prints the sha256 of
# the model vector as built, then after training, then which slow modules loading digits and
# training imported (none should: they cost ~1.5 s of CPU each in every node process).
_CHILD = textwrap.dedent(
    """
    import hashlib, sys
    from fl_chain.training import TorchAdapter, build_model, load_dataset, shard

    adapter = TorchAdapter(build_model("mlp", input_shape=(64,), num_classes=10, seed=7), threads=1)
    print(hashlib.sha256(adapter.get_vector().tobytes()).hexdigest())
    data = shard(load_dataset("digits")[0], 1, 4, seed=0)
    adapter.train(data, epochs=2, batch_size=16, lr=0.05, seed=3, momentum=0.9, weight_decay=1e-4)
    print(hashlib.sha256(adapter.get_vector().tobytes()).hexdigest())
    print(",".join(m for m in ("torch._dynamo", "sklearn.datasets") if m in sys.modules) or "-")
    """
)


@pytest.fixture(scope="module")
def digits() -> tuple[ArrayDataset, ArrayDataset]:
    return load_dataset("digits", seed=0)


def _vector_digest(adapter: TorchAdapter) -> str:
    return hashlib.sha256(adapter.get_vector().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def child_digests() -> dict[str, str]:
    """What ``_CHILD`` printed in a fresh process: the digests ``init`` (as built) and ``train`` (after
    training), and ``imported``: the slow modules it loaded, or "-"."""
    command = [sys.executable, "-c", _CHILD]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    init, train, imported = result.stdout.split()
    return {"init": init, "train": train, "imported": imported}


def _label_skew(dataset: ArrayDataset, scheme: str) -> float:
    """Mean total-variation distance between each shard's label distribution and the dataset's."""
    classes = int(dataset.labels.max()) + 1
    overall = np.bincount(dataset.labels, minlength=classes) / len(dataset)
    distances = []
    for index in range(NODES):
        part = shard(dataset, index, NODES, seed=0, scheme=scheme, alpha=0.3)
        local = np.bincount(part.labels, minlength=classes) / len(part)
        distances.append(0.5 * np.abs(local - overall).sum())
    return float(np.mean(distances))


# -- datasets and shards --------------------------------------------------------------------------


def test_public_names_are_complete_and_sorted() -> None:
    """Every name in __all__ exists, and the list is sorted as ruff sorts it."""
    # Execute
    missing = [name for name in training.__all__ if not hasattr(training, name)]

    # Assert
    assert missing == []
    assert list(training.__all__) == ruff_sorted(training.__all__)


def test_load_dataset_digits_is_a_seeded_stratified_80_20_split(digits: tuple[ArrayDataset, ArrayDataset]) -> None:
    """digits: [n, 64] float32 in [0, 1], 20% of each class in test, same split for the same seed."""
    # Prepare
    train, test = digits

    # Execute
    again_train, _ = load_dataset("digits", seed=0)

    # Assert
    assert (len(train), len(test)) == (1438, 359)
    assert train.features.shape[1:] == (64,) and train.features.dtype == np.float32 and train.labels.dtype == np.int64
    assert 0.0 <= train.features.min() and train.features.max() <= 1.0
    per_class = np.bincount(np.concatenate([train.labels, test.labels]))
    assert np.all(np.abs(np.bincount(test.labels) - 0.2 * per_class) <= 0.5)
    assert np.array_equal(train.features, again_train.features) and np.array_equal(train.labels, again_train.labels)


def test_load_dataset_breast_cancer_is_standardized_with_train_statistics() -> None:
    """breast_cancer: train features have mean 0 and std 1 per column; test uses the same transform."""
    # Execute
    train, test = load_dataset("breast_cancer", seed=1)

    # Assert
    assert (len(train), len(test)) == (456, 113)
    assert np.allclose(train.features.mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(train.features.std(axis=0), 1.0, atol=1e-4)


@pytest.mark.parametrize("scheme", SHARD_SCHEMES)
def test_shards_are_disjoint_and_cover_the_dataset(scheme: str) -> None:
    """The shards of all indices partition the dataset exactly, none empty."""
    # Prepare: a dataset whose features are their own sample index
    labels = np.random.default_rng(5).integers(0, 10, size=1000)
    dataset = ArrayDataset(np.arange(1000, dtype=np.float32)[:, None], labels)

    # Execute
    parts = [shard(dataset, index, NODES, seed=11, scheme=scheme, alpha=0.5) for index in range(NODES)]

    # Assert
    ids = np.concatenate([part.features[:, 0] for part in parts]).astype(np.int64)
    assert np.array_equal(np.sort(ids), np.arange(1000))
    assert all(len(part) >= 1 for part in parts)
    assert all(np.array_equal(part.labels, labels[part.features[:, 0].astype(np.int64)]) for part in parts)


@pytest.mark.parametrize("scheme", ["dirichlet", "quantity"])
def test_skewed_shards_give_every_node_a_sample(scheme: str) -> None:
    """Even with 60 nodes, 2 classes and a tiny alpha, no shard is empty."""
    # Prepare
    train, _ = load_dataset("breast_cancer")

    # Execute
    sizes = [len(shard(train, index, 60, seed=0, scheme=scheme, alpha=0.01)) for index in range(60)]

    # Assert
    assert min(sizes) >= 1 and sum(sizes) == len(train)


def test_dirichlet_shards_are_label_skewed_compared_to_iid(digits: tuple[ArrayDataset, ArrayDataset]) -> None:
    """Label distributions of dirichlet shards are far from the global one; iid shards are close."""
    # Prepare
    train, _ = digits

    # Execute
    iid, dirichlet = _label_skew(train, "iid"), _label_skew(train, "dirichlet")

    # Assert
    assert iid < 0.12
    assert dirichlet > 0.4 and dirichlet > 4 * iid


def test_shard_is_the_same_for_the_same_seed(digits: tuple[ArrayDataset, ArrayDataset]) -> None:
    """A shard depends on the seed only: same seed same samples, other seed other samples."""
    # Prepare
    train, _ = digits

    # Execute
    first, again, other = (shard(train, 2, 4, seed=s, scheme="dirichlet") for s in (3, 3, 4))

    # Assert
    assert np.array_equal(first.features, again.features)
    assert not np.array_equal(first.labels, other.labels)


# -- models ---------------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_initial_vector_in_another_process(child_digests: dict[str, str]) -> None:
    """build_model with the same seed gives the same bytes in this process and in a fresh one."""
    # Prepare
    adapter = TorchAdapter(build_model("mlp", input_shape=(64,), num_classes=10, seed=7))

    # Execute
    child = child_digests["init"]

    # Assert
    assert child == _vector_digest(adapter)


def test_build_model_leaves_the_global_rng_untouched() -> None:
    """Building a model neither reads nor advances torch's global random state."""
    # Prepare
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)

    # Execute
    first = TorchAdapter(build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=1)).get_vector()
    drawn = torch.rand(3)
    torch.manual_seed(999)
    second = TorchAdapter(build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=1)).get_vector()

    # Assert
    assert torch.equal(drawn, expected)
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize("name", MODELS)
def test_every_model_takes_flat_digits_features(name: str, digits: tuple[ArrayDataset, ArrayDataset]) -> None:
    """Each model maps digits features [n, 64] to 10 logits per sample."""
    # Prepare
    _, test = digits
    model = build_model(name, input_shape=test.features.shape[1:], num_classes=10, seed=0)

    # Execute
    logits = model(torch.from_numpy(test.features[:5]))

    # Assert
    assert logits.shape == (5, 10)


def test_unknown_model_option_raises_config_error() -> None:
    """An option the model does not have is rejected with the accepted ones."""
    # Execute / Assert
    with pytest.raises(ConfigError, match="accepted: none"):
        build_model("logreg", input_shape=(64,), num_classes=10, seed=0, hidden=32)


# -- adapter --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_set_vector_then_get_vector_round_trips(name: str) -> None:
    """get_vector returns exactly the bytes set_vector loaded."""
    # Prepare
    adapter = TorchAdapter(build_model(name, input_shape=(64,), num_classes=10, seed=0))
    vector = np.random.default_rng(1).standard_normal(adapter.dimension).astype(np.float32)

    # Execute
    adapter.set_vector(vector)

    # Assert
    result = adapter.get_vector()
    assert result.dtype == np.dtype("<f4") and result.tobytes() == vector.tobytes()


def test_vector_holds_parameters_and_floating_buffers_in_state_dict_order() -> None:
    """BatchNorm running statistics are in the vector, its integer batch counter is not."""
    # Prepare
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    with torch.no_grad():
        model[1].running_mean.fill_(5.0)

    # Execute
    vector = TorchAdapter(model).get_vector()

    # Assert: weight 12, bias 3, bn weight 3, bn bias 3, running_mean 3, running_var 3
    assert vector.shape == (27,)
    assert np.array_equal(vector[21:24], np.full(3, 5.0, dtype=np.float32))


def test_set_vector_with_the_wrong_length_raises_config_error() -> None:
    """A vector one entry short is rejected and names the expected shape."""
    # Prepare
    adapter = TorchAdapter(build_model("logreg", input_shape=(64,), num_classes=10, seed=0))

    # Execute / Assert
    with pytest.raises(ConfigError, match=r"\(650,\)"):
        adapter.set_vector(np.zeros(649, dtype=np.float32))


def test_local_training_on_a_digits_shard_improves_test_accuracy(digits: tuple[ArrayDataset, ArrayDataset]) -> None:
    """mlp, 5 epochs on a quarter of digits: test accuracy rises from chance to well above it."""
    # Prepare
    train, test = digits
    adapter = TorchAdapter(build_model("mlp", input_shape=(64,), num_classes=10, seed=0), threads=1)
    _, before = adapter.evaluate(test)
    part = shard(train, 0, 4, seed=0)

    # Execute
    samples = adapter.train(part, epochs=5, batch_size=16, lr=0.1, seed=0)

    # Assert
    _, after = adapter.evaluate(test)
    assert samples == len(part)
    assert before < 0.2
    assert after > 0.5


def test_training_is_byte_identical_in_another_process(child_digests: dict[str, str]) -> None:
    """Same start vector, data, seed and one thread: the trained vector has the same bytes elsewhere."""
    # Prepare
    adapter = TorchAdapter(build_model("mlp", input_shape=(64,), num_classes=10, seed=7), threads=1)
    data = shard(load_dataset("digits")[0], 1, 4, seed=0)

    # Execute
    adapter.train(data, epochs=2, batch_size=16, lr=0.05, seed=3, momentum=0.9, weight_decay=1e-4)
    child = child_digests["train"]

    # Assert
    assert child == _vector_digest(adapter)


def test_threads_option_restores_the_previous_thread_count(digits: tuple[ArrayDataset, ArrayDataset]) -> None:
    """threads=1 holds only while training; torch's setting is restored afterwards."""
    # Prepare
    _, test = digits
    previous = torch.get_num_threads()
    adapter = TorchAdapter(build_model("logreg", input_shape=(64,), num_classes=10, seed=0), threads=1)

    # Execute
    adapter.train(test, epochs=1, batch_size=64, lr=0.1, seed=0)

    # Assert
    assert torch.get_num_threads() == previous


def test_labels_outside_the_model_classes_raise_config_error(digits: tuple[ArrayDataset, ArrayDataset]) -> None:
    """Training a 2-class model on 10-class digits is rejected with a hint about num_classes."""
    # Prepare
    _, test = digits
    adapter = TorchAdapter(build_model("logreg", input_shape=(64,), num_classes=2, seed=0))

    # Execute / Assert
    with pytest.raises(ConfigError, match="num_classes"):
        adapter.train(test, epochs=1, batch_size=64, lr=0.1, seed=0)


# -- names ----------------------------------------------------------------------------------------


def test_unknown_dataset_name_raises_config_error_listing_the_names() -> None:
    """load_dataset('mnist') names every dataset it knows."""
    # Execute / Assert
    with pytest.raises(ConfigError) as info:
        load_dataset("mnist")
    assert all(name in str(info.value) for name in DATASETS)


def test_unknown_model_name_raises_config_error_listing_the_names() -> None:
    """build_model('resnet') names every model it knows."""
    # Execute / Assert
    with pytest.raises(ConfigError) as info:
        build_model("resnet", input_shape=(64,), num_classes=10, seed=0)
    assert all(name in str(info.value) for name in MODELS)


def test_unknown_shard_scheme_raises_config_error_listing_the_schemes(
    digits: tuple[ArrayDataset, ArrayDataset],
) -> None:
    """shard(scheme='pathological') names every scheme it knows."""
    # Execute / Assert
    with pytest.raises(ConfigError) as info:
        shard(digits[0], 0, 2, seed=0, scheme="pathological")
    assert all(name in str(info.value) for name in SHARD_SCHEMES)


@pytest.mark.parametrize(("momentum", "weight_decay"), [(0.0, 0.0), (0.9, 0.0), (0.0, 1e-3), (0.9, 1e-4)])
def test_plain_sgd_updates_parameters_byte_for_byte_as_torch_optim_sgd(
    digits: tuple[ArrayDataset, ArrayDataset], momentum: float, weight_decay: float
) -> None:
    """TorchAdapter trains with PlainSGD (no torch._dynamo import); its steps equal torch.optim.SGD's."""
    features = torch.from_numpy(digits[0].features[:96]).float()
    labels = torch.from_numpy(digits[0].labels[:96])
    models = [build_model("cnn", input_shape=(64,), num_classes=10, seed=5) for _ in range(2)]
    ours = PlainSGD(models[0].parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay)
    reference = torch.optim.SGD(models[1].parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay)
    for model, optimizer in ((models[0], ours), (models[1], reference)):
        model.train()
        for start in range(0, 96, 16):
            loss = nn.functional.cross_entropy(model(features[start : start + 16]), labels[start : start + 16])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    vectors = [TorchAdapter(model).get_vector() for model in models]
    assert not np.array_equal(
        vectors[0], TorchAdapter(build_model("cnn", input_shape=(64,), num_classes=10, seed=5)).get_vector()
    )
    assert vectors[0].tobytes() == vectors[1].tobytes()


def test_loading_digits_and_training_import_neither_torch_dynamo_nor_sklearn_datasets(
    child_digests: dict[str, str],
) -> None:
    """A training process (a node) never imports torch._dynamo (torch.optim does) or sklearn.datasets."""
    assert child_digests["imported"] == "-"


@pytest.mark.parametrize("name", ["digits", "breast_cancer"])
def test_bundled_datasets_are_read_as_scikit_learn_loads_them(name: str) -> None:
    """digits and breast_cancer are read from scikit-learn's data files without importing
    sklearn.datasets; the arrays equal what its loaders give, byte for byte."""
    from sklearn import datasets as sklearn_datasets

    from fl_chain.training.datasets import _SKLEARN_LOADERS, _sklearn_data_file

    assert _sklearn_data_file({"digits": "digits.csv.gz", "breast_cancer": "breast_cancer.csv"}[name]) is not None
    features, labels = _SKLEARN_LOADERS[name]()
    bunch = getattr(sklearn_datasets, f"load_{name}")()
    expected = bunch.data.astype(np.float64) / (16.0 if name == "digits" else 1.0)
    assert features.dtype == np.float64 and labels.dtype == np.int64
    assert features.tobytes() == expected.tobytes()
    assert labels.tobytes() == bunch.target.astype(np.int64).tobytes()
