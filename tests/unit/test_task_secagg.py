"""[privacy] secure-aggregation options: validation, and the chain config createSecureTask receives.

Every option is checked with a one-line error (median, trimmed mean and a norm bound cannot run
with secure aggregation; with DP the clip is dp_clip_norm, not secagg_clip), and ``chain_config`` shows what ``task
create`` sends to ``createSecureTask``.
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
    # What TaskSpec.from_dict builds, without validate.
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
        ({"secure_aggregation": True}, 1, "needs privacy.secagg_threshold"),
        ({"secure_aggregation": True, "secagg_threshold": 3, "secagg_clip": 0}, 1, "secagg_clip must be a positive"),
        ({"secure_aggregation": True, "secagg_threshold": 3, "secagg_clip": 1e12}, 1, "does not fit the ring"),
        (
            {"secure_aggregation": True, "secagg_threshold": 3, "dp_noise_multiplier": 1.0, "dp_clip_norm": 1.0},
            1,
            "needs privacy.dp_delta",
        ),
        (
            {
                "secure_aggregation": True,
                "secagg_threshold": 3,
                "secagg_clip": 2.0,
                "dp_noise_multiplier": 1.0,
                "dp_clip_norm": 1.0,
                "dp_delta": 1e-5,
            },
            1,
            "remove privacy.secagg_clip",
        ),
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


def test_a_secure_task_validates_with_a_clip_and_a_ring_scale_that_cannot_wrap() -> None:
    # Prepare / Execute
    default = _spec({"secure_aggregation": True, "secagg_threshold": 3})
    wide = _spec({"secure_aggregation": True, "secagg_threshold": 3, "secagg_clip": 32.0})

    # Assert: max_participants (1000) updates of weight up to max_samples (10^6) within the clip sum below 2^53
    assert default.secagg_clip == 4.0 and wide.secagg_clip == 32.0
    assert 1000 * 4.0 * 1_000_000 * 2.0**default.secagg_frac_bits <= 2.0**53
    assert default.secagg_frac_bits == 21
    assert wide.secagg_frac_bits == default.secagg_frac_bits - 3
    assert default.chain_config(bytes(32)).secure_aggregation == SecureAggregationConfig(3, 90, 90)


def test_a_secure_task_has_at_most_as_many_participants_as_share_positions() -> None:
    sections = task_sections(
        protocol={**PROTOCOL, "max_participants": 70_000}, privacy={"secure_aggregation": True, "secagg_threshold": 3}
    )
    with pytest.raises(ConfigError, match="at most 65535 participants"):
        TaskSpec.from_dict(sections)
