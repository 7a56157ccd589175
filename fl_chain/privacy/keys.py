"""Key agreement: the share-encryption key (X25519) and the pairwise mask seed (secp256k1) two members derive.

Two kinds of key pair, one per job:

* the **long-term** key (:class:`KeyPair`, X25519): its raw 32-byte public key goes on chain at join;
  two members derive from it the key that encrypts the shares they send each other. It is never shared.
* the per-round **mask** key (:class:`MaskKeyPair`, secp256k1 through ``coincurve``): its public key is
  the compressed 33-byte point in the member's setup blob, which is also the Feldman commitment ``C_0``
  of the shares of its private key (``fl_chain.privacy.vss``), so a private key rebuilt from verified
  shares always matches it. Two members derive the pairwise mask seed from it.

From the shared secret (X25519's 32 bytes; for secp256k1 libsecp256k1's ECDH output, SHA-256 of the
compressed shared point) HKDF-SHA256 (salt ``PROTOCOL_LABEL``, info binding the purpose, task, round
and both public keys in byte order) derives one 32-byte value per purpose. No seed is ever sent. A
peer's public key of the wrong size, of low order (X25519: all-zero shared secret) or not a canonical
point of secp256k1 is invalid (:class:`~fl_chain.errors.InvalidPublicKeyError`), never a crash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fl_chain.errors import InvalidCommitmentError, InvalidPublicKeyError, InvalidShareError
from fl_chain.privacy.context import (
    MASK_KEY_POSSESSION,
    PAIRWISE_MASK,
    PROTOCOL_LABEL,
    SHARE_ENCRYPTION,
    RoundContext,
    member_bytes,
)
from fl_chain.privacy.vss import ORDER, POINT_BYTES, SCALAR_BYTES, parse_point, public_point, random_scalar

#: Bytes of a raw X25519 public key, and of a raw private key.
KEY_BYTES = 32
#: Bytes of a mask public key (a compressed secp256k1 point); its private key is ``SCALAR_BYTES``.
MASK_PUBLIC_BYTES = POINT_BYTES
#: Bytes of a derived seed or key.
DERIVED_BYTES = 32

_RAW = serialization.Encoding.Raw


@dataclass(frozen=True, repr=False)
class KeyPair:
    """A member's long-term X25519 key pair as raw bytes (registered on chain; never shared)."""

    private: bytes
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the operating system's randomness."""
        return cls.from_private(
            X25519PrivateKey.generate().private_bytes(
                _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
        )

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        """The key pair of a raw 32-byte private key (any 32 bytes are a valid X25519 scalar)."""
        if len(private) != KEY_BYTES:
            raise ValueError(f"an X25519 private key is {KEY_BYTES} bytes, got {len(private)}")
        public = (
            X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        )
        return cls(private=private, public=public)

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()})"


@dataclass(frozen=True, repr=False)
class MaskKeyPair:
    """A member's per-round secp256k1 mask key pair: ``private`` a 32-byte big-endian scalar in
    ``1..n-1`` (what it secret-shares for dropout recovery), ``public`` the compressed 33-byte point."""

    private: bytes
    public: bytes

    @classmethod
    def generate(cls) -> MaskKeyPair:
        """A fresh key pair from the operating system's randomness."""
        return cls.from_private(random_scalar().to_bytes(SCALAR_BYTES, "big"))

    @classmethod
    def from_private(cls, private: bytes) -> MaskKeyPair:
        """The key pair of a 32-byte big-endian scalar in ``1..n-1``."""
        scalar = int.from_bytes(private, "big")
        if len(private) != SCALAR_BYTES or not 0 < scalar < ORDER:
            raise ValueError(f"a secp256k1 private key is {SCALAR_BYTES} bytes, a scalar in 1..n-1")
        return cls(private=bytes(private), public=public_point(scalar))

    @property
    def scalar(self) -> int:
        """The private key as an integer."""
        return int.from_bytes(self.private, "big")

    def prove_possession(self, context: RoundContext, member: str) -> bytes:
        """A recoverable ECDSA signature (``POSSESSION_BYTES``) of ``member``'s round under this key: nobody
        who does not hold the private key can present this public key as its own (a copied key of
        another member's setup fails :func:`verify_possession`)."""
        signature = PrivateKey(self.private).sign_recoverable(_possession_message(context, member), hasher=None)
        return bytes(signature)

    def __repr__(self) -> str:
        return f"MaskKeyPair(public={self.public.hex()})"


#: Bytes of a proof of possession of a mask key (recoverable ECDSA: r, s, recovery id).
POSSESSION_BYTES = 65


def _possession_message(context: RoundContext, member: str) -> bytes:
    return hashlib.sha256(context.info(MASK_KEY_POSSESSION, member_bytes(member.lower()))).digest()


def verify_possession(public: bytes, proof: bytes, context: RoundContext, member: str) -> bool:
    """Whether ``proof`` shows that whoever made ``member``'s setup of the round holds the private key of
    ``public`` (False, never an exception, for any malformed proof)."""
    if len(proof) != POSSESSION_BYTES:
        return False
    try:
        signer = PublicKey.from_signature_and_message(proof, _possession_message(context, member), hasher=None)
    except Exception:  # noqa: BLE001 - whatever a peer's bytes provoke in libsecp256k1: not a proof
        return False
    return bytes(signer.format(compressed=True)) == public


def validate_mask_public_key(public: bytes) -> None:
    """Raise :class:`InvalidPublicKeyError` unless ``public`` is a canonical compressed secp256k1 point
    (the group has prime order: every such point is a usable key)."""
    try:
        parse_point(public)
    except InvalidCommitmentError as exc:
        raise InvalidPublicKeyError(f"not a mask public key: {exc}") from None


def recover_key_pair(private: int, registered_public: bytes) -> MaskKeyPair:
    """The mask key pair of a private scalar reconstructed from shares, checked against the public key.

    Shares verified against the dealer's commitments always rebuild the key of ``C_0`` = its public
    key; the check guards against a caller that skipped verification.

    Raises
    ------
    InvalidShareError
        If the scalar is out of range or does not match ``registered_public``: a share was wrong.
    """
    if not 0 < private < ORDER:
        raise InvalidShareError("a reconstructed private key must be a scalar in 1..n-1")
    pair = MaskKeyPair.from_private(private.to_bytes(SCALAR_BYTES, "big"))
    if pair.public != registered_public:
        raise InvalidShareError("the reconstructed private key does not match the mask public key: a share was wrong")
    return pair


def _exchange(private: bytes, peer_public: bytes) -> bytes:
    if len(peer_public) != KEY_BYTES:
        raise InvalidPublicKeyError(f"an X25519 public key is {KEY_BYTES} bytes, got {len(peer_public)}")
    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:  # cryptography refuses an all-zero shared secret (a low-order point)
        raise InvalidPublicKeyError(
            f"public key {peer_public.hex()} is of low order (all-zero shared secret): the member must register another"
        ) from None


def validate_public_key(public: bytes) -> None:
    """Raise :class:`InvalidPublicKeyError` unless ``public`` is a usable X25519 public key.

    A low-order point gives the all-zero shared secret with every private key, so one throwaway
    exchange decides.
    """
    _exchange(KeyPair.generate().private, public)


def _hkdf(secret: bytes, own_public: bytes, peer_public: bytes, context: RoundContext, purpose: bytes) -> bytes:
    if own_public == peer_public:
        raise InvalidPublicKeyError("a peer's public key equals our own: pairwise keys need two members")
    low, high = sorted((own_public, peer_public))
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=DERIVED_BYTES, salt=PROTOCOL_LABEL, info=context.info(purpose, low, high)
    )
    return hkdf.derive(secret)


def pairwise_mask_seed(own: MaskKeyPair, peer_public: bytes, context: RoundContext) -> bytes:
    """The 32-byte seed of the pairwise mask ``own`` and the peer share in this round (both derive it):
    HKDF over the secp256k1 ECDH output of ``own`` and the peer's mask public key.

    Raises
    ------
    InvalidPublicKeyError
        If the peer's key is not a canonical compressed secp256k1 point, or equals ours.
    """
    validate_mask_public_key(peer_public)
    secret = PrivateKey(own.private).ecdh(bytes(peer_public))
    return _hkdf(secret, own.public, peer_public, context, PAIRWISE_MASK)


def share_encryption_key(own: KeyPair, peer_public: bytes, context: RoundContext) -> bytes:
    """The AES-256-GCM key for the shares ``own`` and the peer send each other in this round.

    Raises
    ------
    InvalidPublicKeyError
        If the peer's key is not 32 bytes, of low order, or equal to ours.
    """
    return _hkdf(_exchange(own.private, peer_public), own.public, peer_public, context, SHARE_ENCRYPTION)
