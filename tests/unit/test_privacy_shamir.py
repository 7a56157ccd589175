"""Shamir t-of-n sharing of 32-byte secrets: any t rebuild it, t - 1 reveal nothing, bad share sets are refused."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_chain.errors import InvalidShareError, NotEnoughSharesError
from fl_chain.privacy.shamir import PRIME, SHARE_BYTES, Share, combine, split

SECRET = bytes(range(32))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), count=st.integers(1, 12), secret=st.binary(min_size=32, max_size=32))
def test_any_threshold_shares_rebuild_the_secret(data: st.DataObject, count: int, secret: bytes) -> None:
    # Prepare
    threshold = data.draw(st.integers(1, count))
    shares = split(secret, threshold=threshold, count=count)
    chosen = data.draw(st.lists(st.sampled_from(shares), min_size=threshold, unique_by=lambda s: s.x))

    # Execute / Assert: extra shares beyond the threshold are checked, not ignored
    assert [s.x for s in shares] == list(range(1, count + 1))
    assert combine(chosen, threshold=threshold) == secret


@settings(max_examples=40, deadline=None)
@given(data=st.data(), count=st.integers(2, 10), candidate=st.binary(min_size=32, max_size=32))
def test_attack_t_minus_1_colluders_find_every_secret_equally_possible(
    data: st.DataObject, count: int, candidate: bytes
) -> None:
    """For ANY candidate secret, exactly one polynomial of degree t - 1 fits it and the t - 1 shares.

    Exactly one: the t points (0, candidate) and the colluders' t - 1 shares have distinct x, so the
    Vandermonde system has a non-zero determinant mod p. It exists: adding its value at an honest x
    as a share makes ``combine`` return the candidate. So the shares are equally consistent with the
    real secret and every other: they carry no information about it.
    """
    # Prepare
    threshold = data.draw(st.integers(2, count))
    shares = split(SECRET, threshold=threshold, count=count)
    colluders = data.draw(
        st.lists(st.sampled_from(shares), min_size=threshold - 1, max_size=threshold - 1, unique_by=lambda s: s.x)
    )
    honest_x = data.draw(st.sampled_from([s.x for s in shares if s not in colluders]))

    # Execute: the unique polynomial through (0, candidate) and the colluders' shares, by Lagrange
    points = [(0, int.from_bytes(candidate, "big"))] + [(s.x, s.y) for s in colluders]
    value = 0
    for i, (xi, yi) in enumerate(points):
        term = yi
        for j, (xj, _) in enumerate(points):
            if i != j:
                term = term * (honest_x - xj) * pow(xi - xj, -1, PRIME) % PRIME
        value = (value + term) % PRIME
    forged = Share(x=honest_x, y=value)

    # Assert
    xs = [x for x, _ in points]
    determinant = 1
    for a in range(len(xs)):
        for b in range(a + 1, len(xs)):
            determinant = determinant * (xs[b] - xs[a]) % PRIME
    assert determinant != 0
    assert combine([*colluders, forged], threshold=threshold) == candidate


def test_fewer_than_threshold_shares_raise_a_clear_error() -> None:
    # Prepare
    shares = split(SECRET, threshold=3, count=5)

    # Execute / Assert
    with pytest.raises(NotEnoughSharesError, match="2 shares, the threshold is 3") as raised:
        combine(shares[:2], threshold=3)
    assert "\n" not in str(raised.value)


def test_duplicate_x_is_refused() -> None:
    shares = split(SECRET, threshold=2, count=3)
    with pytest.raises(InvalidShareError, match="same x: \\[2\\]"):
        combine([shares[1], shares[1], shares[0]], threshold=2)


def test_attack_a_wrong_share_beyond_the_threshold_is_detected() -> None:
    # Prepare
    shares = split(SECRET, threshold=2, count=4)
    wrong = Share(x=shares[3].x, y=(shares[3].y + 1) % PRIME)

    # Execute / Assert
    with pytest.raises(InvalidShareError, match="disagrees"):
        combine([*shares[:3], wrong], threshold=2)


def test_attack_a_wrong_share_that_rebuilds_no_32_byte_secret_is_refused() -> None:
    # Prepare: with x = 1, 2 the secret is 2 y1 - y2; raising y2 by secret + 1 gives p - 1
    shares = split(SECRET, threshold=2, count=2)
    wrong = Share(x=2, y=(shares[1].y + int.from_bytes(SECRET, "big") + 1) % PRIME)

    # Execute / Assert
    with pytest.raises(InvalidShareError, match="larger than a 32-byte secret"):
        combine([shares[0], wrong], threshold=2)


def test_share_bytes_round_trip_at_a_fixed_size() -> None:
    for share in split(os.urandom(32), threshold=3, count=5):
        data = share.to_bytes()
        assert len(data) == SHARE_BYTES == 68
        assert Share.from_bytes(data) == share


@pytest.mark.parametrize(
    "data",
    [
        bytes(SHARE_BYTES - 1),
        bytes(SHARE_BYTES + 1),
        bytes(SHARE_BYTES),  # x = 0 would be the secret itself
        (1).to_bytes(2, "big") + PRIME.to_bytes(66, "big"),  # y outside the field
        (1).to_bytes(2, "big") + b"\xff" * 66,
    ],
)
def test_attack_malformed_share_bytes_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidShareError):
        Share.from_bytes(data)


@pytest.mark.parametrize(("threshold", "count"), [(0, 3), (4, 3), (1, 0), (2, 70000)])
def test_split_refuses_impossible_thresholds(threshold: int, count: int) -> None:
    with pytest.raises(ValueError, match="threshold"):
        split(SECRET, threshold=threshold, count=count)


def test_shares_of_the_same_secret_differ_between_sharings() -> None:
    first, second = split(SECRET, threshold=2, count=3), split(SECRET, threshold=2, count=3)
    assert [s.y for s in first] != [s.y for s in second]
    assert combine(random.sample(first, 2), threshold=2) == combine(random.sample(second, 2), threshold=2)
