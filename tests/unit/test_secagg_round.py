"""A secure-aggregation round with the real primitives: setup, masked updates, dropouts, reveals, unmasking.

Every member is a real key pair and every blob goes through its byte format, as it would through IPFS.
Dealers share by Feldman VSS: hostile dealers (shares off their commitments) and hostile revealers
(tampered shares) are caught by verification, and any t honest shares still unmask.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import pytest

from fl_chain.errors import BlobFormatError, BlobMismatchError, NotEnoughSharesError
from fl_chain.privacy.context import RoundContext
from fl_chain.privacy.fixed_point import quantization_bound
from fl_chain.privacy.keys import KeyPair, share_encryption_key
from fl_chain.privacy.share_box import BOX_BYTES, ShareBundle, seal_shares
from fl_chain.privacy.vss import ORDER, POINT_BYTES, Commitments, Share, split
from fl_chain.protocol.secagg import (
    RevealedShare,
    RoundReveal,
    RoundSetup,
    SetupEntry,
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
            self.setups[m] = RoundSetup.from_bytes(setup.to_bytes(), max_participants=N, threshold=THRESHOLD)
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

    def replace_setup(self, setup: RoundSetup) -> None:
        """A member publishes ``setup`` instead (through the blob format)."""
        self.setups[setup.member] = RoundSetup.from_bytes(setup.to_bytes(), max_participants=N, threshold=THRESHOLD)

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
    forged = tuple(dataclasses.replace(s, share=Share(s.share.x, (s.share.y + 1) % ORDER)) for s in liar.shares)
    reveals[0] = dataclasses.replace(liar, shares=forged)
    honest = _aggregate(fed, fed.members, fed.reveals(fed.members, fed.members), 0, LENGTH)
    assert _aggregate(fed, fed.members, reveals, 0, LENGTH).tobytes() == honest.tobytes()


def test_attack_shares_revealed_for_another_holder_do_not_count() -> None:
    fed = Federation(6)
    reveals = fed.reveals(fed.members, fed.members[:THRESHOLD])
    # a member copies another revealer's shares as its own: they verify only at the other holder's x
    copied = dataclasses.replace(reveals[0], member=fed.members[THRESHOLD])
    with pytest.raises(NotEnoughSharesError):
        _aggregate(fed, fed.members, [*reveals[1:], copied], 0, LENGTH)


def _resealed(
    fed: Federation, setup: RoundSetup, recipients: list[str], bundle_at: Callable[[int], ShareBundle]
) -> RoundSetup:
    """``setup`` with the boxes to ``recipients`` holding ``bundle_at(x)`` instead (a hostile dealer)."""
    dealer = setup.member
    entries = []
    for entry in setup.entries:
        if entry.recipient in recipients:
            key = share_encryption_key(fed.keys[dealer], fed.publics[entry.recipient], CONTEXT)
            x = setup.position_of(entry.recipient)
            assert x is not None
            box = seal_shares(bundle_at(x), key=key, context=CONTEXT, sender=dealer, recipient=entry.recipient)
            entry = SetupEntry(entry.recipient, box)
        entries.append(entry)
    return dataclasses.replace(setup, entries=tuple(entries))


def test_attack_a_dealer_with_shares_from_inconsistent_polynomials_is_caught_by_recipients_and_aggregators() -> None:
    # Prepare: the cheat deals its real secrets, but two recipients get shares of the same secrets from
    # other polynomials than the committed ones (with hash commitments, mixing them failed the round)
    fed = Federation(7)
    cheat, fooled = fed.members[0], [fed.members[1], fed.members[5]]
    secrets = fed.secrets[cheat]
    seed_b, _ = split(int.from_bytes(secrets.self_seed, "big"), threshold=THRESHOLD, count=N)
    key_b, _ = split(secrets.mask_key.scalar, threshold=THRESHOLD, count=N)
    fed.replace_setup(_resealed(fed, fed.setups[cheat], fooled, lambda x: ShareBundle(seed_b[x - 1], key_b[x - 1])))

    # Execute: every recipient checks its box at setup
    opened = {m: open_boxes(CONTEXT, m, fed.keys[m], fed.setups, fed.publics) for m in fed.members[1:]}

    # Assert: the fooled recipients leave the cheat out (they report it); the others keep it
    assert {m for m, bundles in opened.items() if cheat not in bundles} == set(fooled)
    assert all(set(bundles) == set(fed.members) - {m} for m, bundles in opened.items() if m not in fooled)

    # Execute: the round goes on (the cheat contributes); a fooled member reveals its bad share anyway
    reveals = fed.reveals(fed.members, fed.members)
    colluder = next(r for r in reveals if r.member == fooled[0])
    bad = RevealedShare(cheat, ShareKind.SELF_SEED, seed_b[1])
    reveals[reveals.index(colluder)] = dataclasses.replace(colluder, shares=(bad, *colluder.shares))
    result = _aggregate(fed, fed.members, reveals, 0, LENGTH)

    # Assert: the bad share is dropped; the t verified shares (cheat, 3, 4, 5) rebuild the committed seed
    total = sum(fed.weights.values())
    bound = quantization_bound(N, fed.frac_bits) / total + 1e-6
    assert np.max(np.abs(result - fed.plaintext_average(fed.members))) <= bound
    honest = [r for r in reveals if r.member != fooled[0]]
    assert _aggregate(fed, fed.members, honest, 0, LENGTH).tobytes() == result.tobytes()


def test_attack_a_dealer_with_too_few_consistent_shares_leaves_aggregators_short_not_wrong() -> None:
    # Prepare: all but t - 1 recipients get shares off the commitments; the cheat then drops out
    fed = Federation(12)
    cheat = fed.members[0]
    secrets = fed.secrets[cheat]
    key_b, _ = split(secrets.mask_key.scalar, threshold=THRESHOLD, count=N)
    seed_b, _ = split(int.from_bytes(secrets.self_seed, "big"), threshold=THRESHOLD, count=N)
    fooled = fed.members[THRESHOLD - 1 :]
    fed.replace_setup(_resealed(fed, fed.setups[cheat], fooled, lambda x: ShareBundle(seed_b[x - 1], key_b[x - 1])))
    survivors = fed.members[1:]
    reveals = fed.reveals(survivors, survivors)
    # the fooled reveal their unverified key shares anyway
    reveals = [
        dataclasses.replace(r, shares=(RevealedShare(cheat, ShareKind.MASK_KEY, key_b[fed.members.index(r.member)]),))
        if r.member in fooled
        else r
        for r in reveals
    ]

    # Execute / Assert: they are dropped; members 1 and 2 hold verified shares (the cheat dropped), short
    # of t: the key cannot be rebuilt, and is never rebuilt wrong
    with pytest.raises(NotEnoughSharesError, match="2 shares, the threshold is 4"):
        _aggregate(fed, survivors, reveals, 0, LENGTH)


@pytest.mark.parametrize("how", ["other-key", "other-coefficients"])
def test_attack_a_mask_key_shared_inconsistently_with_its_public_key_is_detected_by_every_recipient(
    how: str,
) -> None:
    # Prepare: the cheat publishes its real mask public key as C_0, but the key shares in the boxes do
    # not lie on the committed polynomial: they share another key, or the other coefficients differ
    fed = Federation(13)
    cheat = fed.members[2]
    setup, secrets = fed.setups[cheat], fed.secrets[cheat]
    if how == "other-key":
        other, _ = split(secrets.mask_key.scalar % (ORDER - 1) + 1, threshold=THRESHOLD, count=N)
    else:
        other, commitments = split(secrets.mask_key.scalar, threshold=THRESHOLD, count=N)
        assert commitments.secret_point == setup.mask_public != commitments.points[1]
    # a fresh, consistent sharing of its self seed, so that only the key shares are off
    seed_shares, seed_commitments = split(int.from_bytes(secrets.self_seed, "big"), threshold=THRESHOLD, count=N)
    recipients = [m for m in fed.members if m != cheat]
    cheated = dataclasses.replace(setup, seed_commitments=seed_commitments)
    fed.replace_setup(_resealed(fed, cheated, recipients, lambda x: ShareBundle(seed_shares[x - 1], other[x - 1])))
    assert fed.setups[cheat].mask_public == secrets.mask_key.public

    # Execute / Assert: every recipient's key share fails verification; nobody keeps the cheat
    for m in recipients:
        assert cheat not in open_boxes(CONTEXT, m, fed.keys[m], fed.setups, fed.publics)
    assert not any(fed.setups[cheat].verifies(m, ShareKind.MASK_KEY, other[i]) for i, m in enumerate(fed.members))


@pytest.mark.parametrize("tampered", [1, 2])
def test_attack_revealers_with_tampered_shares_are_dropped_and_any_t_honest_shares_unmask(tampered: int) -> None:
    # Prepare: one member dropped after setup, so both self-seed and mask-key shares are revealed
    fed = Federation(14)
    survivors = fed.members[:5]
    reveals = fed.reveals(survivors, survivors)
    honest = _aggregate(fed, survivors, reveals, 0, LENGTH)
    for i in range(tampered):  # the lowest addresses: their shares come first in the canonical order
        forged = tuple(
            dataclasses.replace(s, share=Share(s.share.x, (s.share.y + 7) % ORDER)) for s in reveals[i].shares
        )
        reveals[i] = dataclasses.replace(reveals[i], shares=forged)

    # Execute
    if len(survivors) - tampered >= THRESHOLD:
        result = _aggregate(fed, survivors, reveals, 0, LENGTH)

        # Assert: the same bytes as with every share honest
        assert result.tobytes() == honest.tobytes()
    else:
        with pytest.raises(NotEnoughSharesError):
            _aggregate(fed, survivors, reveals, 0, LENGTH)


def test_the_mask_public_key_is_the_commitment_to_the_mask_key_sharing() -> None:
    fed = Federation(15)
    for m in fed.members:
        setup, secrets = fed.setups[m], fed.secrets[m]
        assert setup.mask_public == setup.key_commitments.points[0] == secrets.mask_key.public
        assert setup.threshold == THRESHOLD
        assert [setup.position_of(e.recipient) for e in setup.entries] == list(range(1, N + 1))
        assert setup.entry_for(m) is not None and setup.entry_for(m).box == bytes(BOX_BYTES)  # type: ignore[union-attr]


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
        RoundSetup.from_bytes(mutate(setup), max_participants=N, threshold=THRESHOLD)
    with pytest.raises(BlobFormatError):
        RoundReveal.from_bytes(mutate(reveal.to_bytes()), max_participants=N)


def test_attack_blobs_past_their_bound_or_naming_an_owner_twice_are_refused() -> None:
    fed = Federation(10)
    setup = fed.setups[fed.members[0]]
    assert len(setup.to_bytes()) <= setup_size_bound(N)
    with pytest.raises(BlobFormatError, match="at most"):
        RoundSetup.from_bytes(setup.to_bytes(), max_participants=N - 2, threshold=THRESHOLD)
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


@pytest.mark.parametrize("copied", ["key", "key and proof"])
def test_attack_a_setup_presenting_another_members_mask_key_is_a_mismatch(copied: str) -> None:
    """A member that copies another's mask public key (to make that member's setup a repeat) cannot prove
    it holds the key: its setup is unusable alike on every node, the victim's is not."""
    fed = Federation(12)
    thief, victim = fed.members[0], fed.members[1]
    stolen = fed.setups[victim]
    forged = dataclasses.replace(
        fed.setups[thief],
        key_commitments=stolen.key_commitments,
        possession=stolen.possession if copied == "key and proof" else fed.setups[thief].possession,
    )
    parsed = RoundSetup.from_bytes(forged.to_bytes(), max_participants=len(fed.members), threshold=forged.threshold)
    assert parsed.mask_public == stolen.mask_public
    with pytest.raises(BlobMismatchError, match="does not prove it holds its mask key"):
        check_blob_matches(parsed, CONTEXT, thief)
    check_blob_matches(stolen, CONTEXT, victim)


def test_the_scale_leaves_no_room_to_wrap() -> None:
    bits = frac_bits_for(1000, 1.0, 1_000_000)
    assert 1000 * 1_000_000 * 2.0**bits <= 2**53 < 1000 * 1_000_000 * 2.0 ** (bits + 1)


def _setup_variants(setup: RoundSetup) -> dict[str, bytes]:
    data = setup.to_bytes()
    header = 43  # magic, version, task, round, member, entry count
    point = header + 2  # the first seed commitment
    off_curve = b"\x02" + (5).to_bytes(32, "big")
    reordered = dataclasses.replace(setup, entries=tuple(reversed(setup.entries)))
    few = dataclasses.replace(setup, entries=setup.entries[: THRESHOLD - 1])
    return {
        "another threshold": data[:header] + (THRESHOLD - 1).to_bytes(2, "big") + data[header + 2 :],
        "higher degree": dataclasses.replace(
            setup,
            seed_commitments=Commitments(tuple(_point_list(THRESHOLD + 1))),
            key_commitments=_commitments(THRESHOLD + 1),
        ).to_bytes(),
        "off-curve point": data[:point] + off_curve + data[point + POINT_BYTES :],
        "infinity point": data[:point] + bytes(POINT_BYTES) + data[point + POINT_BYTES :],
        "recipients out of order": reordered.to_bytes(),
        "fewer recipients than t": few.to_bytes(),
    }


def _point_list(count: int) -> list[bytes]:
    return list(_commitments(count).points)


def _commitments(count: int) -> Commitments:
    return split(12345, threshold=count, count=count)[1]


@pytest.mark.parametrize(
    "variant",
    [
        "another threshold",
        "higher degree",
        "off-curve point",
        "infinity point",
        "recipients out of order",
        "fewer recipients than t",
    ],
)
def test_attack_a_setup_that_cannot_bind_its_secrets_to_t_shares_is_invalid_not_a_crash(variant: str) -> None:
    fed = Federation(16)
    data = _setup_variants(fed.setups[fed.members[0]])[variant]
    with pytest.raises(BlobFormatError):
        RoundSetup.from_bytes(data, max_participants=N, threshold=THRESHOLD)


def test_performance_setup_and_a_rounds_verification_at_16_members_threshold_9(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """N = 16, t = 9: one member's setup, every recipient's box checks, and an aggregator's share
    verification and reconstruction for one slice (all 16 reveal, 2 dropped). Printed; loose bound."""
    # Prepare
    n, t = 16, 9
    members = [_address(i) for i in range(n)]
    keys = {m: KeyPair.generate() for m in members}
    publics = {m: k.public for m, k in keys.items()}

    # Execute
    start = time.perf_counter()
    made = {m: make_setup(CONTEXT, m, keys[m], publics, t) for m in members}
    setup_s = (time.perf_counter() - start) / n
    setups = {m: RoundSetup.from_bytes(s.to_bytes(), max_participants=n, threshold=t) for m, (s, _) in made.items()}
    start = time.perf_counter()
    opened = {m: open_boxes(CONTEXT, m, keys[m], setups, publics) for m in members}
    open_s = (time.perf_counter() - start) / n
    survivors = members[2:]
    reveals = [make_reveal(CONTEXT, m, opened[m], members, survivors, made[m][1]) for m in survivors]
    masked = {m: np.zeros(64, dtype=np.uint64) for m in survivors}
    start = time.perf_counter()
    unmask_partition(CONTEXT, masked, offset=0, setups=setups, reveals=reveals, threshold=t)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    unmask_partition(CONTEXT, masked, offset=64, setups=setups, reveals=reveals, threshold=t)
    next_s = time.perf_counter() - start

    # Assert
    assert all(len(b) == n - 1 for b in opened.values())
    setup_bytes = len(made[members[0]][0].to_bytes())
    reveal_bytes = len(reveals[0].to_bytes())
    with capsys.disabled():
        print(
            f"\nN={n} t={t}: make_setup {setup_s * 1e3:.1f} ms, open_boxes (15 boxes verified) {open_s * 1e3:.1f} ms, "
            f"unmask first slice {first_s * 1e3:.1f} ms, next slice {next_s * 1e3:.1f} ms; "
            f"setup blob {setup_bytes} B (bound {setup_size_bound(n)}), reveal blob {reveal_bytes} B"
        )
    assert setup_s + open_s + first_s < 30  # seconds: only a sanity bound on a loaded 2-core machine
