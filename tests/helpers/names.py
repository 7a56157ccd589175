"""How public ``__all__`` lists are ordered: as ruff's RUF022 sorts them (scripts/check enforces it)."""

from __future__ import annotations

from collections.abc import Iterable


def ruff_sorted(names: Iterable[str]) -> list[str]:
    """``names`` in isort style: SCREAMING_CASE constants, then CamelCase classes, then the rest; each alphabetical."""
    return sorted(names, key=lambda name: (0 if name.isupper() else 1 if name[0].isupper() else 2, name))
