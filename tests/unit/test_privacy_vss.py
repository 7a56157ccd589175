"""Feldman VSS over secp256k1: honest shares verify, any t verified shares rebuild exactly the committed
secret, t - 1 reveal nothing beyond the commitments, and anything a dealer or holder tampers with fails
verification; malformed points are invalid, never a crash."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_chain.errors import InvalidCommitmentError, InvalidShareError, NotEnoughSharesError
from fl_chain.privacy.vss import (
    ORDER,
    POINT_BYTES,
    SHARE_BYTES,
    Commitments,
    Share,
    combine,
    parse_point,
    public_point,
    random_scalar,
    split,
    verify,
)

SECRET = 0x1234_5678_9ABC_DEF0 << 128 | 0x42
_P = 2**256 - 2**32 - 977  # secp256k1's field prime

scalars = st.integers(1, ORDER - 1)


def _negate(point: bytes) -> bytes:
    """``-P``: the same x, the other parity."""
    return bytes([point[0] ^ 1]) + point[1:]


@settings(max_examples=40, deadline=None)
@given(data=st.data(), count=st.integers(1, 10), secret=scalars)
def test_any_threshold_verified_shares_rebuild_the_committed_secret(
    data: st.DataObject, count: int, secret: int
) -> None:
    # Prepare
    threshold = data.draw(st.integers(1, count))
    shares, commitments = split(secret, threshold=threshold, count=count)
    chosen = data.draw(st.lists(st.sampled_from(shares), min_size=threshold, unique_by=lambda s: s.x))

    # Execute / Assert
    assert [s.x for s in shares] == list(range(1, count + 1))
    assert all(verify(s, commitments) for s in shares)
    assert commitments.threshold == threshold
    assert commitments.secret_point == public_point(secret)
    assert combine(chosen, commitments=commitments) == secret


@settings(max_examples=30, deadline=None)
@given(data=st.data(), count=st.integers(2, 8), candidate=scalars)
def test_attack_t_minus_1_colluders_find_every_secret_equally_possible(
    data: st.DataObject, count: int, candidate: int
) -> None:
    """For ANY candidate secret, exactly one polynomial of degree t - 1 over Z_n fits it and the t - 1
    shares (distinct x: the Vandermonde determinant is not 0 mod the prime n). So the shares alone carry
    no information about the secret; beyond them the commitments publish only ``secret * G``, which
    tells the real candidate from the others only by solving a discrete logarithm (the secrets shared
    are fresh random scalars). The forged share the candidate implies at an honest x fails
    verification: that is all the commitments say."""
    # Prepare
    threshold = data.draw(st.integers(2, count))
    shares, commitments = split(SECRET, threshold=threshold, count=count)
    colluders = data.draw(
        st.lists(st.sampled_from(shares), min_size=threshold - 1, max_size=threshold - 1, unique_by=lambda s: s.x)
    )
    honest_x = data.draw(st.sampled_from([s.x for s in shares if s not in colluders]))

    # Execute: the unique polynomial through (0, candidate) and the colluders' shares, by Lagrange
    points = [(0, candidate)] + [(s.x, s.y) for s in colluders]
    value = 0
    for i, (xi, yi) in enumerate(points):
        term = yi
        for j, (xj, _) in enumerate(points):
            if i != j:
                term = term * (honest_x - xj) * pow(xi - xj, -1, ORDER) % ORDER
        value = (value + term) % ORDER
    forged = Share(x=honest_x, y=value)

    # Assert: the candidate fits the colluders' shares; the commitments single out the real secret
    rebuilt = 0
    basis = [*colluders, forged]
    for i, p in enumerate(basis):
        term = p.y
        for j, q in enumerate(basis):
            if i != j:
                term = term * (-q.x) * pow(p.x - q.x, -1, ORDER) % ORDER
        rebuilt = (rebuilt + term) % ORDER
    assert rebuilt == candidate
    assert verify(forged, commitments) is (candidate == SECRET)


@settings(max_examples=40, deadline=None)
@given(index=st.integers(0, 5), delta=st.integers(1, ORDER - 1))
def test_attack_a_tampered_share_fails_verify(index: int, delta: int) -> None:
    # Prepare
    shares, commitments = split(SECRET, threshold=3, count=6)
    share = shares[index]

    # Execute / Assert
    assert not verify(Share(share.x, (share.y + delta) % ORDER), commitments)


def test_attack_a_share_presented_at_another_x_fails_verify() -> None:
    shares, commitments = split(SECRET, threshold=3, count=6)
    assert not any(verify(Share(s.x % 6 + 1, s.y), commitments) for s in shares)


def test_attack_shares_from_another_polynomial_fail_verify_against_the_first_commitments() -> None:
    # Prepare: a dealer commits to one polynomial and hands out shares of another (same secret)
    honest, commitments = split(SECRET, threshold=3, count=5)
    other, _ = split(SECRET, threshold=3, count=5)

    # Execute / Assert: the holders see it; shares that verify still rebuild the committed secret
    assert not any(verify(s, commitments) for s in other)
    assert combine([s for s in honest if verify(s, commitments)], commitments=commitments) == SECRET


def test_attack_a_polynomial_of_higher_degree_is_visible_in_the_number_of_commitments() -> None:
    # A dealer who shares with degree t (t + 1 commitments) makes t shares useless; the setup parser
    # refuses commitments of any other number than the task's t (tests/unit/test_secagg_round.py).
    shares, commitments = split(SECRET, threshold=4, count=6)
    assert commitments.threshold == 4
    with pytest.raises(NotEnoughSharesError):
        combine(shares[:3], commitments=commitments)


def test_combine_refuses_unverified_shares_too_few_and_duplicates() -> None:
    # Prepare
    shares, commitments = split(SECRET, threshold=3, count=5)
    wrong = Share(shares[0].x, (shares[0].y + 1) % ORDER)

    # Execute / Assert
    with pytest.raises(InvalidShareError, match="did not commit"):
        combine([wrong, *shares[1:3]], commitments=commitments)
    with pytest.raises(NotEnoughSharesError, match="2 shares, the threshold is 3") as raised:
        combine(shares[:2], commitments=commitments)
    assert "\n" not in str(raised.value)
    with pytest.raises(InvalidShareError, match="same x: \\[2\\]"):
        combine([shares[1], shares[1], shares[0]], commitments=commitments)


def test_combine_uses_the_threshold_shares_of_lowest_x_in_any_order() -> None:
    shares, commitments = split(SECRET, threshold=3, count=7)
    for _ in range(5):
        assert combine(random.sample(shares, 5), commitments=commitments) == SECRET


def test_a_share_with_y_zero_never_verifies() -> None:
    _, commitments = split(SECRET, threshold=2, count=3)
    assert not verify(Share(1, 0), commitments)


def test_attack_commitments_that_sum_to_infinity_verify_nothing_and_do_not_crash() -> None:
    # Prepare: C_0 = P, C_1 = -P: at x = 1 the committed value is the point at infinity
    point = public_point(random_scalar())
    commitments = Commitments((point, _negate(point)))

    # Execute / Assert
    assert commitments.expected(1) is None
    assert not verify(Share(1, 0), commitments)
    assert not verify(Share(1, 1), commitments)
    assert commitments.expected(2) == _negate(point)  # P + 2 * (-P) = -P
    assert not verify(Share(2, 5), commitments)


def test_share_bytes_round_trip_at_a_fixed_size() -> None:
    shares, _ = split(random_scalar(), threshold=3, count=5)
    for share in shares:
        data = share.to_bytes()
        assert len(data) == SHARE_BYTES == 34
        assert Share.from_bytes(data) == share


@pytest.mark.parametrize(
    "data",
    [
        bytes(SHARE_BYTES - 1),
        bytes(SHARE_BYTES + 1),
        bytes(SHARE_BYTES),  # x = 0 would be the secret itself
        (1).to_bytes(2, "big") + ORDER.to_bytes(32, "big"),  # y outside Z_n
        (1).to_bytes(2, "big") + b"\xff" * 32,
    ],
    ids=["short", "long", "x-zero", "y-order", "y-ff"],
)
def test_attack_malformed_share_bytes_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidShareError):
        Share.from_bytes(data)


_VALID = public_point(7)


@pytest.mark.parametrize(
    "point",
    [
        b"",
        bytes(POINT_BYTES),  # the point at infinity has no compressed encoding
        b"\x04" + _VALID[1:],
        b"\x02" + (5).to_bytes(32, "big"),  # x = 5 is on no point: 5^3 + 7 is not a square mod p
        b"\x02" + (_P + 1).to_bytes(32, "big"),  # x >= p: not canonical
        b"\x03" + b"\xff" * 32,
        _VALID[:-1],
        _VALID + b"\x00",
    ],
    ids=["empty", "infinity", "prefix-04", "off-curve", "x-above-p", "all-ff", "short", "long"],
)
def test_attack_malformed_points_are_invalid_commitments_not_a_crash(point: bytes) -> None:
    with pytest.raises(InvalidCommitmentError):
        parse_point(point)
    with pytest.raises(InvalidCommitmentError):
        Commitments((_VALID, point))


def test_attack_malformed_commitment_bytes_are_invalid() -> None:
    _, commitments = split(SECRET, threshold=3, count=4)
    data = commitments.to_bytes()
    assert Commitments.from_bytes(data, threshold=3) == commitments
    for bad, threshold in [(data[:-1], 3), (data, 2), (data, 4), (b"", 0), (bytes(len(data)), 3)]:
        with pytest.raises(InvalidCommitmentError):
            Commitments.from_bytes(bad, threshold=threshold)


@pytest.mark.parametrize(("threshold", "count"), [(0, 3), (4, 3), (1, 0), (2, 70000)])
def test_split_refuses_impossible_thresholds(threshold: int, count: int) -> None:
    with pytest.raises(ValueError, match="threshold"):
        split(SECRET, threshold=threshold, count=count)


@pytest.mark.parametrize("secret", [0, ORDER, ORDER + 5, -1])
def test_split_refuses_a_secret_outside_1_to_n_minus_1(secret: int) -> None:
    with pytest.raises(ValueError, match="1..n-1"):
        split(secret, threshold=2, count=3)


def test_sharings_of_the_same_secret_differ_but_rebuild_it_alike() -> None:
    (first, c1), (second, c2) = split(SECRET, threshold=2, count=3), split(SECRET, threshold=2, count=3)
    assert [s.y for s in first] != [s.y for s in second]
    assert c1.secret_point == c2.secret_point and c1 != c2
    assert combine(random.sample(first, 2), commitments=c1) == combine(random.sample(second, 2), commitments=c2)
