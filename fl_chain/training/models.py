"""Small torch classifiers, built deterministically from a seed.

Every model is an ``nn.Sequential`` that starts with ``nn.Flatten``, so it takes features of shape
``[n, *input_shape]``. The CNN then unflattens to ``[n, 1, side, side]``: it accepts an
``input_shape`` of ``(1, side, side)``, ``(side, side)`` or ``(side * side,)``, so digits features
``[n, 64]`` feed every model unchanged.

Initialization runs inside ``torch.random.fork_rng`` seeded with ``seed``: the same seed gives
byte-identical parameters in any process, and torch's global RNG state is left as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fl_chain.errors import ConfigError
from fl_chain.protocol.catalog import MODELS

__all__ = ["MODELS", "build_model"]


def build_model(name: str, *, input_shape: tuple[int, ...], num_classes: int, seed: int, **options: Any) -> nn.Module:
    """Build a freshly initialized float32 classifier.

    Parameters
    ----------
    name:
        ``"logreg"`` (one linear layer), ``"mlp"`` (one hidden ReLU layer; option ``hidden: int = 64``)
        or ``"cnn"`` (two 3x3 conv + ReLU + 2x2 max-pool blocks and a linear head, for one-channel
        square images of side >= 4; option ``channels: int = 8``, doubled in the second block).
    input_shape:
        Shape of one sample, without the batch dimension.
    num_classes:
        Number of output logits (>= 2).
    seed:
        Seed of the initial parameters.

    Raises
    ------
    ConfigError
        For an unknown name or option, or a shape the model cannot take.
    """
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ConfigError(f"unknown model {name!r}; use one of {', '.join(MODELS)}")
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(f"input_shape must be a non-empty tuple of positive sizes; got {input_shape}")
    if int(num_classes) < 2:
        raise ConfigError(f"num_classes must be at least 2; got {num_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(shape, int(num_classes), dict(options))
    return model.to(torch.float32)


def _logreg(shape: tuple[int, ...], num_classes: int, options: dict[str, Any]) -> nn.Module:
    _reject_unknown("logreg", options, ())
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), num_classes))


def _mlp(shape: tuple[int, ...], num_classes: int, options: dict[str, Any]) -> nn.Module:
    _reject_unknown("mlp", options, ("hidden",))
    hidden = _positive_int("mlp", "hidden", options.get("hidden", 64))
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def _cnn(shape: tuple[int, ...], num_classes: int, options: dict[str, Any]) -> nn.Module:
    _reject_unknown("cnn", options, ("channels",))
    channels = _positive_int("cnn", "channels", options.get("channels", 8))
    side = _image_side(shape)
    return nn.Sequential(
        nn.Flatten(),
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, channels, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * channels * (side // 4) ** 2, num_classes),
    )


_BUILDERS: dict[str, Callable[[tuple[int, ...], int, dict[str, Any]], nn.Module]] = {
    "logreg": _logreg,
    "mlp": _mlp,
    "cnn": _cnn,
}


def _image_side(shape: tuple[int, ...]) -> int:
    """Side of the one-channel square image that ``shape`` describes."""
    if len(shape) == 3 and shape[0] == 1 and shape[1] == shape[2]:
        side = shape[1]
    elif len(shape) == 2 and shape[0] == shape[1]:
        side = shape[0]
    elif len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
    else:
        raise ConfigError(f"cnn needs one-channel square images (1, s, s), (s, s) or (s*s,); got input_shape {shape}")
    if side < 4:
        raise ConfigError(f"cnn needs images of side at least 4; got {side}")
    return side


def _reject_unknown(model: str, options: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        accepted = ", ".join(known) if known else "none"
        raise ConfigError(f"model {model!r} got unknown option(s) {', '.join(unknown)}; accepted: {accepted}")


def _positive_int(model: str, option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model {model!r} option {option} must be a positive integer; got {value!r}")
    return value
