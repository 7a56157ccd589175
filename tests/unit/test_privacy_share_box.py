"""Share boxes: AES-256-GCM bound to task, round, sender and recipient; anything else is an invalid share."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_chain.errors import InvalidShareError
from fl_chain.privacy.context import RoundContext
from fl_chain.privacy.keys import KeyPair, share_encryption_key
from fl_chain.privacy.share_box import BOX_BYTES, ShareBundle, open_shares, seal_shares
from fl_chain.privacy.vss import split

ALICE, BOB, CAROL = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20
CONTEXT = RoundContext(task_id=1, round=5)
KEYS = {name: KeyPair.generate() for name in (ALICE, BOB, CAROL)}
BUNDLE = ShareBundle(
    self_seed=split(12345, threshold=2, count=3)[0][1], private_key=split(67890, threshold=2, count=3)[0][1]
)


def _key(own: str, peer: str, context: RoundContext = CONTEXT) -> bytes:
    return share_encryption_key(KEYS[own], KEYS[peer].public, context)


def _box() -> bytes:
    return seal_shares(BUNDLE, key=_key(ALICE, BOB), context=CONTEXT, sender=ALICE, recipient=BOB)


def test_recipient_opens_the_box_with_its_own_side_of_the_key() -> None:
    # Execute
    box = _box()
    opened = open_shares(box, key=_key(BOB, ALICE), context=CONTEXT, sender=ALICE, recipient=BOB)

    # Assert
    assert len(box) == BOX_BYTES == 96
    assert opened == BUNDLE
    assert box != _box()  # a fresh nonce each time


@pytest.mark.parametrize(
    ("own", "peer", "context", "sender", "recipient"),
    [
        (BOB, ALICE, RoundContext(task_id=1, round=6), ALICE, BOB),  # replayed to the next round
        (BOB, ALICE, RoundContext(task_id=2, round=5), ALICE, BOB),  # replayed to another task
        (BOB, ALICE, CONTEXT, ALICE, CAROL),  # claimed for another recipient
        (BOB, ALICE, CONTEXT, CAROL, BOB),  # claimed from another sender
        (BOB, ALICE, CONTEXT, BOB, ALICE),  # sender and recipient swapped
        (CAROL, ALICE, CONTEXT, ALICE, CAROL),  # forwarded to Carol, who has her own key with Alice
        (CAROL, BOB, CONTEXT, ALICE, BOB),  # opened by a third member with her key to Bob
    ],
)
def test_attack_box_for_another_round_or_member_does_not_open(
    own: str, peer: str, context: RoundContext, sender: str, recipient: str
) -> None:
    with pytest.raises(InvalidShareError, match="does not authenticate"):
        open_shares(_box(), key=_key(own, peer, context), context=context, sender=sender, recipient=recipient)


@settings(max_examples=100, deadline=None)
@given(index=st.integers(0, BOX_BYTES - 1), flip=st.integers(1, 255))
def test_attack_tampered_box_is_rejected(index: int, flip: int) -> None:
    # Prepare
    tampered = bytearray(_box())
    tampered[index] ^= flip

    # Execute / Assert
    with pytest.raises(InvalidShareError, match="does not authenticate"):
        open_shares(bytes(tampered), key=_key(BOB, ALICE), context=CONTEXT, sender=ALICE, recipient=BOB)


@pytest.mark.parametrize("size", [0, 12, BOX_BYTES - 1, BOX_BYTES + 1, 10**6])
def test_attack_box_of_wrong_size_is_rejected_before_decryption(size: int) -> None:
    with pytest.raises(InvalidShareError, match=f"{BOX_BYTES} bytes, got {size}"):
        open_shares(bytes(size), key=_key(BOB, ALICE), context=CONTEXT, sender=ALICE, recipient=BOB)
