"""X25519 key agreement: the pairwise mask seed and the share-encryption key two members both derive.

Each member has an X25519 key pair; its raw 32-byte public key goes on chain. Two members ``u`` and
``v`` compute the same shared secret and derive from it, with HKDF-SHA256 (salt ``PROTOCOL_LABEL``,
info binding the purpose, task, round and both public keys in byte order), one seed per purpose:
the pairwise mask seed and the key that encrypts the shares they send each other. No seed is ever
sent. A peer's public key that is not 32 bytes, or whose shared secret is all zero (a low-order
point), is invalid (:class:`~fl_chain.errors.InvalidPublicKeyError`), never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fl_chain.errors import InvalidPublicKeyError, InvalidShareError
from fl_chain.privacy.context import PAIRWISE_MASK, PROTOCOL_LABEL, SHARE_ENCRYPTION, RoundContext

#: Bytes of a raw X25519 public key, and of a raw private key.
KEY_BYTES = 32
#: Bytes of a derived seed or key.
DERIVED_BYTES = 32

_RAW = serialization.Encoding.Raw


@dataclass(frozen=True, repr=False)
class KeyPair:
    """A member's X25519 key pair as raw bytes; ``private`` is what it secret-shares for dropout recovery."""

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


def recover_key_pair(private: bytes, registered_public: bytes) -> KeyPair:
    """The key pair of a private key reconstructed from shares, checked against the member's public key.

    Raises
    ------
    InvalidShareError
        If the private key is not 32 bytes or does not match ``registered_public``: a share was wrong.
    """
    if len(private) != KEY_BYTES:
        raise InvalidShareError(f"a reconstructed private key must be {KEY_BYTES} bytes, got {len(private)}")
    pair = KeyPair.from_private(private)
    if pair.public != registered_public:
        raise InvalidShareError(
            "the reconstructed private key does not match the registered public key: a share was wrong"
        )
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


def _derive(own: KeyPair, peer_public: bytes, context: RoundContext, purpose: bytes) -> bytes:
    secret = _exchange(own.private, peer_public)
    if own.public == peer_public:
        raise InvalidPublicKeyError("a peer's public key equals our own: pairwise keys need two members")
    low, high = sorted((own.public, peer_public))
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=DERIVED_BYTES, salt=PROTOCOL_LABEL, info=context.info(purpose, low, high)
    )
    return hkdf.derive(secret)


def pairwise_mask_seed(own: KeyPair, peer_public: bytes, context: RoundContext) -> bytes:
    """The 32-byte seed of the pairwise mask ``own`` and the peer share in this round (both derive it).

    Raises
    ------
    InvalidPublicKeyError
        If the peer's key is not 32 bytes, of low order, or equal to ours.
    """
    return _derive(own, peer_public, context, PAIRWISE_MASK)


def share_encryption_key(own: KeyPair, peer_public: bytes, context: RoundContext) -> bytes:
    """The AES-256-GCM key for the shares ``own`` and the peer send each other in this round.

    Raises
    ------
    InvalidPublicKeyError
        If the peer's key is not 32 bytes, of low order, or equal to ours.
    """
    return _derive(own, peer_public, context, SHARE_ENCRYPTION)
