"""The package's layers import only downward, and nothing in the product imports the test harnesses.

Every ``import`` in ``fl_chain`` counts, function-local and type-only ones included: a layer may import
its own subpackage and any layer below it, never a sibling of its rank or anything above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fl_chain"

#: Rank of each top-level part of ``fl_chain``; a module may import parts of a lower rank, or its own part.
LAYERS: dict[str, int] = {
    "errors": 0,
    "ports": 0,
    "privacy": 1,
    "aggregation": 2,
    "protocol": 3,
    "chain": 4,
    "storage": 4,
    "training": 5,
    "exchange": 6,
    "node": 7,
    "webserver": 7,
    "federation": 8,
    "serving": 8,
    "dashboard": 8,
    "cli": 9,
    "__init__": 10,
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "fl_chain":  # `from fl_chain import x`: x is a part (or the facade)
                found += [(node.lineno, f"fl_chain.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {p.stem if p.parent == PACKAGE else p.relative_to(PACKAGE).parts[0] for p in MODULES}
    assert parts <= set(LAYERS), f"give these a layer: {sorted(parts - set(LAYERS))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_its_own_layer_or_below(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    own = rel.stem if len(rel.parts) == 1 else rel.parts[0]
    rank = LAYERS[own]
    bad = []
    for line, module in _imports(path):
        if module.startswith(("tests", "bench")):
            bad.append(f"line {line}: {module} (a harness, not the product)")
        if not module.startswith("fl_chain"):
            continue
        part = _part(module)
        if part == "__version__":
            continue
        if part != own and LAYERS.get(part, 99) >= rank:
            bad.append(f"line {line}: {module} (rank {LAYERS.get(part)} >= {own}'s {rank})")
    assert not bad, f"{rel} imports upward or sideways:\n" + "\n".join(bad)
