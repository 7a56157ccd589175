"""[privacy] secure-aggregation options: validation, and the chain config createSecureTask receives.

``secure_aggregation = true`` is still refused by every product path until the node side exists
("not implemented yet"); the options before that refusal are checked, and ``chain_config`` of a
spec built without validation shows what ``task create`` will send.
"""

from __future__ import annotations

import pytest

from fl_chain.errors import ConfigError
from fl_chain.protocol.task import SecureAggregationConfig, TaskSpec
from tests.helpers.task_files import task_sections

PROTOCOL = {
    "rounds": 2,
    "partitions": 2,
    "replication": 2,
    "quorum": 2,
    "min_contributors": 4,
    "aggregation_duration": 90,
}


def _spec(privacy: dict[str, object], *, validate: bool = True, max_colluders: int = 1) -> TaskSpec:
    sections = task_sections(protocol=PROTOCOL, privacy=privacy, security={"max_colluders": max_colluders})
    if validate:
        return TaskSpec.from_dict(sections)
    # What TaskSpec.from_dict builds, without validate (which still refuses secure_aggregation = true).
    spec = TaskSpec.from_dict({**sections, "privacy": {}})
    return TaskSpec(**{**spec.__dict__, "privacy": dict(privacy)})


@pytest.mark.parametrize(
    ("privacy", "max_colluders", "fragment"),
    [
        ({"secagg_threshold": 3}, 1, "privacy.secagg_threshold needs privacy.secure_aggregation = true"),
        ({"secure_aggregation": False, "secagg_unmask_duration": 5}, 1, "needs privacy.secure_aggregation = true"),
        ({"secure_aggregation": True, "secagg_threshold": 1}, 1, "secagg_threshold must be an integer in [2, 4]"),
        ({"secure_aggregation": True, "secagg_threshold": 5}, 1, "secagg_threshold must be an integer in [2, 4]"),
        ({"secure_aggregation": True, "secagg_threshold": 3}, 3, "secagg_threshold must be an integer in [4, 4]"),
        ({"secure_aggregation": True, "secagg_threshold": True}, 1, "secagg_threshold must be an integer"),
        ({"secure_aggregation": True, "secagg_threshold": 3, "secagg_shares_duration": 0}, 1, "positive integer"),
        ({"secure_aggregation": True, "secagg_threshold": 3, "secagg_unmask_duration": 2**32}, 1, "positive integer"),
        ({"secure_aggregation": True, "secagg_threshold": 3}, 1, "not implemented yet"),
    ],
)
def test_secure_aggregation_options_get_one_line_errors(
    privacy: dict[str, object], max_colluders: int, fragment: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        _spec(privacy, max_colluders=max_colluders)
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)


def test_chain_config_carries_threshold_and_durations() -> None:
    spec = _spec(
        {"secure_aggregation": True, "secagg_threshold": 3, "secagg_shares_duration": 40, "secagg_unmask_duration": 50},
        validate=False,
    )
    assert spec.chain_config(bytes(32)).secure_aggregation == SecureAggregationConfig(3, 40, 50)


def test_phase_durations_default_to_the_aggregation_duration() -> None:
    spec = _spec({"secure_aggregation": True, "secagg_threshold": 4}, validate=False)
    assert spec.chain_config(bytes(32)).secure_aggregation == SecureAggregationConfig(4, 90, 90)


def test_tasks_without_secure_aggregation_create_plain_tasks() -> None:
    assert _spec({}).chain_config(bytes(32)).secure_aggregation is None
    assert _spec({"secure_aggregation": False}).chain_config(bytes(32)).secure_aggregation is None
