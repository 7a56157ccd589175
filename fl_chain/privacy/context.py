"""Where secure-aggregation material belongs: a task's round, and the members' canonical ids.

Every key, seed and ciphertext of secure aggregation is bound to a :class:`RoundContext` and a purpose
label (HKDF ``info``, AES-GCM associated data), so nothing derived for one task, round or use is
valid for another. Members are Ethereum addresses; their canonical form is the 20 raw bytes, and
their order (which decides the sign of a pairwise mask) is the numeric order of those bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Version prefix of every label; a change to any derivation changes it, so old material never matches.
PROTOCOL_LABEL = b"fl-chain/secagg/v2"

#: Purpose of the pairwise mask seed two members agree on (keys.py, from their secp256k1 mask keys).
PAIRWISE_MASK = b"pairwise-mask"
#: Purpose of the key that encrypts the secret shares one member sends another (keys.py, share_box.py).
SHARE_ENCRYPTION = b"share-encryption"
#: Purpose of the AES key expanded from a member's self-mask seed (masks.py).
SELF_MASK = b"self-mask"
#: Purpose of the message a member signs with its round's mask key to show it holds it (keys.py).
MASK_KEY_POSSESSION = b"mask-key-possession"

_UINT256 = 1 << 256


@dataclass(frozen=True)
class RoundContext:
    """A task's round, as the contract numbers them (both ``uint256``).

    Parameters
    ----------
    task_id:
        The contract's task id.
    round:
        The round number within the task.
    """

    task_id: int
    round: int

    def __post_init__(self) -> None:
        for name, value in (("task_id", self.task_id), ("round", self.round)):
            if not 0 <= value < _UINT256:
                raise ValueError(f"{name} must be a uint256, got {value}")

    def info(self, purpose: bytes, *parts: bytes) -> bytes:
        """``PROTOCOL_LABEL | len | purpose | task (32 bytes) | round (32 bytes) | parts...``, unambiguous.

        Every part is length-prefixed (2 bytes), so no two different argument lists give the same bytes.
        """
        fields = [purpose, self.task_id.to_bytes(32, "big"), self.round.to_bytes(32, "big"), *parts]
        return PROTOCOL_LABEL + b"".join(len(f).to_bytes(2, "big") + f for f in fields)


def member_bytes(address: str) -> bytes:
    """The 20 raw bytes of an Ethereum address (``0x`` and 40 hex digits, any case)."""
    if len(address) != 42 or not address.startswith(("0x", "0X")):
        raise ValueError(f"member id must be an Ethereum address (0x and 40 hex digits), got {address!r}")
    try:
        return bytes.fromhex(address[2:])
    except ValueError:
        raise ValueError(f"member id must be an Ethereum address (0x and 40 hex digits), got {address!r}") from None


def pair_sign(own: str, peer: str) -> int:
    """``+1`` if ``own`` adds the pairwise mask it shares with ``peer`` (the lower address), ``-1`` if it subtracts.

    Raises
    ------
    ValueError
        If both are the same member.
    """
    a, b = member_bytes(own), member_bytes(peer)
    if a == b:
        raise ValueError(f"a member has no pairwise mask with itself: {own}")
    return 1 if a < b else -1
