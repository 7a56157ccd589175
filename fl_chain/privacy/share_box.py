"""The sealed box in which one member sends another its two shares for a round.

A box holds the recipient's share of the sender's self-mask seed and of the sender's mask private key
(Feldman shares over secp256k1's group order, ``fl_chain.privacy.vss``),
encrypted with AES-256-GCM under the pair's share-encryption key
(:func:`fl_chain.privacy.keys.share_encryption_key`). The associated data binds the task, the round,
the sender and the recipient, so a box opened with any other of these fails, as does a tampered one:
:class:`~fl_chain.errors.InvalidShareError`, never a crash (whether the shares verify against the
sender's commitments is the caller's check). Layout, ``BOX_BYTES`` = 96 bytes:
a 12-byte random nonce, then the ciphertext of ``self-seed share | private-key share``
(2 x ``SHARE_BYTES``), then the 16-byte tag.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fl_chain.errors import InvalidShareError
from fl_chain.privacy.context import RoundContext, member_bytes
from fl_chain.privacy.vss import SHARE_BYTES, Share

_NONCE_BYTES = 12
_TAG_BYTES = 16
_PURPOSE = b"share-box"
#: Bytes of a sealed box.
BOX_BYTES = _NONCE_BYTES + 2 * SHARE_BYTES + _TAG_BYTES


class ShareBundle(NamedTuple):
    """What a sender gives one recipient: a share of its self-mask seed and one of its mask private key."""

    self_seed: Share
    private_key: Share


def _associated_data(context: RoundContext, sender: str, recipient: str) -> bytes:
    return context.info(_PURPOSE, member_bytes(sender), member_bytes(recipient))


def seal_shares(bundle: ShareBundle, *, key: bytes, context: RoundContext, sender: str, recipient: str) -> bytes:
    """Encrypt ``bundle`` from ``sender`` to ``recipient`` for this round (``BOX_BYTES`` bytes)."""
    if bundle.self_seed.x != bundle.private_key.x:
        raise ValueError("both shares of a bundle are for the same recipient: their x must be equal")
    nonce = os.urandom(_NONCE_BYTES)
    plaintext = bundle.self_seed.to_bytes() + bundle.private_key.to_bytes()
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _associated_data(context, sender, recipient))


def open_shares(box: bytes, *, key: bytes, context: RoundContext, sender: str, recipient: str) -> ShareBundle:
    """Decrypt a box :func:`seal_shares` made for exactly this round, sender and recipient.

    Raises
    ------
    InvalidShareError
        If the box has the wrong size, does not authenticate (tampered, another round, sender,
        recipient or key), or holds shares that do not parse or differ in x.
    """
    if len(box) != BOX_BYTES:
        raise InvalidShareError(f"a share box is {BOX_BYTES} bytes, got {len(box)}")
    nonce, ciphertext = box[:_NONCE_BYTES], box[_NONCE_BYTES:]
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, _associated_data(context, sender, recipient))
    except InvalidTag:
        raise InvalidShareError(
            f"share box from {sender} to {recipient} does not authenticate (tampered, or for another round or member)"
        ) from None
    bundle = ShareBundle(Share.from_bytes(plaintext[:SHARE_BYTES]), Share.from_bytes(plaintext[SHARE_BYTES:]))
    if bundle.self_seed.x != bundle.private_key.x:
        raise InvalidShareError(f"share box from {sender} holds shares for two positions")
    return bundle
