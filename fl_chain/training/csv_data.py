"""Reading a site's own tabular data: a CSV file with a header row, numeric features and integer labels.

Every error names the file and, where there is one, the line and the column, so a site can fix its
export. Features are returned as they are in the file: nothing is scaled here.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TextIO

import numpy as np

from fl_chain.errors import ConfigError

__all__ = ["read_csv_table"]


def read_csv_table(
    path: str | Path, *, label: str = "label", num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Parse a CSV file into features, labels and the feature column names.

    Parameters
    ----------
    path:
        UTF-8 CSV (a byte-order mark is ignored) whose first row names the columns. Blank lines are
        skipped.
    label:
        Name of the label column; its values must be integers ``0 .. K-1``. Every other column is a
        feature and must hold finite numbers.
    num_classes:
        ``K``, if known: labels must be below it, and a file may then hold a single class. If ``None``,
        the file must hold at least two distinct labels.

    Returns
    -------
    (features, labels, columns):
        float64 ``[n, d]`` in file order, int64 ``[n]``, and the ``d`` feature column names.

    Raises
    ------
    ConfigError
        For a missing, unreadable or empty file, a header without data rows, a missing or repeated
        column name, a missing label column, a row with the wrong number of fields, a value that is not
        a finite number, a label that is not an integer in range, or fewer than two classes.
    """
    source = Path(path)
    try:
        with source.open(newline="", encoding="utf-8-sig") as handle:
            return _parse(source, handle, label, num_classes)
    except FileNotFoundError:
        raise ConfigError(f"csv file {source} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"csv file {source} is a directory; give the path of a .csv file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"csv file {source} is not UTF-8 text") from None
    except csv.Error as exc:
        raise ConfigError(f"csv file {source} is malformed: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read csv file {source}: {exc.strerror or exc}") from None


def _parse(
    source: Path, handle: TextIO, label: str, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    reader = csv.reader(handle)
    header = next((row for row in reader if row), None)
    if header is None:
        raise ConfigError(f"csv file {source} is empty; it needs a header row naming the columns, then data rows")
    names = [name.strip() for name in header]
    _check_header(source, names, label)
    label_at = names.index(label)
    columns = tuple(name for i, name in enumerate(names) if i != label_at)
    rows: list[list[float]] = []
    labels: list[int] = []
    for row in reader:
        if not row:
            continue
        line = reader.line_num
        if len(row) != len(names):
            raise ConfigError(f"csv file {source} line {line} has {len(row)} field(s), the header has {len(names)}")
        labels.append(_label(source, line, label, row[label_at], num_classes))
        rows.append([_number(source, line, names[i], text) for i, text in enumerate(row) if i != label_at])
    if not rows:
        raise ConfigError(f"csv file {source} has a header but no data rows")
    found = sorted(set(labels))
    if num_classes is None and len(found) < 2:
        raise ConfigError(
            f"csv file {source} has only class {found[0]} in column {label!r}; a classifier needs at least 2 "
            "(set num_classes in [dataset] if other sites hold the other classes)"
        )
    return np.array(rows, dtype=np.float64), np.array(labels, dtype=np.int64), columns


def _check_header(source: Path, names: list[str], label: str) -> None:
    for position, name in enumerate(names, start=1):
        if not name:
            raise ConfigError(f"csv file {source} header: column {position} has no name")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        shown = ", ".join(map(repr, repeated))
        raise ConfigError(f"csv file {source} header: column name(s) {shown} appear more than once")
    if label not in names:
        raise ConfigError(
            f"csv file {source} has no label column {label!r}; its columns are {', '.join(names)} "
            "(set label in [dataset] to the right one)"
        )
    if len(names) < 2:
        raise ConfigError(f"csv file {source} has only the label column {label!r}; it needs a feature column too")


def _number(source: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"csv file {source} line {line}, column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"csv file {source} line {line}, column {column!r}: {text!r} is not a finite number")
    return value


def _label(source: Path, line: int, column: str, text: str, num_classes: int | None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if value < 0 or (num_classes is not None and value >= num_classes):
        allowed = f"0..{num_classes - 1}" if num_classes is not None else "0, 1, 2, ..."
        where = f"csv file {source} line {line}, column {column!r}"
        raise ConfigError(f"{where}: label {text!r} is not an integer in {allowed}")
    return value
