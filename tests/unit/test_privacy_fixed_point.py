"""The fixed-point ring of secure aggregation: encoding, order-free sums, the no-wrap check, the quantization bound."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_chain.errors import ConfigError, RingOverflowError
from fl_chain.privacy.fixed_point import (
    MAX_EXACT_SUM,
    check_no_wrap,
    decode,
    encode,
    max_code,
    quantization_bound,
    ring_sum,
)


def test_encode_rounds_half_to_even_and_is_twos_complement() -> None:
    # Execute
    codes = encode([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.25], clip=4.0, frac_bits=0)

    # Assert
    assert codes.dtype == np.uint64
    assert codes.view(np.int64).tolist() == [0, 2, 2, 0, -2, -2, 0]
    assert int(encode([-1.0], clip=1.0, frac_bits=0)[0]) == 2**64 - 1


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 8),
    frac_bits=st.integers(0, 40),
    data=st.data(),
)
def test_decoded_sum_is_within_the_quantization_bound_of_the_exact_sum(
    n: int, frac_bits: int, data: st.DataObject
) -> None:
    # Prepare
    clip = 100.0
    check_no_wrap(n, clip, frac_bits)
    values = st.floats(-clip, clip, allow_nan=False, allow_infinity=False)
    updates = [data.draw(st.lists(values, min_size=5, max_size=5)) for _ in range(n)]

    # Execute
    total = decode(ring_sum(encode(u, clip=clip, frac_bits=frac_bits) for u in updates), frac_bits=frac_bits)

    # Assert: exact rational arithmetic, no float slack
    bound = Fraction(quantization_bound(n, frac_bits))
    assert bound == Fraction(n, 2 ** (frac_bits + 1))
    for i in range(5):
        exact = sum(Fraction(u[i]) for u in updates)
        assert abs(Fraction(float(total[i])) - exact) <= bound


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 12))
def test_ring_sum_gives_the_same_bytes_in_any_order(seed: int, n: int) -> None:
    # Prepare
    rng = np.random.default_rng(seed)
    parts = [encode(rng.uniform(-1, 1, 33), clip=1.0, frac_bits=30) for _ in range(n)]
    shuffled = parts[:]
    random.Random(seed).shuffle(shuffled)

    # Execute / Assert
    assert ring_sum(parts).tobytes() == ring_sum(shuffled).tobytes() == ring_sum(reversed(parts)).tobytes()


def test_check_no_wrap_accepts_the_limit_and_refuses_one_past_it() -> None:
    # Prepare: clip 1 at 2^20 is 2^20 per value, so 2^33 contributions reach 2^53 exactly
    check_no_wrap(2**33, 1.0, 20)

    # Execute / Assert
    with pytest.raises(RingOverflowError, match="lower frac_bits or the clip bound") as raised:
        check_no_wrap(2**33 + 1, 1.0, 20)
    assert isinstance(raised.value, ConfigError)
    assert "\n" not in str(raised.value)


def test_the_largest_sum_the_check_allows_decodes_exactly() -> None:
    # Prepare: 4 contributions at the clip, so the sum sits at MAX_EXACT_SUM
    clip, frac_bits = 2.0**21, 30
    assert 4 * max_code(clip, frac_bits) == MAX_EXACT_SUM
    check_no_wrap(4, clip, frac_bits)

    # Execute
    total = ring_sum(encode([clip, -clip], clip=clip, frac_bits=frac_bits) for _ in range(4))

    # Assert
    assert decode(total, frac_bits=frac_bits).tolist() == [4 * clip, -4 * clip]


@pytest.mark.parametrize("value", [1.0000001, -1.5, float("nan"), float("inf"), float("-inf")])
def test_attack_a_value_past_the_clip_is_refused_at_encode(value: float) -> None:
    # Execute / Assert: an honest contributor can never put a wrapping value into the ring
    with pytest.raises(RingOverflowError, match="clip the update before encoding"):
        encode([0.0, value], clip=1.0, frac_bits=16)


def test_attack_a_crafted_ring_element_is_invisible_in_the_sum() -> None:
    """The residual risk the bound check leaves: the ring cannot see a malicious contributor's range.

    A contributor that skips ``encode`` and sends any ``uint64`` shifts the sum by any amount (mod
    2^64); masked, nobody can tell. Every honest aggregator still computes the same bytes, so digests
    agree on the wrong value: range proofs, or a clipped-norm audit, are needed to stop it.
    """
    # Prepare
    honest = [encode([0.5, -0.25], clip=1.0, frac_bits=16) for _ in range(3)]
    crafted = np.array([2**63, 0], dtype=np.uint64)

    # Execute
    total = decode(ring_sum([*honest, crafted]), frac_bits=16)

    # Assert
    assert total[1] == -0.75
    assert abs(total[0]) > 1e13


def test_ring_sum_and_decode_refuse_other_dtypes() -> None:
    with pytest.raises(ValueError, match="uint64"):
        ring_sum([np.zeros(3, dtype=np.int64)])
    with pytest.raises(ValueError, match="uint64"):
        decode(np.zeros(3, dtype=np.int64), frac_bits=3)
    with pytest.raises(ValueError, match="shape"):
        ring_sum([np.zeros(3, dtype=np.uint64), np.zeros(4, dtype=np.uint64)])
    with pytest.raises(ValueError, match="frac_bits"):
        encode([0.0], clip=1.0, frac_bits=53)
