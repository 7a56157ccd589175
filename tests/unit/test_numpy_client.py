"""Flower-style numpy clients as node trainers: the vector mapping, the client contract, a numpy-only
client that learns, a federation of such clients, and clients loaded by ``module:callable``."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fl_chain.chain.coordinator import RoundStatus, TaskStatus
from fl_chain.errors import ConfigError
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.protocol.task import TaskSpec
from fl_chain.training import (
    ArrayDataset,
    ClientTrainer,
    NumPyClient,
    NumPyClientError,
    SoftmaxRegressionClient,
    client_trainer_factory,
    load_client_factory,
    load_dataset,
)
from tests.helpers.federation_checks import fetch_global, recompute_fedavg

TRAINING = {"epochs": 3, "batch_size": 32, "lr": 0.1}


class FakeClient:
    """A client with fixed parameters whose ``fit`` and ``evaluate`` results the test sets."""

    def __init__(self, parameters: Any, fit_result: Any = None, evaluate_result: Any = None) -> None:
        self.parameters = parameters
        self.fit_result = fit_result
        self.evaluate_result = evaluate_result
        self.configs: list[dict[str, Any]] = []
        self.received: list[list[np.ndarray]] = []

    def get_parameters(self, config: dict[str, Any]) -> Any:
        self.configs.append(config)
        return self.parameters

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        self.configs.append(config)
        self.received.append(parameters)
        return self.fit_result if self.fit_result is not None else (parameters, 10, {})

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        self.configs.append(config)
        return self.evaluate_result if self.evaluate_result is not None else (0.5, 10, {"accuracy": 0.75})


def mixed_parameters() -> list[np.ndarray]:
    """A float64 matrix, a float32 scalar, a Fortran-ordered float16 array and a vector."""
    rng = np.random.default_rng(0)
    return [
        rng.standard_normal((3, 4)),
        np.array(2.5, dtype=np.float32),
        np.asfortranarray(rng.standard_normal((2, 3)).astype(np.float16)),
        np.arange(5, dtype=np.float32),
    ]


@pytest.fixture(scope="module")
def digits() -> tuple[ArrayDataset, ArrayDataset]:
    return load_dataset("digits", seed=0)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Writes a module into a directory on sys.path; ``user_module(name, source)``."""
    names: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


# -- the vector mapping ---------------------------------------------------------------------------


def test_flatten_then_unflatten_round_trips_mixed_shapes_and_dtypes() -> None:
    """Matrices, 0-d scalars and Fortran-ordered arrays come back with their shapes and dtypes."""
    # Prepare
    arrays = mixed_parameters()
    trainer = ClientTrainer(FakeClient(arrays))

    # Execute
    vector = trainer.initial_vector()
    back = trainer.unflatten(vector)

    # Assert
    assert vector.dtype == np.dtype("<f4") and vector.shape == (12 + 1 + 6 + 5,)
    assert trainer.shapes == ((3, 4), (), (2, 3), (5,))
    assert [a.dtype for a in back] == [np.float64, np.float32, np.float16, np.float32]
    for original, restored in zip(arrays, back):
        assert restored.shape == original.shape
        np.testing.assert_array_equal(restored, original.astype(np.float32).astype(original.dtype))
    assert trainer.flatten(back).tobytes() == vector.tobytes()


def test_vector_concatenates_arrays_in_list_order_each_in_c_order_as_float32() -> None:
    """The layout is explicit: list order, row-major, float64 rounded to float32."""
    # Prepare
    arrays = mixed_parameters()

    # Execute
    vector = ClientTrainer(FakeClient(arrays)).initial_vector()

    # Assert
    expected = np.concatenate([np.asarray(a, dtype=np.float32).ravel(order="C") for a in arrays])
    assert vector.tobytes() == expected.astype("<f4").tobytes()


def test_unflatten_gives_fresh_arrays_the_client_may_change() -> None:
    """Arrays handed to the client do not alias the vector they came from."""
    # Prepare
    trainer = ClientTrainer(FakeClient([np.zeros(4, dtype=np.float32)]))
    vector = trainer.initial_vector()

    # Execute
    trainer.unflatten(vector)[0][:] = 7.0

    # Assert
    assert not vector.any()


def test_unflatten_of_a_vector_with_the_wrong_length_raises_config_error() -> None:
    """A vector of another model is refused with the expected shape."""
    # Prepare
    trainer = ClientTrainer(FakeClient([np.zeros((2, 2))]))

    # Execute / Assert
    with pytest.raises(ConfigError, match=r"must have shape \(4,\); got \(5,\)"):
        trainer.unflatten(np.zeros(5, dtype=np.float32))


# -- the trainer protocol -------------------------------------------------------------------------


def test_train_passes_the_training_config_with_the_seed_and_round_to_fit() -> None:
    """fit sees [training] plus the round's seed; get_parameters and evaluate see [training] only."""
    # Prepare
    client = FakeClient([np.ones(3)])
    trainer = ClientTrainer(client, config=TRAINING)

    # Execute
    trainer.train(trainer.initial_vector(), seed=42, round_=2)
    trainer.train(trainer.initial_vector(), seed=43)
    trainer.evaluate(trainer.initial_vector())

    # Assert
    get_config, fit_config, fit_without_round, evaluate_config = client.configs
    assert get_config == evaluate_config == TRAINING
    assert fit_config == {**TRAINING, "seed": 42, "round": 2}
    assert fit_without_round == {**TRAINING, "seed": 43}


def test_train_returns_the_flattened_update_its_sample_count_and_numeric_metrics() -> None:
    """The update is flattened like the initial model; non-numeric metrics are dropped."""
    # Prepare
    update = [np.full((2, 2), 0.1), np.array(-1.0)]
    metrics = {"train_loss": np.float64(0.25), "epochs": 3, "note": "ok", "flag": True}
    trainer = ClientTrainer(FakeClient([np.zeros((2, 2)), np.array(0.0)], fit_result=(update, np.int64(17), metrics)))

    # Execute
    vector, samples, reported = trainer.train(trainer.initial_vector(), seed=1)

    # Assert
    assert vector.dtype == np.float32
    assert vector.tobytes() == np.array([0.1] * 4 + [-1.0], dtype="<f4").tobytes()
    assert samples == 17 and type(samples) is int
    assert reported == {"train_loss": 0.25, "epochs": 3.0}


def test_evaluate_reports_test_loss_and_prefixed_metrics() -> None:
    """accuracy becomes test_accuracy, as the node runtime and simulate expect."""
    # Prepare
    trainer = ClientTrainer(FakeClient([np.zeros(2)], evaluate_result=(0.5, 10, {"accuracy": 0.75, "tag": "x"})))

    # Execute
    metrics = trainer.evaluate(trainer.initial_vector())

    # Assert
    assert metrics == {"test_loss": 0.5, "test_accuracy": 0.75}


def test_evaluate_on_no_examples_reports_nothing() -> None:
    """A client without evaluation data returns zero examples: no metrics, like TorchTrainer."""
    # Prepare
    trainer = ClientTrainer(FakeClient([np.zeros(2)], evaluate_result=(0.0, 0, {})))

    # Execute / Assert
    assert trainer.evaluate(trainer.initial_vector()) == {}


def test_a_flower_numpy_client_subclass_is_a_numpy_client() -> None:
    """A subclass of flwr.client.NumPyClient plugs in unchanged."""
    # Prepare
    flwr_client = pytest.importorskip("flwr.client")

    class FlowerClient(flwr_client.NumPyClient):  # type: ignore[misc, name-defined]
        def get_parameters(self, config):  # type: ignore[no-untyped-def]
            return [np.ones(3, dtype=np.float32)]

        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            return [p * 2 for p in parameters], 5, {}

    # Execute
    trainer = ClientTrainer(FlowerClient())
    vector, samples, _ = trainer.train(trainer.initial_vector(), seed=0)

    # Assert
    assert isinstance(FlowerClient(), NumPyClient)
    assert vector.tolist() == [2.0, 2.0, 2.0] and samples == 5


# -- the client contract --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (np.zeros(3), r"returned ndarray; expected a list of numpy arrays"),
        ([np.zeros(3), 1.5], r"item 1 is float, not a numpy array"),
        ([[0.0, 1.0]], r"item 0 is list, not a numpy array"),
        ([np.zeros(3, dtype=np.int64)], r"array 0 has dtype int64; only floating-point"),
        ([np.zeros(3, dtype=np.complex64)], r"array 0 has dtype complex64"),
        ([], r"returned no values"),
        ([np.zeros((0, 3))], r"returned no values; the model needs at least one parameter"),
    ],
)
def test_get_parameters_that_are_not_a_list_of_float_arrays_are_refused(parameters: Any, message: str) -> None:
    """The initial model must be a non-empty list of floating-point numpy arrays."""
    # Execute / Assert
    with pytest.raises(NumPyClientError, match=r"^FakeClient\.get_parameters.*" + message):
        ClientTrainer(FakeClient(parameters))


def test_an_object_without_the_client_methods_is_refused() -> None:
    """Anything lacking get_parameters, fit or evaluate is not a NumPyClient."""

    # Prepare
    class Partial:
        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return [np.zeros(1)]

    # Execute / Assert
    with pytest.raises(
        NumPyClientError, match="Partial is not a NumPyClient: it needs get_parameters, fit and evaluate"
    ):
        ClientTrainer(Partial())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fit_result", "message"),
    [
        (([np.zeros(2)], 10, {}), r"returned 1 arrays; expected 2"),
        (([np.zeros(2), np.zeros(2), np.zeros(2)], 10, {}), r"returned 3 arrays; expected 2"),
        (([np.zeros(3), np.zeros(())], 10, {}), r"array 0 has shape \(3,\); expected \(2,\)"),
        (([np.zeros(2), np.zeros((1,))], 10, {}), r"array 1 has shape \(1,\); expected \(\)"),
        (([np.zeros(2), 0.0], 10, {}), r"item 1 is float, not a numpy array"),
        (([np.zeros(2), np.array(1)], 10, {}), r"array 1 has dtype int64"),
        ((np.zeros(2), 10, {}), r"returned ndarray; expected a list"),
        (([np.zeros(2), np.zeros(())], 0, {}), r"num_examples=0; it must be a positive int"),
        (([np.zeros(2), np.zeros(())], -4, {}), r"num_examples=-4; it must be a positive int"),
        (([np.zeros(2), np.zeros(())], 10.0, {}), r"num_examples=10\.0; it must be a positive int"),
        (([np.zeros(2), np.zeros(())], True, {}), r"num_examples=True; it must be a positive int"),
        (([np.zeros(2), np.zeros(())], 10, [("loss", 1.0)]), r"metrics of type list; expected a dict"),
        (([np.zeros(2), np.zeros(())], 10), r"must return a tuple of 3 values; got 2 values"),
        ("not a tuple", r"must return a tuple of 3 values; got str"),
    ],
)
def test_fit_results_that_break_the_contract_are_refused(fit_result: Any, message: str) -> None:
    """Each way fit can go wrong is a one-line NumPyClientError naming the client's method."""
    # Prepare
    trainer = ClientTrainer(FakeClient([np.zeros(2), np.zeros(())], fit_result=fit_result))

    # Execute / Assert
    with pytest.raises(NumPyClientError, match=r"^FakeClient\.fit.*" + message):
        trainer.train(trainer.initial_vector(), seed=0)


@pytest.mark.parametrize(
    ("evaluate_result", "message"),
    [
        (("0.5", 10, {}), r"loss='0\.5'; it must be a float"),
        ((None, 10, {}), r"loss=None; it must be a float"),
        ((0.5, -1, {}), r"num_examples=-1; it must be a non-negative int"),
        ((0.5, 2.0, {}), r"num_examples=2\.0; it must be a non-negative int"),
        ((0.5, 10, None), r"metrics of type NoneType; expected a dict"),
        ((0.5, 10), r"must return a tuple of 3 values; got 2 values"),
    ],
)
def test_evaluate_results_that_break_the_contract_are_refused(evaluate_result: Any, message: str) -> None:
    """Each way evaluate can go wrong is a one-line NumPyClientError naming the client's method."""
    # Prepare
    trainer = ClientTrainer(FakeClient([np.zeros(2)], evaluate_result=evaluate_result))

    # Execute / Assert
    with pytest.raises(NumPyClientError, match=r"^FakeClient\.evaluate.*" + message):
        trainer.evaluate(trainer.initial_vector())


def test_non_finite_updates_pass_through_for_the_aggregation_to_judge() -> None:
    """NaN and inf are not the trainer's business: the strategy validates updates."""
    # Prepare
    trainer = ClientTrainer(FakeClient([np.zeros(2)], fit_result=([np.array([np.nan, np.inf])], 1, {})))

    # Execute
    vector, _, _ = trainer.train(trainer.initial_vector(), seed=0)

    # Assert
    assert np.isnan(vector[0]) and np.isposinf(vector[1])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**TRAINING, "seed": 1}, r"\['seed'\] are set per round by fl-chain; remove them from \[training\]"),
        ({"round": 0, "seed": 1}, r"\['round', 'seed'\] are set per round"),
        ({"layers": [32, 32]}, r"training config 'layers' must be a bool, bytes, float, int or str; got list"),
    ],
)
def test_training_config_with_reserved_keys_or_non_scalar_values_raises_config_error(
    config: dict[str, Any], message: str
) -> None:
    """[training] becomes the client's config: it must hold scalars and leave seed and round to us."""
    # Execute / Assert
    with pytest.raises(ConfigError, match=message):
        ClientTrainer(FakeClient([np.zeros(2)]), config=config)


# -- a numpy-only client --------------------------------------------------------------------------


def test_softmax_regression_client_learns_digits_above_85_percent(digits: tuple[ArrayDataset, ArrayDataset]) -> None:
    """Three epochs of numpy SGD on the digits train split reach > 85% test accuracy."""
    # Prepare
    train, test = digits
    trainer = ClientTrainer(SoftmaxRegressionClient(train, test, num_classes=10, seed=1), config=TRAINING)
    before = trainer.evaluate(trainer.initial_vector())

    # Execute
    vector, samples, metrics = trainer.train(trainer.initial_vector(), seed=7)
    after = trainer.evaluate(vector)

    # Assert
    assert samples == len(train)
    assert before["test_accuracy"] < 0.3
    assert after["test_accuracy"] > 0.85 and after["test_loss"] < before["test_loss"]
    assert metrics["train_accuracy"] > 0.85


def test_softmax_regression_client_is_byte_identical_for_a_seed(digits: tuple[ArrayDataset, ArrayDataset]) -> None:
    """Same constructor seed, same initial model; same round seed, same update; another seed differs."""
    # Prepare
    train, test = digits
    first = ClientTrainer(SoftmaxRegressionClient(train, test, num_classes=10, seed=1), config=TRAINING)
    second = ClientTrainer(SoftmaxRegressionClient(train, test, num_classes=10, seed=1), config=TRAINING)

    # Execute
    a, _, _ = first.train(first.initial_vector(), seed=7)
    b, _, _ = second.train(second.initial_vector(), seed=7)
    c, _, _ = second.train(second.initial_vector(), seed=8)

    # Assert
    assert first.initial_vector().tobytes() == second.initial_vector().tobytes()
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_softmax_regression_client_parameters_are_float32_weights_and_bias(
    digits: tuple[ArrayDataset, ArrayDataset],
) -> None:
    """[weights (features, classes), bias (classes,)], float32."""
    # Prepare
    client = SoftmaxRegressionClient(digits[0], None, num_classes=10, seed=0)

    # Execute
    weights, bias = client.get_parameters({})

    # Assert
    assert weights.shape == (64, 10) and bias.shape == (10,)
    assert weights.dtype == bias.dtype == np.float32
    assert client.evaluate([weights, bias], {}) == (0.0, 0, {})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, r"num_classes must be at least 2; got 1"),
        ({"num_classes": 5}, r"train labels must be in 0\.\.4; check num_classes"),
        ({"empty": True}, r"cannot train on an empty dataset"),
    ],
)
def test_softmax_regression_client_with_bad_data_or_classes_raises_config_error(
    digits: tuple[ArrayDataset, ArrayDataset], kwargs: dict[str, Any], message: str
) -> None:
    """Class counts and data are checked when the client is built."""
    # Prepare
    train = digits[0].subset(np.arange(0)) if kwargs.pop("empty", False) else digits[0]

    # Execute / Assert
    with pytest.raises(ConfigError, match=message):
        SoftmaxRegressionClient(train, digits[1], seed=0, **{"num_classes": 10, **kwargs})


def test_softmax_regression_fit_with_bad_hyperparameters_raises_config_error(
    digits: tuple[ArrayDataset, ArrayDataset],
) -> None:
    """A non-positive learning rate is named in the message."""
    # Prepare
    client = SoftmaxRegressionClient(digits[0], None, num_classes=10, seed=0)

    # Execute / Assert
    with pytest.raises(ConfigError, match=r"lr > 0.*lr=0\.0"):
        client.fit(client.get_parameters({}), {"lr": 0.0, "seed": 1})


# -- a federation of numpy clients ----------------------------------------------------------------


def federation_spec() -> TaskSpec:
    return TaskSpec.from_dict({
        "protocol": {"rounds": 3, "partitions": 4, "replication": 2, "quorum": 2, "min_contributors": 2,
                     "update_duration": 3600, "aggregation_duration": 3600},
        "model": {"name": "logreg", "seed": 3},
        "dataset": {"name": "digits", "split": "iid"},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.2},
    })  # fmt: skip


def test_four_numpy_client_nodes_finalize_three_rounds_whose_globals_equal_reference_fedavg(tmp_path: Path) -> None:
    """Clients loaded as examples.numpy_client:make_client train a federation on the embedded chain."""
    # Prepare
    spec = federation_spec()
    trainer_factory = client_trainer_factory(load_client_factory("examples.numpy_client:make_client"))
    train, test = load_dataset("digits")
    # The task's initial model on chain is the client's (build_federation passes it to create_task).
    initial = trainer_factory(spec, train, test).initial_vector()
    chain, coordinator, task_id, nodes = build_federation(
        spec, nodes=4, state_root=tmp_path, trainer_factory=trainer_factory
    )

    # Execute
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()

    # Assert
    assert status == TaskStatus.COMPLETED
    assert all(isinstance(node.trainer, ClientTrainer) for node in nodes)
    assert [coordinator.get_round(task_id, r).status for r in range(3)] == [RoundStatus.FINALIZED] * 3
    storage, evaluator = nodes[0].storage, nodes[0].trainer
    accuracies = [evaluator.evaluate(initial)["test_accuracy"]]
    for round_ in range(3):
        global_ = fetch_global(storage, coordinator, task_id, round_, initial.size)
        expected = recompute_fedavg(storage, coordinator, task_id, round_)
        assert global_.tobytes() == expected.tobytes(), f"round {round_}"
        accuracies.append(evaluator.evaluate(global_)["test_accuracy"])
    assert all(later > earlier for earlier, later in itertools.pairwise(accuracies)), accuracies
    assert accuracies[0] < 0.2 and accuracies[3] > 0.85
    final = np.load(tmp_path / "node-0" / f"task-{task_id}" / "final-model.npy")
    assert final.tobytes() == global_.tobytes()


# -- loading user clients -------------------------------------------------------------------------


def test_load_client_factory_loads_the_example_and_its_clients_are_numpy_clients(
    digits: tuple[ArrayDataset, ArrayDataset],
) -> None:
    """examples.numpy_client:make_client builds a SoftmaxRegressionClient for the task's classes."""
    # Prepare
    factory = load_client_factory("examples.numpy_client:make_client")

    # Execute
    client = factory(federation_spec(), *digits)

    # Assert
    assert factory.__name__ == "make_client"
    assert isinstance(client, SoftmaxRegressionClient) and isinstance(client, NumPyClient)
    assert client.num_classes == 10 and client.seed == 3


@pytest.mark.parametrize(
    "target",
    ["examples.numpy_client", "examples.numpy_client:", ":make_client", "examples numpy:make_client",
     "examples.numpy_client:make_client:x", "examples/numpy_client.py:make_client", ""],
)  # fmt: skip
def test_load_client_factory_refuses_a_malformed_reference(target: str) -> None:
    """The reference must be package.module:callable."""
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"^--client must look like package\.module:callable; got "):
        load_client_factory(target)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("fl_chain_no_such_module:make", r"no module named 'fl_chain_no_such_module' here or on the Python path"),
        ("examples.no_such_module:make", r"no module named 'examples\.no_such_module'"),
        ("examples.numpy_client:make_clients", r"examples\.numpy_client has no attribute 'make_clients'"),
        ("fl_chain.training.numpy_client:RESERVED_CONFIG_KEYS", r"RESERVED_CONFIG_KEYS is a tuple, not a callable"),
    ],
)
def test_load_client_factory_names_what_is_missing(target: str, message: str) -> None:
    """A missing module, attribute or a non-callable is a one-line ConfigError."""
    # Execute / Assert
    with pytest.raises(ConfigError, match=f"^--client {target}: " + message):
        load_client_factory(target)


def test_load_client_factory_reports_a_failing_import_in_one_line(user_module: Any) -> None:
    """A module that raises, or imports a missing dependency, is reported as such."""
    # Prepare
    broken = user_module("fl_chain_test_broken_client", "raise RuntimeError('no GPU here')\n")
    needs = user_module("fl_chain_test_needy_client", "import fl_chain_missing_dependency\n")

    # Execute / Assert
    with pytest.raises(ConfigError, match=f"importing {broken} failed: RuntimeError: no GPU here$"):
        load_client_factory(f"{broken}:make")
    with pytest.raises(ConfigError, match=f"importing {needs} failed: No module named 'fl_chain_missing_dependency'$"):
        load_client_factory(f"{needs}:make")


def test_loaded_factory_that_returns_no_numpy_client_raises_numpy_client_error(
    user_module: Any, digits: tuple[ArrayDataset, ArrayDataset]
) -> None:
    """The returned object is checked when the factory is called."""
    # Prepare
    name = user_module("fl_chain_test_wrong_client", "def make(spec, train, test):\n    return {'fit': None}\n")
    factory = load_client_factory(f"{name}:make")

    # Execute / Assert
    with pytest.raises(NumPyClientError, match=f"--client {name}:make returned a dict, not a NumPyClient"):
        factory(federation_spec(), *digits)
