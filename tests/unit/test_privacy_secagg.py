"""A whole secure-aggregation round in process, with the real primitives: masking, share boxes, dropouts, unmasking.

Members share their self-mask seed and mask private key (Feldman, t of n, one sealed box per recipient), mask
their fixed-point update, and some drop after masking. Survivors open their boxes and reveal
self-seed shares of survivors and key shares of the dropped; an aggregator rebuilds the seeds and
unmasks the ring sum of its slice.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest

from fl_chain.errors import NotEnoughSharesError
from fl_chain.privacy.context import RoundContext
from fl_chain.privacy.fixed_point import Ring, check_no_wrap, decode, encode, quantization_bound, ring_sum
from fl_chain.privacy.keys import KeyPair, MaskKeyPair, pairwise_mask_seed, recover_key_pair, share_encryption_key
from fl_chain.privacy.masks import mask_update, unmask_sum
from fl_chain.privacy.share_box import ShareBundle, open_shares, seal_shares
from fl_chain.privacy.vss import ORDER, Commitments, Share, combine, scalar_bytes, split, verify
from fl_chain.protocol.partitioning import partition_bounds

CONTEXT = RoundContext(task_id=3, round=11)
CLIP, FRAC_BITS = 1.0, 32
#: Critical value of chi-square with 255 degrees of freedom at p = 1e-9 (scipy.stats.chi2.isf(1e-9, 255)).
CHI2_255_P1E9 = 414.55


def _digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _scalar(label: str) -> bytes:
    """A fixed scalar in 1..n-1 (32 bytes), from a label."""
    return scalar_bytes(int.from_bytes(_digest(label), "big") % (ORDER - 1) + 1)


@dataclass(frozen=True)
class Member:
    address: str
    position: int  # share x, 1-based
    keys: KeyPair  # long-term: seals the share boxes
    mask: MaskKeyPair  # per round: the pairwise mask seeds
    self_seed: bytes  # a scalar in 1..n-1, 32 bytes


def _members(n: int) -> list[Member]:
    """Members with fixed keys and seeds, so masked bytes are the same on every run."""
    addresses = [("0x" + _digest(f"address {i}")[:20].hex()) for i in range(n)]
    return [
        Member(
            a,
            i + 1,
            KeyPair.from_private(_digest(f"key {i}")),
            MaskKeyPair.from_private(_scalar(f"mask {i}")),
            _scalar(f"self seed {i}"),
        )
        for i, a in enumerate(addresses)
    ]


Kept = dict[str, tuple[ShareBundle, Commitments, Commitments]]


def _share_boxes(members: list[Member], threshold: int) -> tuple[dict[tuple[str, str], bytes], Kept]:
    """Every member's sealed box to every other, keyed ``(sender, recipient)``, and the share each keeps
    with its two sets of commitments (self seed, mask key)."""
    boxes: dict[tuple[str, str], bytes] = {}
    kept: Kept = {}
    for sender in members:
        seed_shares, seed_commitments = split(
            int.from_bytes(sender.self_seed, "big"), threshold=threshold, count=len(members)
        )
        key_shares, key_commitments = split(sender.mask.scalar, threshold=threshold, count=len(members))
        assert key_commitments.secret_point == sender.mask.public
        for recipient in members:
            bundle = ShareBundle(seed_shares[recipient.position - 1], key_shares[recipient.position - 1])
            if recipient is sender:
                kept[sender.address] = (bundle, seed_commitments, key_commitments)
                continue
            key = share_encryption_key(sender.keys, recipient.keys.public, CONTEXT)
            boxes[sender.address, recipient.address] = seal_shares(
                bundle, key=key, context=CONTEXT, sender=sender.address, recipient=recipient.address
            )
    return boxes, kept


def _mask(member: Member, members: list[Member], encoded: Ring, offset: int = 0) -> Ring:
    pairwise = {
        peer.address: pairwise_mask_seed(member.mask, peer.mask.public, CONTEXT)
        for peer in members
        if peer is not member
    }
    return mask_update(
        encoded,
        offset=offset,
        member=member.address,
        self_seed=member.self_seed,
        pairwise_seeds=pairwise,
        context=CONTEXT,
    )


def _updates(n: int, dimension: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(rng.normal(0, 0.3, dimension), -CLIP, CLIP).astype(np.float32) for _ in range(n)]


def _reveal(
    members: list[Member],
    survivors: list[Member],
    boxes: dict[tuple[str, str], bytes],
    kept: Kept,
    threshold: int,
) -> tuple[dict[str, bytes], dict[tuple[str, str], bytes]]:
    """Survivors reveal self-seed shares of survivors and key shares of the dropped; rebuild the seeds."""
    alive = {m.address for m in survivors}
    seed_shares: dict[str, list[Share]] = {m.address: [] for m in members if m.address in alive}
    key_shares: dict[str, list[Share]] = {m.address: [] for m in members if m.address not in alive}
    for holder in survivors:
        for sender in members:
            if sender is holder:
                bundle = kept[holder.address][0]
            else:
                key = share_encryption_key(holder.keys, sender.keys.public, CONTEXT)
                box = boxes[sender.address, holder.address]
                bundle = open_shares(box, key=key, context=CONTEXT, sender=sender.address, recipient=holder.address)
            _, seed_commitments, key_commitments = kept[sender.address]
            assert verify(bundle.self_seed, seed_commitments) and verify(bundle.private_key, key_commitments)
            if sender.address in alive:  # never both shares of one member
                seed_shares[sender.address].append(bundle.self_seed)
            else:
                key_shares[sender.address].append(bundle.private_key)
    assert all(kept[m.address][1].threshold == threshold for m in members)
    self_seeds = {
        address: scalar_bytes(combine(shares, commitments=kept[address][1])) for address, shares in seed_shares.items()
    }
    dropped_pairwise: dict[tuple[str, str], bytes] = {}
    for dropped in (m for m in members if m.address not in alive):
        private = combine(key_shares[dropped.address], commitments=kept[dropped.address][2])
        pair = recover_key_pair(private, dropped.mask.public)
        for survivor in survivors:
            dropped_pairwise[survivor.address, dropped.address] = pairwise_mask_seed(
                pair, survivor.mask.public, CONTEXT
            )
    return self_seeds, dropped_pairwise


def _secure_sum(n: int, threshold: int, dropped: set[int], dimension: int = 101) -> tuple[Ring, list[Ring]]:
    """The unmasked ring sum of the survivors, and their plain encoded updates."""
    members = _members(n)
    boxes, kept = _share_boxes(members, threshold)
    encoded = [encode(u, clip=CLIP, frac_bits=FRAC_BITS) for u in _updates(n, dimension)]
    masked = [_mask(m, members, e) for m, e in zip(members, encoded, strict=True)]
    survivors = [m for i, m in enumerate(members) if i not in dropped]
    self_seeds, dropped_pairwise = _reveal(members, survivors, boxes, kept, threshold)
    masked_sum = ring_sum(masked[i] for i in range(n) if i not in dropped)
    total = unmask_sum(
        masked_sum, offset=0, self_seeds=self_seeds, dropped_pairwise_seeds=dropped_pairwise, context=CONTEXT
    )
    return total, [encoded[i] for i in range(n) if i not in dropped]


def test_unmasked_sum_equals_the_fixed_point_sum_exactly_and_the_float_sum_within_the_bound() -> None:
    # Prepare
    n = 5
    check_no_wrap(n, CLIP, FRAC_BITS)
    updates = _updates(n, 101)

    # Execute
    total, encoded = _secure_sum(n, threshold=3, dropped=set())

    # Assert
    assert total.tobytes() == ring_sum(encoded).tobytes()
    decoded = decode(total, frac_bits=FRAC_BITS)
    bound = Fraction(quantization_bound(n, FRAC_BITS))
    for i in range(101):  # exact rational sums: no float slack in the comparison
        assert abs(Fraction(float(decoded[i])) - sum(Fraction(float(u[i])) for u in updates)) <= bound


@pytest.mark.parametrize("bounds", ["odd", "partition_bounds"])
def test_every_partition_slice_agrees_with_the_full_vector(bounds: str) -> None:
    # Prepare: a contributor masks each partition on its own; an aggregator unmasks only its slice
    n, dimension = 4, 101
    members = _members(n)
    encoded = [encode(u, clip=CLIP, frac_bits=FRAC_BITS) for u in _updates(n, dimension)]
    if bounds == "odd":
        cuts = [0, 1, 2, 5, 36, 37, 64, 99, 101]
        slices = list(itertools.pairwise(cuts))
    else:
        slices = [(b.offset, b.offset + b.length) for b in partition_bounds(dimension, 7)]
    full_masked = [_mask(m, members, e) for m, e in zip(members, encoded, strict=True)]
    boxes, kept = _share_boxes(members, 2)
    self_seeds, dropped_pairwise = _reveal(members, members[:3], boxes, kept, 2)
    survivors_sum = ring_sum(full_masked[:3])
    full_total = unmask_sum(
        survivors_sum, offset=0, self_seeds=self_seeds, dropped_pairwise_seeds=dropped_pairwise, context=CONTEXT
    )

    for start, stop in slices:
        # Execute
        parts = [_mask(m, members, e[start:stop], offset=start) for m, e in zip(members, encoded, strict=True)]
        total = unmask_sum(
            ring_sum(parts[:3]),
            offset=start,
            self_seeds=self_seeds,
            dropped_pairwise_seeds=dropped_pairwise,
            context=CONTEXT,
        )

        # Assert
        for part, full in zip(parts, full_masked, strict=True):
            assert part.tobytes() == full[start:stop].tobytes()
        assert total.tobytes() == full_total[start:stop].tobytes() == ring_sum(encoded[:3])[start:stop].tobytes()


@pytest.mark.parametrize("dropped", [set(), {0}, {5}, {2, 3}, {0, 5, 3}])
def test_dropout_of_up_to_n_minus_t_recovers_the_exact_sum(dropped: set[int]) -> None:
    # Execute: n = 6, t = 3, so up to 3 members may drop after masking
    total, encoded = _secure_sum(6, threshold=3, dropped=dropped)

    # Assert
    assert total.tobytes() == ring_sum(encoded).tobytes()


def test_more_than_n_minus_t_dropouts_fail_with_a_clear_error() -> None:
    with pytest.raises(NotEnoughSharesError, match="2 shares, the threshold is 3"):
        _secure_sum(6, threshold=3, dropped={0, 1, 2, 3})


def test_every_aggregator_gets_the_same_bytes_in_any_summation_order() -> None:
    # Prepare
    n = 5
    members = _members(n)
    encoded = [encode(u, clip=CLIP, frac_bits=FRAC_BITS) for u in _updates(n, 64)]
    masked = [_mask(m, members, e) for m, e in zip(members, encoded, strict=True)]
    boxes, kept = _share_boxes(members, 3)
    digests = set()

    for attempt in range(4):
        # Execute: each aggregator sums and reveals in its own order
        order = list(range(1, n))
        random.Random(attempt).shuffle(order)
        revealers = [members[i] for i in order]
        self_seeds, dropped_pairwise = _reveal(members, revealers, boxes, kept, 3)
        total = unmask_sum(
            ring_sum(masked[i] for i in order),
            offset=0,
            self_seeds=dict(reversed(list(self_seeds.items()))) if attempt % 2 else self_seeds,
            dropped_pairwise_seeds=dropped_pairwise,
            context=CONTEXT,
        )
        digests.add(hashlib.sha256(total.tobytes()).hexdigest())

    # Assert: member 0 dropped; four aggregators, one digest, the plain fixed-point sum's
    assert digests == {hashlib.sha256(ring_sum(encoded[1:]).tobytes()).hexdigest()}


def _chi_square_of_bytes(data: bytes) -> float:
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256).astype(np.float64)
    expected = len(data) / 256
    return float(np.sum((counts - expected) ** 2 / expected))


def test_attack_an_aggregator_sees_uniform_bytes_in_a_masked_slice() -> None:
    """Chi-square on the byte counts of one contributor's masked slice (fixed keys and seeds: deterministic).

    The threshold is the p = 1e-9 critical value, so a uniform source fails it once in 10^9 seeds;
    the same test on the unmasked encoding fails by orders of magnitude (the test has power).
    """
    # Prepare: 2^16 words = 512 KiB, 2048 expected per byte value
    members = _members(3)
    update = _updates(1, 2**16, seed=1)[0]
    encoded = encode(update, clip=CLIP, frac_bits=FRAC_BITS)

    # Execute
    masked = _mask(members[0], members, encoded)

    # Assert
    assert _chi_square_of_bytes(encoded.tobytes()) > 100 * CHI2_255_P1E9
    assert _chi_square_of_bytes(masked.tobytes()) < CHI2_255_P1E9


def test_attack_a_masked_slice_does_not_correlate_with_the_update() -> None:
    # Prepare: N = 2^16, so |r| of independent data exceeds 0.025 (6.4 standard errors) about once in 10^10
    members = _members(3)
    update = _updates(1, 2**16, seed=2)[0].astype(np.float64)
    encoded = encode(update, clip=CLIP, frac_bits=FRAC_BITS)

    # Execute
    masked = _mask(members[1], members, encoded)

    # Assert
    as_signed = masked.view(np.int64).astype(np.float64)
    assert np.corrcoef(update, encoded.view(np.int64).astype(np.float64))[0, 1] > 0.999
    assert abs(np.corrcoef(update, as_signed)[0, 1]) < 0.025
    assert abs(np.corrcoef(update, masked.astype(np.float64))[0, 1]) < 0.025
    low_bytes = np.frombuffer(masked.tobytes(), dtype=np.uint8)[::8].astype(np.float64)
    assert abs(np.corrcoef(update, low_bytes)[0, 1]) < 0.025
