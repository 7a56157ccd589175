"""A torch module seen as the flat float32 vector that nodes exchange, with seeded local training."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fl_chain.errors import ConfigError
from fl_chain.training.datasets import ArrayDataset

__all__ = ["PlainSGD", "TorchAdapter"]


class PlainSGD:
    """SGD with momentum and weight decay, the update ``torch.optim.SGD`` makes on CPU tensors (its
    single-tensor path: no dampening, no Nesterov), byte for byte (``tests/unit/test_training.py``).

    Not ``torch.optim.SGD`` itself: constructing any ``torch.optim`` optimizer imports ``torch._dynamo``,
    about 1.5 s of CPU in every process that trains (each node process).
    """

    def __init__(self, params: Iterator[nn.Parameter], *, lr: float, momentum: float, weight_decay: float) -> None:
        self.params = list(params)
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self._momentum_buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (``set_to_none=True``)."""
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for i, param in enumerate(self.params):
            if param.grad is None:
                continue
            grad = param.grad
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            if self.momentum != 0:
                buffer = self._momentum_buffers[i]
                if buffer is None:
                    buffer = grad.detach().clone()
                    self._momentum_buffers[i] = buffer
                else:
                    buffer.mul_(self.momentum).add_(grad, alpha=1)
                grad = buffer
            param.add_(grad, alpha=-self.lr)


class TorchAdapter:
    """Maps an ``nn.Module`` to and from a flat vector, and trains it with plain SGD.

    The vector is the concatenation, in ``model.state_dict()`` order, of every floating-point entry
    (parameters and floating buffers such as BatchNorm running statistics), each flattened in
    row-major order and cast to little-endian float32. Integer buffers (``num_batches_tracked``) are
    not part of it; a tensor shared under several names appears once, at its first name.

    Parameters
    ----------
    model:
        The module; it is updated in place.
    threads:
        If given, ``torch.set_num_threads(threads)`` holds while :meth:`train` and :meth:`evaluate`
        run, and the previous value is restored afterwards. ``None`` leaves torch's setting alone.
        With one thread, CPU training is byte-reproducible across processes.
    """

    def __init__(self, model: nn.Module, *, threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be a positive integer or None; got {threads}")
        self.model = model
        self.threads = threads

    @property
    def dimension(self) -> int:
        """Length D of the vector."""
        return sum(t.numel() for t in self._tensors())

    def get_vector(self) -> np.ndarray:
        """The model as a new flat little-endian float32 array of length :attr:`dimension`."""
        tensors = self._tensors()
        if not tensors:
            return np.zeros(0, dtype="<f4")
        with torch.no_grad():
            flat = torch.cat([t.detach().reshape(-1).to(device="cpu", dtype=torch.float32) for t in tensors])
        return flat.numpy().astype("<f4", copy=False)

    def set_vector(self, vector: np.ndarray) -> None:
        """Load ``vector`` into the model; the exact inverse of :meth:`get_vector`.

        Raises
        ------
        ConfigError
            If ``vector`` is not one-dimensional with :attr:`dimension` entries.
        """
        values = np.asarray(vector)
        if values.ndim != 1 or values.shape[0] != self.dimension:
            raise ConfigError(f"model vector must have shape ({self.dimension},); got {values.shape}")
        source = torch.from_numpy(np.array(values, dtype=np.float32))
        offset = 0
        with torch.no_grad():
            for tensor in self._tensors():
                size = tensor.numel()
                tensor.copy_(source[offset : offset + size].reshape(tensor.shape))
                offset += size

    def train(
        self,
        dataset: ArrayDataset,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        seed: int,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> int:
        """Train with SGD on the cross-entropy loss, batches drawn from a seeded shuffle each epoch.

        The shuffle comes from a ``torch.Generator`` seeded with ``seed``; the global RNG is not used.
        A fresh optimizer is made per call, so momentum does not carry over between calls.

        Returns
        -------
        int
            The number of samples trained on, ``len(dataset)`` (the weight of this update in FedAvg).

        Raises
        ------
        ConfigError
            For an empty dataset, non-positive epochs, batch size or learning rate, negative momentum or
            weight decay, or labels outside the model's classes.
        """
        n = len(dataset)
        if n == 0:
            raise ConfigError("cannot train on an empty dataset; give this node at least one sample")
        if epochs < 1 or batch_size < 1 or not lr > 0 or momentum < 0 or weight_decay < 0:
            raise ConfigError(
                "training needs epochs >= 1, batch_size >= 1, lr > 0, momentum >= 0, weight_decay >= 0; got "
                f"epochs={epochs}, batch_size={batch_size}, lr={lr}, momentum={momentum}, weight_decay={weight_decay}"
            )
        features, labels = _as_tensors(dataset)
        generator = torch.Generator().manual_seed(seed)
        optimizer = PlainSGD(self.model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        with self._thread_scope():
            self.model.train()
            for epoch in range(epochs):
                order = torch.randperm(n, generator=generator)
                for start in range(0, n, batch_size):
                    batch = order[start : start + batch_size]
                    logits = self.model(features[batch])
                    if epoch == 0 and start == 0:
                        self._check_labels(logits, labels)
                    loss = F.cross_entropy(logits, labels[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        return n

    def evaluate(self, dataset: ArrayDataset, batch_size: int = 512) -> tuple[float, float]:
        """Mean cross-entropy loss and accuracy (fraction correct) on ``dataset``, in eval mode.

        Raises
        ------
        ConfigError
            For an empty dataset, ``batch_size < 1`` or labels outside the model's classes.
        """
        n = len(dataset)
        if n == 0:
            raise ConfigError("cannot evaluate on an empty dataset")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1; got {batch_size}")
        features, labels = _as_tensors(dataset)
        total_loss, correct = 0.0, 0
        with self._thread_scope(), torch.no_grad():
            self.model.eval()
            for start in range(0, n, batch_size):
                logits = self.model(features[start : start + batch_size])
                target = labels[start : start + batch_size]
                self._check_labels(logits, target)
                total_loss += float(F.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(dim=1) == target).sum())
        return total_loss / n, correct / n

    def _tensors(self) -> list[torch.Tensor]:
        """Floating-point state_dict entries, in order, each distinct tensor once."""
        seen: set[int] = set()
        tensors = []
        for tensor in self.model.state_dict(keep_vars=True).values():
            if tensor.is_floating_point() and id(tensor) not in seen:
                seen.add(id(tensor))
                tensors.append(tensor)
        return tensors

    @staticmethod
    def _check_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
        classes = logits.shape[-1]
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
            raise ConfigError(f"labels must be in 0..{classes - 1} for this model; check the model's num_classes")

    @contextmanager
    def _thread_scope(self) -> Iterator[None]:
        if self.threads is None:
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def _as_tensors(dataset: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels as tensors sharing the arrays' memory (read, never written: shared
    datasets such as Fashion-MNIST are read-only arrays, which torch would warn about)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(dataset.features), torch.from_numpy(dataset.labels)
