"""A secure-aggregation round with the real primitives: setup, masked updates, dropouts, reveals, unmasking.

Every member is a real key pair and every blob goes through its byte format, as it would through IPFS.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fl_chain.errors import BlobFormatError, BlobMismatchError, InvalidShareError, NotEnoughSharesError
from fl_chain.privacy.context import RoundContext
from fl_chain.privacy.fixed_point import quantization_bound
from fl_chain.privacy.keys import KeyPair
from fl_chain.privacy.shamir import Share
from fl_chain.protocol.secagg import (
    RevealedShare,
    RoundReveal,
    RoundSetup,
    ShareKind,
    check_blob_matches,
    frac_bits_for,
    make_reveal,
    make_setup,
    masked_update,
    open_boxes,
    reveal_size_bound,
    setup_size_bound,
    unmask_partition,
    weighted_average,
)

CONTEXT = RoundContext(task_id=3, round=5)
N, THRESHOLD, LENGTH, CLIP, MAX_WEIGHT = 6, 4, 257, 1.0, 1000


def _address(i: int) -> str:
    return "0x" + f"{i + 1:02x}" * 20


class Federation:
    """Six members with long-term keys, changes and weights; runs the round's exchanges."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.members = [_address(i) for i in range(N)]
        self.keys = {m: KeyPair.generate() for m in self.members}
        self.publics = {m: k.public for m, k in self.keys.items()}
        self.changes = {m: rng.normal(0, 0.3, LENGTH).astype(np.float32) for m in self.members}
        self.weights = {m: int(rng.integers(1, MAX_WEIGHT)) for m in self.members}
        self.base = rng.normal(0, 1, LENGTH).astype(np.float32)
        self.frac_bits = frac_bits_for(N, CLIP, MAX_WEIGHT)
        self.setups: dict[str, RoundSetup] = {}
        self.secrets = {}
        for m in self.members:
            setup, secret = make_setup(CONTEXT, m, self.keys[m], self.publics, THRESHOLD)
            # through the blob format, as a peer receives it
            self.setups[m] = RoundSetup.from_bytes(setup.to_bytes(), max_participants=N)
            self.secrets[m] = secret

    def masked(self, contributors: list[str]) -> dict[str, np.ndarray]:
        masks = {m: s.mask_public for m, s in self.setups.items()}
        return {
            c: masked_update(
                CONTEXT,
                c,
                self.changes[c],
                self.weights[c],
                self.secrets[c],
                masks,
                clip=CLIP,
                frac_bits=self.frac_bits,
            )
            for c in contributors
        }

    def reveals(self, contributors: list[str], revealers: list[str]) -> list[RoundReveal]:
        out = []
        for r in revealers:
            bundles = open_boxes(CONTEXT, r, self.keys[r], self.setups, self.publics)
            reveal = make_reveal(CONTEXT, r, bundles, list(self.setups), contributors, self.secrets[r])
            out.append(RoundReveal.from_bytes(reveal.to_bytes(), max_participants=N))
        return out

    def plaintext_average(self, contributors: list[str]) -> np.ndarray:
        total = sum(np.clip(self.changes[c].astype(np.float64), -CLIP, CLIP) * self.weights[c] for c in contributors)
        return self.base.astype(np.float64) + total / sum(self.weights[c] for c in contributors)


def _aggregate(
    fed: Federation, contributors: list[str], reveals: list[RoundReveal], start: int, stop: int
) -> np.ndarray:
    masked = {c: v[start:stop] for c, v in fed.masked(contributors).items()}
    summed = unmask_partition(CONTEXT, masked, offset=start, setups=fed.setups, reveals=reveals, threshold=THRESHOLD)
    total = sum(fed.weights[c] for c in contributors)
    return weighted_average(fed.base[start:stop], summed, total, frac_bits=fed.frac_bits)


def test_round_without_dropouts_equals_the_weighted_average_within_the_bound_on_every_slice() -> None:
    fed = Federation()
    reveals = fed.reveals(fed.members, fed.members)
    whole = _aggregate(fed, fed.members, reveals, 0, LENGTH)
    pieces = np.concatenate(
        [_aggregate(fed, fed.members, reveals, a, b) for a, b in [(0, 100), (100, 101), (101, LENGTH)]]
    )
    assert whole.tobytes() == pieces.tobytes()  # partition boundaries do not change a byte
    total = sum(fed.weights.values())
    bound = quantization_bound(N, fed.frac_bits) / total + 1e-6  # plus float32 rounding
    assert np.max(np.abs(whole - fed.plaintext_average(fed.members))) <= bound


def test_dropouts_up_to_n_minus_t_recover_the_survivors_average() -> None:
    fed = Federation(1)
    survivors = fed.members[: N - 2]  # two dropped after setup, before their update
    reveals = fed.reveals(survivors, survivors)
    result = _aggregate(fed, survivors, reveals, 0, LENGTH)
    assert np.allclose(result, fed.plaintext_average(survivors), atol=1e-6)


def test_fewer_than_t_revealers_cannot_unmask() -> None:
    fed = Federation(2)
    reveals = fed.reveals(fed.members, fed.members[: THRESHOLD - 1])
    with pytest.raises(NotEnoughSharesError):
        _aggregate(fed, fed.members, reveals, 0, LENGTH)


def test_every_aggregator_gets_the_same_bytes_whatever_the_order_of_reveals() -> None:
    fed = Federation(3)
    reveals = fed.reveals(fed.members, fed.members)
    first = _aggregate(fed, fed.members, reveals, 10, 90)
    second = _aggregate(fed, fed.members, list(reversed(reveals)), 10, 90)
    assert first.tobytes() == second.tobytes()


def test_a_reveal_never_holds_both_shares_of_one_member() -> None:
    fed = Federation(4)
    survivors = fed.members[:5]
    (reveal,) = fed.reveals(survivors, [survivors[0]])
    kinds = {s.owner: s.kind for s in reveal.shares}
    assert kinds[fed.members[5]] is ShareKind.MASK_KEY
    assert all(kinds[s] is ShareKind.SELF_SEED for s in survivors[1:])
    assert len(kinds) == len(reveal.shares)


def test_attack_a_wrong_revealed_share_is_dropped_alike_by_every_aggregator() -> None:
    fed = Federation(5)
    reveals = fed.reveals(fed.members, fed.members)
    liar = reveals[0]
    forged = tuple(dataclasses.replace(s, share=Share(s.share.x, (s.share.y + 1))) for s in liar.shares)
    reveals[0] = dataclasses.replace(liar, shares=forged)
    honest = _aggregate(fed, fed.members, fed.reveals(fed.members, fed.members), 0, LENGTH)
    assert _aggregate(fed, fed.members, reveals, 0, LENGTH).tobytes() == honest.tobytes()


def test_attack_shares_revealed_for_another_holder_do_not_count() -> None:
    fed = Federation(6)
    reveals = fed.reveals(fed.members, fed.members[:THRESHOLD])
    # a member copies another revealer's shares as its own: they are committed to the other holder
    copied = dataclasses.replace(reveals[0], member=fed.members[THRESHOLD])
    with pytest.raises(NotEnoughSharesError):
        _aggregate(fed, fed.members, [*reveals[1:], copied], 0, LENGTH)


def test_attack_an_owner_who_dealt_inconsistent_shares_makes_the_slice_fail_alike() -> None:
    fed = Federation(7)
    cheat = fed.members[0]
    # its setup commits to shares of a different seed than the one it masks with
    setup, _ = make_setup(CONTEXT, cheat, fed.keys[cheat], fed.publics, THRESHOLD)
    fed.setups[cheat] = dataclasses.replace(setup, self_seed_commitment=fed.setups[cheat].self_seed_commitment)
    reveals = fed.reveals(fed.members, fed.members)
    with pytest.raises(InvalidShareError, match="did not commit"):
        _aggregate(fed, fed.members, reveals, 0, LENGTH)


def test_attack_a_setup_box_for_someone_else_does_not_open() -> None:
    fed = Federation(8)
    outsider = KeyPair.generate()
    assert open_boxes(CONTEXT, fed.members[1], outsider, fed.setups, fed.publics) == {}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:10],
        lambda b: b"XXXX" + b[4:],
        lambda b: b[:4] + bytes([9]) + b[5:],
        lambda b: b + b"\0",
        lambda b: b[:-1],
    ],
    ids=["truncated", "magic", "version", "trailing", "short"],
)
def test_attack_malformed_blobs_are_invalid_not_a_crash(mutate) -> None:  # type: ignore[no-untyped-def]
    fed = Federation(9)
    setup = fed.setups[fed.members[0]].to_bytes()
    (reveal,) = fed.reveals(fed.members, [fed.members[0]])
    with pytest.raises(BlobFormatError):
        RoundSetup.from_bytes(mutate(setup), max_participants=N)
    with pytest.raises(BlobFormatError):
        RoundReveal.from_bytes(mutate(reveal.to_bytes()), max_participants=N)


def test_attack_blobs_past_their_bound_or_naming_an_owner_twice_are_refused() -> None:
    fed = Federation(10)
    setup = fed.setups[fed.members[0]]
    assert len(setup.to_bytes()) <= setup_size_bound(N)
    with pytest.raises(BlobFormatError, match="at most"):
        RoundSetup.from_bytes(setup.to_bytes(), max_participants=N - 2)
    (reveal,) = fed.reveals(fed.members, [fed.members[0]])
    assert len(reveal.to_bytes()) <= reveal_size_bound(N)
    twice = dataclasses.replace(reveal, shares=(reveal.shares[0], reveal.shares[0]))
    with pytest.raises(BlobFormatError, match="twice"):
        RoundReveal.from_bytes(twice.to_bytes(), max_participants=N)
    both = dataclasses.replace(
        reveal,
        shares=(reveal.shares[0], RevealedShare(reveal.shares[0].owner, ShareKind.MASK_KEY, reveal.shares[0].share)),
    )
    with pytest.raises(BlobFormatError, match="never both"):
        RoundReveal.from_bytes(both.to_bytes(), max_participants=N)


def test_attack_a_blob_of_another_round_or_member_is_a_mismatch() -> None:
    fed = Federation(11)
    setup = fed.setups[fed.members[0]]
    check_blob_matches(setup, CONTEXT, fed.members[0].upper().replace("0X", "0x"))
    with pytest.raises(BlobMismatchError):
        check_blob_matches(setup, RoundContext(3, 6), fed.members[0])
    with pytest.raises(BlobMismatchError):
        check_blob_matches(setup, CONTEXT, fed.members[1])


def test_the_scale_leaves_no_room_to_wrap() -> None:
    bits = frac_bits_for(1000, 1.0, 1_000_000)
    assert 1000 * 1_000_000 * 2.0**bits <= 2**53 < 1000 * 1_000_000 * 2.0 ** (bits + 1)
