"""Key agreement (X25519 long-term keys, secp256k1 mask keys): both sides derive the same seeds, bound to task,
round and purpose; bad keys are refused."""

from __future__ import annotations

import pytest

from fl_chain.errors import InvalidPublicKeyError, InvalidShareError, PrivacyError
from fl_chain.privacy.context import RoundContext
from fl_chain.privacy.keys import (
    KeyPair,
    MaskKeyPair,
    pairwise_mask_seed,
    recover_key_pair,
    share_encryption_key,
    validate_mask_public_key,
    validate_public_key,
    verify_possession,
)
from fl_chain.privacy.vss import ORDER

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
    alice_mask, bob_mask = MaskKeyPair.generate(), MaskKeyPair.generate()

    # Execute / Assert
    assert pairwise_mask_seed(alice_mask, bob_mask.public, CONTEXT) == pairwise_mask_seed(
        bob_mask, alice_mask.public, CONTEXT
    )
    assert share_encryption_key(alice, bob.public, CONTEXT) == share_encryption_key(bob, alice.public, CONTEXT)
    assert len(pairwise_mask_seed(alice_mask, bob_mask.public, CONTEXT)) == 32
    assert len(alice_mask.public) == 33 and alice_mask.public[0] in (2, 3)


def test_seeds_differ_per_task_round_purpose_and_pair() -> None:
    # Prepare
    alice, bob = KeyPair.generate(), KeyPair.generate()
    a, b, c = MaskKeyPair.generate(), MaskKeyPair.generate(), MaskKeyPair.generate()

    # Execute
    seeds = {
        pairwise_mask_seed(a, b.public, CONTEXT),
        pairwise_mask_seed(a, b.public, RoundContext(task_id=7, round=4)),
        pairwise_mask_seed(a, b.public, RoundContext(task_id=8, round=3)),
        share_encryption_key(alice, bob.public, CONTEXT),
        pairwise_mask_seed(a, c.public, CONTEXT),
        pairwise_mask_seed(b, c.public, CONTEXT),
    }

    # Assert
    assert len(seeds) == 6


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_attack_long_term_public_key_of_wrong_length_is_rejected(size: int) -> None:
    # Prepare
    alice = KeyPair.generate()

    # Execute / Assert
    with pytest.raises(InvalidPublicKeyError, match="32 bytes"):
        validate_public_key(bytes(size))
    with pytest.raises(InvalidPublicKeyError, match="32 bytes"):
        share_encryption_key(alice, bytes(size), CONTEXT)


@pytest.mark.parametrize("point", LOW_ORDER)
def test_attack_low_order_public_key_is_rejected(point: str) -> None:
    # Prepare: a low-order point makes the shared secret all zero, whatever our key: a known seed
    alice = KeyPair.generate()

    # Execute / Assert
    with pytest.raises(InvalidPublicKeyError, match="low order"):
        validate_public_key(bytes.fromhex(point))
    with pytest.raises(PrivacyError):
        share_encryption_key(alice, bytes.fromhex(point), CONTEXT)


_NOT_ON_CURVE = "02" + "00" * 31 + "05"  # x = 5: 5^3 + 7 = 132 is not a square mod p
_P = 2**256 - 2**32 - 977


@pytest.mark.parametrize(
    "public",
    [
        b"",
        bytes(33),  # prefix 00: the point at infinity has no compressed encoding
        b"\x04" + bytes(32),
        bytes.fromhex(_NOT_ON_CURVE),
        b"\x02" + (_P + 1).to_bytes(32, "big"),  # x >= p: not canonical
        b"\x02" + b"\xff" * 32,
        MaskKeyPair.generate().public[:32],
        MaskKeyPair.generate().public + b"\x00",
    ],
    ids=["empty", "infinity", "bad-prefix", "off-curve", "x-above-p", "all-ff", "short", "long"],
)
def test_attack_invalid_mask_public_key_is_rejected_not_a_crash(public: bytes) -> None:
    # Prepare
    alice = MaskKeyPair.generate()

    # Execute / Assert
    with pytest.raises(InvalidPublicKeyError):
        validate_mask_public_key(public)
    with pytest.raises(InvalidPublicKeyError):
        pairwise_mask_seed(alice, public, CONTEXT)


def test_attack_uncompressed_encoding_of_a_valid_mask_key_is_rejected() -> None:
    from coincurve import PublicKey

    alice, bob = MaskKeyPair.generate(), MaskKeyPair.generate()
    uncompressed = PublicKey(bob.public).format(compressed=False)
    with pytest.raises(InvalidPublicKeyError):
        pairwise_mask_seed(alice, uncompressed, CONTEXT)


def test_attack_own_public_key_as_peer_is_rejected() -> None:
    alice, mask = KeyPair.generate(), MaskKeyPair.generate()
    with pytest.raises(InvalidPublicKeyError, match="equals our own"):
        pairwise_mask_seed(mask, mask.public, CONTEXT)
    with pytest.raises(InvalidPublicKeyError, match="equals our own"):
        share_encryption_key(alice, alice.public, CONTEXT)


def test_recover_key_pair_checks_the_mask_public_key() -> None:
    # Prepare
    alice, bob = MaskKeyPair.generate(), MaskKeyPair.generate()

    # Execute / Assert
    assert recover_key_pair(alice.scalar, alice.public) == alice
    with pytest.raises(InvalidShareError, match="does not match"):
        recover_key_pair(bob.scalar, alice.public)
    for out_of_range in (0, ORDER, ORDER + 1, -1):
        with pytest.raises(InvalidShareError, match="1..n-1"):
            recover_key_pair(out_of_range, alice.public)


@pytest.mark.parametrize("private", [bytes(32), ORDER.to_bytes(32, "big"), b"\xff" * 32, bytes(31)])
def test_mask_private_key_out_of_range_is_a_programming_error(private: bytes) -> None:
    with pytest.raises(ValueError):
        MaskKeyPair.from_private(private)


def test_key_pair_repr_shows_no_private_key() -> None:
    for pair in (KeyPair.generate(), MaskKeyPair.generate()):
        assert pair.private.hex() not in repr(pair)
        assert pair.public.hex() in repr(pair)


@pytest.mark.parametrize(
    "proof",
    [b"", bytes(64), bytes(65), b"\xff" * 65, bytes(64) + b"\x04", b"\x01" * 66],
    ids=["empty", "short", "zero", "all-ff", "bad-recovery-id", "long"],
)
def test_attack_a_malformed_proof_of_possession_is_false_not_a_crash(proof: bytes) -> None:
    key = MaskKeyPair.generate()
    context = RoundContext(1, 2)
    assert verify_possession(key.public, key.prove_possession(context, "0x" + "11" * 20), context, "0x" + "11" * 20)
    assert not verify_possession(key.public, proof, context, "0x" + "11" * 20)
