"""``fl_chain``'s public surface: exactly the curated names, each resolving, and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fl_chain

#: The public names of ``fl_chain``. Changing this list changes the public API: do it on purpose.
PUBLIC_NAMES = [
    "ChainError",
    "CompilerError",
    "ConfigError",
    "CoordinateMedian",
    "Coordinator",
    "FLChainError",
    "FedAvg",
    "KuboStorage",
    "MemoryStorage",
    "Node",
    "NodeOptions",
    "NumPyClient",
    "RoundAudit",
    "SimulationOptions",
    "Storage",
    "StorageError",
    "Strategy",
    "TaskConfig",
    "TaskSpec",
    "TrimmedMean",
    "__version__",
    "audit_round",
    "get_strategy",
    "run_simulation",
]

#: Modules that ``import fl_chain`` must not load: each costs seconds or needs an optional extra.
HEAVY_MODULES = ("eth_tester", "matplotlib", "numpy", "sklearn", "torch", "web3")


def test_public_names_are_exactly_the_curated_sorted_list() -> None:
    assert fl_chain.__all__ == PUBLIC_NAMES
    assert fl_chain.__all__ == sorted(fl_chain.__all__)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_resolves_to_the_object_of_its_home_module(name: str) -> None:
    # Execute
    value = getattr(fl_chain, name)

    # Assert
    assert value is not None
    if name != "__version__":
        home = sys.modules[value.__module__]
        assert getattr(home, value.__name__) is value
        assert value.__name__ == name


def test_star_import_gives_every_public_name() -> None:
    namespace: dict[str, object] = {}
    exec("from fl_chain import *", namespace)  # noqa: S102  # the statement under test
    assert set(PUBLIC_NAMES) - {"__version__"} <= set(namespace)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Aggregator'"):
        fl_chain.Aggregator  # noqa: B018


def test_version_matches_the_installed_distribution_metadata() -> None:
    from importlib.metadata import version

    assert fl_chain.__version__ == version("fl-chain")


def test_import_fl_chain_loads_no_heavy_dependency() -> None:
    # Execute
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, fl_chain; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )

    # Assert
    loaded = {module.split(".")[0] for module in proc.stdout.split()}
    assert not loaded & set(HEAVY_MODULES), sorted(loaded & set(HEAVY_MODULES))
