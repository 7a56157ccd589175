"""CIDs: the bytes32 digest on chain <-> the CID in IPFS, and the CID kubo gives to bytes.

Everything fl-chain stores is added the way ``ipfs add`` does by default (UnixFS, 256 KiB chunks,
balanced DAG of at most 174 links, dag-pb leaves, sha2-256). The root of that DAG is a dag-pb block,
so every blob's CID is ``CIDv1(dag-pb, sha2-256(root block))``: the 32-byte digest alone
determines it, which is what the contract stores. CIDv0 (``Qm...``) strings name the same block and
are accepted on input.
"""

from __future__ import annotations

import base64

from fl_chain.errors import BlobFormatError

CHUNK_SIZE = 262_144
MAX_LINKS = 174
_DAG_PB = 0x70
_SHA2_256 = 0x12
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def cid_from_digest(digest: bytes) -> str:
    """The CIDv1 (dag-pb, sha2-256, base32) whose multihash digest is ``digest``."""
    if len(digest) != 32:
        raise BlobFormatError(f"a sha2-256 digest has 32 bytes, got {len(digest)}")
    raw = bytes([0x01, _DAG_PB, _SHA2_256, 0x20]) + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def digest_from_cid(cid: str) -> bytes:
    """The sha2-256 digest inside ``cid`` (CIDv1 dag-pb base32 or CIDv0 base58)."""
    if cid.startswith("Qm") and len(cid) == 46:
        raw = _b58decode(cid)
        if raw[:2] != bytes([_SHA2_256, 0x20]) or len(raw) != 34:
            raise BlobFormatError(f"{cid} is not a sha2-256 CIDv0")
        return raw[2:]
    if cid.startswith("b"):
        body = cid[1:].upper()
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
        except ValueError:
            raise BlobFormatError(f"{cid!r} is not a base32 CID") from None
        if raw[:4] != bytes([0x01, _DAG_PB, _SHA2_256, 0x20]) or len(raw) != 36:
            raise BlobFormatError(f"{cid} is not a CIDv1 dag-pb sha2-256 CID")
        return raw[4:]
    raise BlobFormatError(f"{cid!r} is not a CID fl-chain uses (CIDv1 dag-pb or CIDv0)")


def normalize_cid(cid: str) -> str:
    """``cid`` in the CIDv1 base32 form fl-chain uses everywhere."""
    return cid_from_digest(digest_from_cid(cid))


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _B58_ALPHABET.find(char)
        if index < 0:
            raise BlobFormatError(f"{text!r} is not base58")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    leading = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading + body


def b58encode(raw: bytes) -> str:
    """Base58btc text of ``raw`` (for CIDv0 strings)."""
    number = int.from_bytes(raw, "big")
    chars = []
    while number:
        number, rem = divmod(number, 58)
        chars.append(_B58_ALPHABET[rem])
    leading = len(raw) - len(raw.lstrip(b"\x00"))
    return "1" * leading + "".join(reversed(chars))


def cidv0_from_digest(digest: bytes) -> str:
    """The CIDv0 (``Qm...``) naming the same dag-pb block as :func:`cid_from_digest`."""
    return b58encode(bytes([_SHA2_256, 0x20]) + digest)
