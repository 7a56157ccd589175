"""torch is an optional extra: without it, the names that need it fail with a one-line install hint."""

from __future__ import annotations

import subprocess
import sys
from importlib.machinery import ModuleSpec

import pytest

import fl_chain.training
from fl_chain.errors import ConfigError


class _NoTorchFinder:
    """A meta-path finder that makes ``import torch`` fail as it does where torch is not installed."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@pytest.fixture
def without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, module)
    for module in ("fl_chain.training.torch_adapter", "fl_chain.training.models"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoTorchFinder, *sys.meta_path])


@pytest.mark.parametrize("name", ["TorchAdapter", "build_model"])
def test_torch_name_without_torch_is_a_config_error_with_the_extra_to_install(without_torch: None, name: str) -> None:
    with pytest.raises(ConfigError, match=r'pip install "fl-chain\[torch\]"') as caught:
        getattr(fl_chain.training, name)
    assert "\n" not in str(caught.value)


def test_cli_simulation_and_node_modules_import_without_loading_torch() -> None:
    # Execute
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import sys, fl_chain.cli, fl_chain.federation.simulate, fl_chain.node.runtime, fl_chain.training; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    )

    # Assert
    assert proc.stdout.strip() == "[]"
