"""X25519 key agreement: both sides derive the same seeds, bound to task, round and purpose; bad keys are refused."""

from __future__ import annotations

import pytest

from fl_chain.errors import InvalidPublicKeyError, InvalidShareError, PrivacyError
from fl_chain.privacy.context import RoundContext
from fl_chain.privacy.keys import (
    KeyPair,
    pairwise_mask_seed,
    recover_key_pair,
    share_encryption_key,
    validate_public_key,
)

CONTEXT = RoundContext(task_id=7, round=3)

#: Low-order points of Curve25519 (canonical, the encodings of p and p + 1, and with the ignored top bit set).
LOW_ORDER = [
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
    "ed" + "ff" * 30 + "7f",
    "ee" + "ff" * 30 + "7f",
    "00" * 31 + "80",
    "01" + "00" * 30 + "80",
    "ec" + "ff" * 31,
    "ed" + "ff" * 31,
    "ee" + "ff" * 31,
]


def test_both_members_derive_the_same_seeds() -> None:
    # Prepare
    alice, bob = KeyPair.generate(), KeyPair.generate()

    # Execute / Assert
    assert pairwise_mask_seed(alice, bob.public, CONTEXT) == pairwise_mask_seed(bob, alice.public, CONTEXT)
    assert share_encryption_key(alice, bob.public, CONTEXT) == share_encryption_key(bob, alice.public, CONTEXT)
    assert len(pairwise_mask_seed(alice, bob.public, CONTEXT)) == 32


def test_seeds_differ_per_task_round_purpose_and_pair() -> None:
    # Prepare
    alice, bob, carol = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()

    # Execute
    seeds = {
        pairwise_mask_seed(alice, bob.public, CONTEXT),
        pairwise_mask_seed(alice, bob.public, RoundContext(task_id=7, round=4)),
        pairwise_mask_seed(alice, bob.public, RoundContext(task_id=8, round=3)),
        share_encryption_key(alice, bob.public, CONTEXT),
        pairwise_mask_seed(alice, carol.public, CONTEXT),
        pairwise_mask_seed(bob, carol.public, CONTEXT),
    }

    # Assert
    assert len(seeds) == 6


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_attack_public_key_of_wrong_length_is_rejected(size: int) -> None:
    # Prepare
    alice = KeyPair.generate()

    # Execute / Assert
    with pytest.raises(InvalidPublicKeyError, match="32 bytes"):
        validate_public_key(bytes(size))
    with pytest.raises(InvalidPublicKeyError, match="32 bytes"):
        pairwise_mask_seed(alice, bytes(size), CONTEXT)


@pytest.mark.parametrize("point", LOW_ORDER)
def test_attack_low_order_public_key_is_rejected(point: str) -> None:
    # Prepare: a low-order point makes the shared secret all zero, whatever our key: a known seed
    alice = KeyPair.generate()

    # Execute / Assert
    with pytest.raises(InvalidPublicKeyError, match="low order"):
        validate_public_key(bytes.fromhex(point))
    with pytest.raises(PrivacyError):
        share_encryption_key(alice, bytes.fromhex(point), CONTEXT)


def test_attack_own_public_key_as_peer_is_rejected() -> None:
    alice = KeyPair.generate()
    with pytest.raises(InvalidPublicKeyError, match="equals our own"):
        pairwise_mask_seed(alice, alice.public, CONTEXT)


def test_recover_key_pair_checks_the_registered_public_key() -> None:
    # Prepare
    alice, bob = KeyPair.generate(), KeyPair.generate()

    # Execute / Assert
    assert recover_key_pair(alice.private, alice.public) == alice
    with pytest.raises(InvalidShareError, match="does not match"):
        recover_key_pair(bob.private, alice.public)
    with pytest.raises(InvalidShareError, match="32 bytes"):
        recover_key_pair(bytes(31), alice.public)


def test_key_pair_repr_shows_no_private_key() -> None:
    alice = KeyPair.generate()
    assert alice.private.hex() not in repr(alice)
    assert alice.public.hex() in repr(alice)
