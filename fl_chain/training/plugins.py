"""User-written clients loaded by reference: ``flchain node --client package.module:callable``."""

from __future__ import annotations

import functools
import importlib
import os
import sys

from fl_chain.errors import ConfigError
from fl_chain.training.datasets import ArrayDataset
from fl_chain.training.numpy_client import ClientFactory, NumPyClient, NumPyClientError

__all__ = ["load_client_factory"]


def load_client_factory(target: str) -> ClientFactory:
    """Import a client factory named as ``"package.module:callable"``.

    The factory is called as ``callable(spec, train_set, test_set)`` (the task's ``TaskSpec``, this
    node's training shard, the shared test split or ``None``) and must return a
    :class:`~fl_chain.training.numpy_client.NumPyClient`. The current directory is searched first,
    as with ``python -m``, so a module next to the task file loads without installing it.

    Returns
    -------
    ClientFactory
        The callable, wrapped to check that each object it returns is a ``NumPyClient``
        (:class:`~fl_chain.training.numpy_client.NumPyClientError` if not).

    Raises
    ------
    ConfigError
        If ``target`` is not ``module:callable`` with dotted Python names, the module cannot be
        found or fails to import, it has no such attribute, or the attribute is not callable.
    """
    module_name, _, attribute = target.partition(":")
    names = [*module_name.split("."), *attribute.split(".")]
    if ":" not in target or not all(name.isidentifier() for name in names):
        raise ConfigError(f"--client must look like package.module:callable; got {target!r}")
    module = _import(module_name, target)
    loaded: object = module
    for name in attribute.split("."):
        if not hasattr(loaded, name):
            raise ConfigError(f"--client {target}: {module_name} has no attribute {attribute!r}")
        loaded = getattr(loaded, name)
    if not callable(loaded):
        raise ConfigError(f"--client {target}: {attribute} is a {type(loaded).__name__}, not a callable")
    factory = loaded

    @functools.wraps(factory)
    def checked(spec, train: ArrayDataset, test: ArrayDataset | None) -> NumPyClient:
        client = factory(spec, train, test)
        if not isinstance(client, NumPyClient):
            raise NumPyClientError(
                f"--client {target} returned a {type(client).__name__}, not a NumPyClient: "
                "it needs get_parameters, fit and evaluate"
            )
        return client

    return checked


def _import(module_name: str, target: str):
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(
                f"--client {target}: no module named {exc.name!r} here or on the Python path; "
                "check the name or install it"
            ) from None
        raise ConfigError(f"--client {target}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:  # user code: any import-time failure becomes one line
        raise ConfigError(f"--client {target}: importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
