"""The task files tests and benchmarks write (tests/helpers/task_files.py) read back as the task they meant."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from fl_chain.protocol.task import TaskSpec
from tests.helpers.task_files import (
    DEFAULT_DATASET,
    DEFAULT_MODEL,
    DEFAULT_STRATEGY,
    DEFAULT_TRAINING,
    Scalar,
    TaskSections,
    task_sections,
    task_toml,
    write_task_file,
)

PROTOCOL = {
    "rounds": 3,
    "partitions": 4,
    "replication": 2,
    "quorum": 2,
    "min_contributors": 2,
    "update_duration": 40,
    "aggregation_duration": 20,
}


def test_default_task_reads_back_as_its_sections() -> None:
    # Execute
    parsed = tomllib.loads(task_toml(protocol=PROTOCOL))

    # Assert
    assert parsed == task_sections(protocol=PROTOCOL)
    assert parsed == {
        "protocol": PROTOCOL,
        "model": DEFAULT_MODEL,
        "dataset": DEFAULT_DATASET,
        "training": DEFAULT_TRAINING,
        "strategy": DEFAULT_STRATEGY,
    }


def test_default_task_file_is_a_valid_task(tmp_path: Path) -> None:
    # Execute
    spec = TaskSpec.from_toml(write_task_file(tmp_path / "task.toml", protocol=PROTOCOL))

    # Assert
    assert {key: spec.protocol[key] for key in PROTOCOL} == PROTOCOL
    assert (spec.model, spec.dataset, spec.training, spec.strategy) == (
        {"name": "mlp", "hidden": 16, "seed": 11},
        {"name": "digits", "split": "iid"},
        {"epochs": 1, "batch_size": 16, "lr": 0.1},
        {"name": "fedavg"},
    )


def test_task_file_and_task_sections_give_the_same_manifest(tmp_path: Path) -> None:
    """The file and the dict are one task: same manifest bytes for the same initial model."""
    sections: TaskSections = {
        "protocol": PROTOCOL,
        "model": {"name": "logreg", "seed": 3},
        "security": {"max_colluders": 0},
    }
    from_file = TaskSpec.from_toml(write_task_file(tmp_path / "task.toml", **sections))
    from_dict = TaskSpec.from_dict(task_sections(**sections))
    assert from_file.manifest_bytes(b"\x01" * 32) == from_dict.manifest_bytes(b"\x01" * 32)


def test_section_passed_replaces_its_default_whole() -> None:
    """A logreg model given without ``hidden`` has no ``hidden``: sections are not merged."""
    parsed = tomllib.loads(task_toml(protocol=PROTOCOL, model={"name": "logreg", "seed": 11}))
    assert parsed["model"] == {"name": "logreg", "seed": 11}


def test_security_section_only_when_given() -> None:
    assert "security" not in tomllib.loads(task_toml(protocol=PROTOCOL))
    assert tomllib.loads(task_toml(protocol=PROTOCOL, security={"max_colluders": 2}))["security"] == {
        "max_colluders": 2
    }


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        0,
        -7,
        2**62,
        0.1,
        1.0,
        -2.5,
        1e-05,
        1e20,
        float("inf"),
        float("-inf"),
        "",
        "digits",
        'a "quoted" \\ path',
        "tab\tnewline\nbell\x07del\x7f",
        "näive ✓",
    ],
    ids=repr,
)
def test_every_scalar_reads_back_with_its_type_and_value(value: Scalar) -> None:
    parsed = tomllib.loads(task_toml(protocol={"value": value}))["protocol"]["value"]
    assert (type(parsed), parsed) == (type(value), value)


def test_nan_reads_back_as_nan() -> None:
    parsed = tomllib.loads(task_toml(protocol={"value": float("nan")}))["protocol"]["value"]
    assert isinstance(parsed, float) and math.isnan(parsed)


@pytest.mark.parametrize("value", [[1, 2], {"nested": 1}, None], ids=["list", "table", "None"])
def test_value_a_flat_section_cannot_hold_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match="use an int, float, str or bool"):
        task_toml(protocol={"value": value})  # type: ignore[dict-item]


@pytest.mark.parametrize("key", ["", "two words", "a.b", 'quote"'])
def test_key_that_is_not_a_bare_toml_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="not a bare TOML key"):
        task_toml(protocol={key: 1})
