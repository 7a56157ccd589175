"""Flower-style numpy clients as node trainers: any framework that speaks lists of arrays plugs in.

A :class:`NumPyClient` hands its model over as a list of numpy arrays, as Flower's
``flwr.client.NumPyClient`` does; :class:`ClientTrainer` turns such a client into the node's
:class:`~fl_chain.training.trainer.Trainer` by mapping the list to and from the flat little-endian
float32 vector that nodes exchange. :class:`SoftmaxRegressionClient` is a client written with numpy
alone. This module does not import torch (the ``fl_chain.training`` package still loads it for
:class:`TorchAdapter`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from fl_chain.errors import ConfigError, NumPyClientError
from fl_chain.training.datasets import ArrayDataset

if TYPE_CHECKING:
    from fl_chain.protocol.task import TaskSpec

__all__ = [
    "ClientFactory",
    "ClientTrainer",
    "NDArrays",
    "NumPyClient",
    "NumPyClientError",
    "Scalar",
    "SoftmaxRegressionClient",
    "client_trainer_factory",
]

#: A config or metric value, as in Flower.
Scalar = bool | bytes | float | int | str
#: A model as a list of arrays, as in Flower.
NDArrays = list[np.ndarray]
#: Makes one node's client from the task, its training shard and the shared test split (or ``None``).
ClientFactory = Callable[["TaskSpec", ArrayDataset, "ArrayDataset | None"], "NumPyClient"]

#: Config keys that :meth:`ClientTrainer.train` sets itself.
RESERVED_CONFIG_KEYS = ("round", "seed")


@runtime_checkable
class NumPyClient(Protocol):
    """A model and its local data behind three methods, as Flower's ``NumPyClient``.

    A subclass of ``flwr.client.NumPyClient`` satisfies this protocol as it is.
    """

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        """The current model as a list of floating-point arrays (the same shapes every call)."""

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Train from ``parameters`` on local data.

        Returns
        -------
        (parameters, num_examples, metrics):
            The trained arrays (same count and shapes), the positive number of examples trained on
            (the update's FedAvg weight) and any metrics.
        """

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[float, int, dict[str, Scalar]]:
        """Loss of ``parameters`` on local evaluation data, the number of examples and metrics
        (an ``"accuracy"`` entry is reported as ``test_accuracy``)."""


class ClientTrainer:
    """A :class:`NumPyClient` seen as the node's ``Trainer``.

    The vector is the concatenation, in list order, of the client's arrays, each flattened in
    row-major (C) order and cast to little-endian float32. The shapes and dtypes come from
    ``get_parameters`` at construction; the client receives arrays of those shapes and dtypes.

    Parameters
    ----------
    client:
        The client; ``client.get_parameters`` is called once, here, for the initial model.
    config:
        Passed to every client call, usually the task's ``[training]`` section. :meth:`train` adds
        ``"seed"`` (the round's training seed) and, when given, ``"round"``.

    Raises
    ------
    NumPyClientError
        If ``client`` lacks a protocol method, or ``get_parameters`` does not return a list of
        floating-point arrays holding at least one value.
    ConfigError
        If ``config`` uses a reserved key (``round``, ``seed``) or holds a non-scalar value.
    """

    def __init__(self, client: NumPyClient, *, config: Mapping[str, Scalar] | None = None) -> None:
        if not isinstance(client, NumPyClient):
            raise NumPyClientError(
                f"{type(client).__name__} is not a NumPyClient: it needs get_parameters, fit and evaluate"
            )
        self.client = client
        self.config = _checked_config(config or {})
        #: Examples the latest :meth:`evaluate` measured on (a node publishes it with its evaluation).
        self.test_samples = 0
        name = type(client).__name__
        arrays = _checked_arrays(client.get_parameters(dict(self.config)), f"{name}.get_parameters")
        if sum(a.size for a in arrays) == 0:
            raise NumPyClientError(f"{name}.get_parameters returned no values; the model needs at least one parameter")
        self._shapes = tuple(a.shape for a in arrays)
        self._dtypes = tuple(a.dtype for a in arrays)
        self._sizes = tuple(int(a.size) for a in arrays)
        self._initial = self.flatten(arrays)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shape of each array, in list order."""
        return self._shapes

    @property
    def dtypes(self) -> tuple[np.dtype[Any], ...]:
        """Dtype of each array as the client gave it (the vector is float32 regardless)."""
        return self._dtypes

    @property
    def dimension(self) -> int:
        """Length D of the vector."""
        return sum(self._sizes)

    def flatten(self, arrays: Sequence[np.ndarray], *, source: str = "arrays") -> np.ndarray:
        """The arrays as one new little-endian float32 vector of length :attr:`dimension`.

        Raises
        ------
        NumPyClientError
            If ``arrays`` is not a list of floating-point arrays with the recorded count and shapes;
            ``source`` names the caller in the message.
        """
        checked = _checked_arrays(arrays, source)
        if len(checked) != len(self._shapes):
            raise NumPyClientError(
                f"{source} returned {len(checked)} arrays; expected {len(self._shapes)} as from get_parameters"
            )
        for index, (array, shape) in enumerate(zip(checked, self._shapes)):
            if array.shape != shape:
                raise NumPyClientError(
                    f"{source}: array {index} has shape {array.shape}; expected {shape} as from get_parameters"
                )
        return np.concatenate([a.astype("<f4", copy=False).reshape(-1) for a in checked])

    def unflatten(self, vector: np.ndarray) -> NDArrays:
        """The exact inverse of :meth:`flatten` (up to the float32 rounding): new arrays with the
        recorded shapes and dtypes.

        Raises
        ------
        ConfigError
            If ``vector`` is not one-dimensional with :attr:`dimension` entries.
        """
        values = np.asarray(vector)
        if values.ndim != 1 or values.shape[0] != self.dimension:
            raise ConfigError(f"model vector must have shape ({self.dimension},); got {values.shape}")
        arrays = []
        offset = 0
        for shape, dtype, size in zip(self._shapes, self._dtypes, self._sizes):
            arrays.append(values[offset : offset + size].reshape(shape).astype(dtype))
            offset += size
        return arrays

    def initial_vector(self) -> np.ndarray:
        """The client's parameters at construction, as a vector."""
        return self._initial.copy()

    def train(
        self, vector: np.ndarray, *, seed: int, round_: int | None = None
    ) -> tuple[np.ndarray, int, dict[str, float]]:
        """Call ``client.fit`` on ``vector`` with the config plus ``seed`` (and ``round`` if given).

        Returns
        -------
        (vector, samples, metrics):
            The trained vector, ``num_examples`` and the numeric metrics as floats (others dropped).

        Raises
        ------
        NumPyClientError
            If ``fit`` does not return ``(arrays, num_examples, metrics)`` with arrays like
            ``get_parameters``'s, a positive integer ``num_examples`` and a dict of metrics.
        """
        config: dict[str, Scalar] = {**self.config, "seed": int(seed)}
        if round_ is not None:
            config["round"] = int(round_)
        source = f"{type(self.client).__name__}.fit"
        arrays, num_examples, metrics = _unpack(self.client.fit(self.unflatten(vector), config), source)
        if not _is_int(num_examples) or num_examples < 1:
            raise NumPyClientError(f"{source} returned num_examples={num_examples!r}; it must be a positive int")
        return self.flatten(arrays, source=source), int(num_examples), _numeric(metrics)

    def evaluate(self, vector: np.ndarray) -> dict[str, float]:
        """``client.evaluate`` on ``vector``: ``test_loss`` and ``test_<name>`` for each numeric
        metric (so ``accuracy`` becomes ``test_accuracy``); empty if it evaluated no examples.

        Raises
        ------
        NumPyClientError
            If ``evaluate`` does not return ``(loss, num_examples, metrics)`` with a real loss, a
            non-negative integer ``num_examples`` and a dict of metrics.
        """
        source = f"{type(self.client).__name__}.evaluate"
        loss, num_examples, metrics = _unpack(self.client.evaluate(self.unflatten(vector), dict(self.config)), source)
        if not _is_real(loss):
            raise NumPyClientError(f"{source} returned loss={loss!r}; it must be a float")
        if not _is_int(num_examples) or num_examples < 0:
            raise NumPyClientError(f"{source} returned num_examples={num_examples!r}; it must be a non-negative int")
        self.test_samples = int(num_examples)
        if num_examples == 0:
            return {}
        return {"test_loss": float(loss), **{f"test_{k}": v for k, v in _numeric(metrics).items() if k != "loss"}}


def client_trainer_factory(
    factory: ClientFactory,
) -> Callable[[TaskSpec, ArrayDataset, ArrayDataset | None], ClientTrainer]:
    """A trainer factory for ``build_federation`` or a node: ``factory``'s client in a
    :class:`ClientTrainer` configured with the task's ``[training]`` section."""

    def make_trainer(spec: TaskSpec, train: ArrayDataset, test: ArrayDataset | None) -> ClientTrainer:
        return ClientTrainer(factory(spec, train, test), config=spec.training)

    return make_trainer


class SoftmaxRegressionClient:
    """Multinomial logistic regression trained with minibatch SGD, in numpy only.

    Parameters are ``[weights (features, num_classes), bias (num_classes,)]`` in float32; the
    arithmetic runs in float64. ``fit`` reads ``epochs``, ``batch_size``, ``lr``, the optional
    ``weight_decay`` and ``seed`` (of the minibatch shuffle; default: the constructor's) from its
    config.

    Parameters
    ----------
    train:
        Local training data; features are flattened to ``[n, features]``.
    test:
        Evaluation data, or ``None`` (then ``evaluate`` reports no examples).
    num_classes:
        Number of classes (>= 2), the same on every node.
    seed:
        Seed of the initial parameters (small normal weights, zero bias), the same on every node.

    Raises
    ------
    ConfigError
        For an empty training set, test features of another size than the training features,
        ``num_classes < 2`` or labels outside ``0 .. num_classes - 1``.
    """

    def __init__(self, train: ArrayDataset, test: ArrayDataset | None, *, num_classes: int, seed: int) -> None:
        if len(train) == 0:
            raise ConfigError("cannot train on an empty dataset; give this node at least one sample")
        if int(num_classes) < 2:
            raise ConfigError(f"num_classes must be at least 2; got {num_classes}")
        for name, data in (("train", train), ("test", test)):
            if data is not None and len(data) and (int(data.labels.min()) < 0 or int(data.labels.max()) >= num_classes):
                raise ConfigError(f"{name} labels must be in 0..{num_classes - 1}; check num_classes")
        features = int(np.prod(train.features.shape[1:]))
        if test is not None and int(np.prod(test.features.shape[1:])) != features:
            raise ConfigError(
                f"test samples have shape {test.features.shape[1:]}; training samples {train.features.shape[1:]}"
            )
        self.train = train
        self.test = test
        self.num_classes = int(num_classes)
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        self._weights = (rng.standard_normal((features, self.num_classes)) * 0.01).astype(np.float32)
        self._bias = np.zeros(self.num_classes, dtype=np.float32)

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        """Copies of ``[weights, bias]``."""
        return [self._weights.copy(), self._bias.copy()]

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """SGD on the mean cross-entropy from ``parameters``; a seeded shuffle each epoch.

        Raises
        ------
        ConfigError
            For non-positive ``epochs``, ``batch_size`` or ``lr``, a negative ``weight_decay``, or
            parameters of other shapes than :meth:`get_parameters`'s.
        """
        epochs, batch_size = int(config.get("epochs", 1)), int(config.get("batch_size", 32))
        lr, decay = float(config.get("lr", 0.1)), float(config.get("weight_decay", 0.0))
        if epochs < 1 or batch_size < 1 or not lr > 0 or decay < 0:
            raise ConfigError(
                f"training needs epochs >= 1, batch_size >= 1, lr > 0, weight_decay >= 0; "
                f"got epochs={epochs}, batch_size={batch_size}, lr={lr}, weight_decay={decay}"
            )
        weights, bias = self._unpack(parameters)
        x, y = self._xy(self.train)
        rng = np.random.default_rng(int(config.get("seed", self.seed)))
        for _ in range(epochs):
            order = rng.permutation(len(y))
            for start in range(0, len(y), batch_size):
                batch = order[start : start + batch_size]
                error = _softmax(x[batch] @ weights + bias)
                error[np.arange(len(batch)), y[batch]] -= 1.0
                weights -= lr * (x[batch].T @ error / len(batch) + decay * weights)
                bias -= lr * error.mean(axis=0)
        self._weights, self._bias = weights.astype(np.float32), bias.astype(np.float32)
        loss, accuracy = self._score(self.train, *self._unpack([self._weights, self._bias]))
        return self.get_parameters(config), len(y), {"train_loss": loss, "train_accuracy": accuracy}

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[float, int, dict[str, Scalar]]:
        """Mean cross-entropy and ``accuracy`` of ``parameters`` on the test data."""
        if self.test is None or len(self.test) == 0:
            return 0.0, 0, {}
        loss, accuracy = self._score(self.test, *self._unpack(parameters))
        return loss, len(self.test), {"accuracy": accuracy}

    def _unpack(self, parameters: NDArrays) -> tuple[np.ndarray, np.ndarray]:
        shapes = [np.shape(p) for p in parameters]
        if shapes != [self._weights.shape, self._bias.shape]:
            raise ConfigError(f"parameters must have shapes {[self._weights.shape, self._bias.shape]}; got {shapes}")
        weights, bias = (np.array(p, dtype=np.float64) for p in parameters)
        return weights, bias

    def _score(self, data: ArrayDataset, weights: np.ndarray, bias: np.ndarray) -> tuple[float, float]:
        x, y = self._xy(data)
        logits = x @ weights + bias
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -float(log_probs[np.arange(len(y)), y].mean())
        return loss, float((logits.argmax(axis=1) == y).mean())

    @staticmethod
    def _xy(data: ArrayDataset) -> tuple[np.ndarray, np.ndarray]:
        return data.features.reshape(len(data), -1).astype(np.float64), data.labels


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _checked_config(config: Mapping[str, Scalar]) -> dict[str, Scalar]:
    reserved = sorted(set(config) & set(RESERVED_CONFIG_KEYS))
    if reserved:
        raise ConfigError(
            f"training config key(s) {reserved} are set per round by fl-chain; remove them from [training]"
        )
    for key, value in config.items():
        if not isinstance(value, (bool, bytes, float, int, str)):
            raise ConfigError(
                f"training config {key!r} must be a bool, bytes, float, int or str; got {type(value).__name__}"
            )
    return dict(config)


def _checked_arrays(arrays: object, source: str) -> list[np.ndarray]:
    if not isinstance(arrays, (list, tuple)):
        raise NumPyClientError(f"{source} returned {type(arrays).__name__}; expected a list of numpy arrays")
    for index, array in enumerate(arrays):
        if not isinstance(array, np.ndarray):
            raise NumPyClientError(
                f"{source}: item {index} is {type(array).__name__}, not a numpy array; wrap it in np.asarray"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise NumPyClientError(
                f"{source}: array {index} has dtype {array.dtype}; only floating-point arrays can be averaged"
            )
    return list(arrays)


def _unpack(result: object, source: str) -> tuple[Any, Any, dict[str, Scalar]]:
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        got = f"{len(result)} values" if isinstance(result, (tuple, list)) else type(result).__name__
        raise NumPyClientError(f"{source} must return a tuple of 3 values; got {got}")
    first, second, metrics = result
    if not isinstance(metrics, dict):
        raise NumPyClientError(f"{source} returned metrics of type {type(metrics).__name__}; expected a dict")
    return first, second, metrics


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _numeric(metrics: Mapping[str, object]) -> dict[str, float]:
    return {str(k): float(v) for k, v in metrics.items() if _is_real(v)}  # type: ignore[arg-type]
