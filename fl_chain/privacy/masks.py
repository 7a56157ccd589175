"""Masks of secure aggregation: a seekable PRG, and masking and unmasking one slice of a vector.

The PRG is AES-256-CTR keyed by a 32-byte seed, counter block starting at 0 (a 128-bit big-endian
integer): mask word ``i`` is the little-endian ``uint64`` of keystream bytes ``[8i, 8i + 8)``. Seeking
to word ``offset`` starts the counter at block ``offset * 8 // 16`` and drops the first
``offset * 8 % 16`` bytes, so a partition's aggregators expand only their slice.

A contributor ``u`` of the round sends ``y_u = x_u + self_u + sum over v != u of sign(u, v) * pair_uv``
(in Z_(2^64)), where ``x_u`` is its encoded update, ``self_u`` expands the AES key derived from its
self-mask seed and the round (:func:`self_mask_key`), ``pair_uv`` expands the pairwise seed ``u`` and
``v`` agree on (:func:`fl_chain.privacy.keys.pairwise_mask_seed`, already bound to the round), and
``sign(u, v)`` is ``+1`` for the lower address, ``-1`` for the higher. Over the survivors ``S``, the
pairwise masks between survivors cancel; :func:`unmask_sum` removes the survivors' self masks and the
pairwise masks between survivors and dropped members.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fl_chain.privacy.context import PROTOCOL_LABEL, SELF_MASK, RoundContext, pair_sign

#: Bytes of a mask seed (an AES-256 key).
SEED_BYTES = 32
#: Bytes of one mask word.
WORD_BYTES = 8
_AES_BLOCK = 16
_MAX_BLOCKS = 1 << 128

Ring = npt.NDArray[np.uint64]


def mask_words(seed: bytes, offset: int, count: int) -> Ring:
    """Words ``[offset, offset + count)`` of the expansion of ``seed``, without generating the prefix.

    Raises
    ------
    ValueError
        If the seed is not 32 bytes, or offset or count is negative or past the counter's range.
    """
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a mask seed is {SEED_BYTES} bytes, got {len(seed)}")
    if offset < 0 or count < 0:
        raise ValueError(f"offset and count must be >= 0, got {offset} and {count}")
    block, skip = divmod(offset * WORD_BYTES, _AES_BLOCK)
    if block + (skip + count * WORD_BYTES) // _AES_BLOCK + 1 > _MAX_BLOCKS:
        raise ValueError("mask words past the end of the AES-CTR counter")
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(block.to_bytes(_AES_BLOCK, "big"))).encryptor()
    size = skip + count * WORD_BYTES
    # The keystream (zeros encrypted), written in place: numpy buffers are 2-4x faster than bytes here
    # (calloc'd input, no copy out). update_into wants block - 1 spare bytes; numpy's stubs for 3.11
    # do not declare the buffer protocol, hence the ignores.
    stream = np.empty(size + _AES_BLOCK - 1, dtype=np.uint8)
    encryptor.update_into(np.zeros(size, dtype=np.uint8), stream)  # type: ignore[arg-type]
    return stream[skip:size].view("<u8").astype(np.uint64, copy=False)


def self_mask_key(self_seed: bytes, context: RoundContext) -> bytes:
    """The AES key of a member's self mask for one round: HKDF-SHA256 of its seed, bound to the round."""
    if len(self_seed) != SEED_BYTES:
        raise ValueError(f"a self-mask seed is {SEED_BYTES} bytes, got {len(self_seed)}")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=SEED_BYTES, salt=PROTOCOL_LABEL, info=context.info(SELF_MASK))
    return hkdf.derive(self_seed)


def _check_slice(values: Ring, offset: int) -> None:
    if values.dtype != np.uint64 or values.ndim != 1:
        raise ValueError(f"expected a 1-D uint64 slice, got {values.ndim}-D {values.dtype}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")


def _add_signed(total: Ring, seed: bytes, offset: int, sign: int) -> None:
    words = mask_words(seed, offset, total.shape[0])
    if sign > 0:
        np.add(total, words, out=total)
    else:
        np.subtract(total, words, out=total)


def mask_update(
    encoded: Ring,
    *,
    offset: int,
    member: str,
    self_seed: bytes,
    pairwise_seeds: Mapping[str, bytes],
    context: RoundContext,
) -> Ring:
    """A contributor's masked slice: ``encoded`` (words ``[offset, offset + len)``) plus its masks.

    Parameters
    ----------
    encoded:
        The contributor's fixed-point update, or the slice of it starting at word ``offset``.
    offset:
        Index of ``encoded[0]`` in the whole vector.
    member:
        The contributor's address.
    self_seed:
        Its self-mask seed for this round (the one it secret-shared).
    pairwise_seeds:
        Pairwise seed per other member of the round's key set (every member it shared keys with).
    context:
        The task's round.
    """
    _check_slice(encoded, offset)
    masked = encoded.copy()
    _add_signed(masked, self_mask_key(self_seed, context), offset, +1)
    for peer, seed in pairwise_seeds.items():
        _add_signed(masked, seed, offset, pair_sign(member, peer))
    return masked


def unmask_sum(
    masked_sum: Ring,
    *,
    offset: int,
    self_seeds: Mapping[str, bytes],
    dropped_pairwise_seeds: Mapping[tuple[str, str], bytes],
    context: RoundContext,
) -> Ring:
    """The ring sum of the survivors' encoded slices, from the ring sum of their masked slices.

    Parameters
    ----------
    masked_sum:
        :func:`~fl_chain.privacy.fixed_point.ring_sum` of every survivor's masked slice at ``offset``.
    offset:
        Index of ``masked_sum[0]`` in the whole vector.
    self_seeds:
        Reconstructed self-mask seed per survivor (every survivor, none of the dropped).
    dropped_pairwise_seeds:
        Pairwise seed per ``(survivor, dropped member)``, for every survivor and every member of the
        key set who did not contribute (reconstructed from the dropped member's key shares).
    context:
        The task's round.
    """
    _check_slice(masked_sum, offset)
    total = masked_sum.copy()
    for seed in self_seeds.values():
        _add_signed(total, self_mask_key(seed, context), offset, -1)
    for (survivor, dropped), seed in dropped_pairwise_seeds.items():
        if dropped in self_seeds:
            raise ValueError(f"{dropped} cannot be both a survivor and dropped")
        _add_signed(total, seed, offset, -pair_sign(survivor, dropped))
    return total
