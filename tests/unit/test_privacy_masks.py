"""The seekable mask PRG: AES-256-CTR word layout, seeking, and masks bound to their round."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_chain.privacy.context import RoundContext, pair_sign
from fl_chain.privacy.masks import mask_words, self_mask_key

SEED = bytes(range(32))
FULL = 1000


def test_mask_words_are_little_endian_words_of_the_aes_keystream_from_counter_zero() -> None:
    # Prepare: the keystream of CTR from counter block 0 is AES_k(0), AES_k(1), ...
    ecb = Cipher(algorithms.AES(SEED), modes.ECB()).encryptor()
    keystream = ecb.update(b"".join(i.to_bytes(16, "big") for i in range(4)))

    # Execute
    words = mask_words(SEED, 0, 8)

    # Assert
    expected = [int.from_bytes(keystream[8 * i : 8 * i + 8], "little") for i in range(8)]
    assert words.dtype == np.uint64
    assert words.tolist() == expected


@settings(max_examples=200, deadline=None)
@given(offset=st.integers(0, FULL), count=st.integers(0, 64))
def test_seeking_gives_the_slice_of_the_full_expansion(offset: int, count: int) -> None:
    # Prepare
    full = mask_words(SEED, 0, FULL + 64)

    # Execute / Assert: odd offsets start half way into an AES block
    assert mask_words(SEED, offset, count).tolist() == full[offset : offset + count].tolist()


def test_seeking_far_into_the_stream_needs_no_prefix() -> None:
    # Prepare: word 2^40 + 1 sits in block 2^39 + 0, second half
    offset = 2**40 + 1
    ecb = Cipher(algorithms.AES(SEED), modes.ECB()).encryptor()
    block = ecb.update((offset * 8 // 16).to_bytes(16, "big"))

    # Execute / Assert
    assert int(mask_words(SEED, offset, 1)[0]) == int.from_bytes(block[8:], "little")


def test_self_mask_keys_differ_per_task_and_round() -> None:
    # Execute
    keys = {self_mask_key(SEED, RoundContext(task, round_)) for task in (0, 1) for round_ in (0, 1, 2)}

    # Assert
    assert len(keys) == 6
    assert SEED not in keys


def test_pair_sign_is_plus_for_the_lower_address_whatever_the_case() -> None:
    low, high = "0x" + "0a" * 20, "0x" + "0B" * 20
    assert pair_sign(low, high) == 1
    assert pair_sign(high, low) == -1
    with pytest.raises(ValueError, match="itself"):
        pair_sign(low, low.upper().replace("0X", "0x"))


@pytest.mark.parametrize(("seed", "offset", "count"), [(bytes(31), 0, 1), (SEED, -1, 1), (SEED, 0, -1)])
def test_mask_words_refuses_bad_arguments(seed: bytes, offset: int, count: int) -> None:
    with pytest.raises(ValueError):
        mask_words(seed, offset, count)
