"""Secure aggregation of one round: the blobs members exchange and the rules every node applies.

A round with secure aggregation has two extra exchanges (their digests go on chain, the bytes in IPFS):

* **setup** (before updates): a member publishes a fresh per-round X25519 *mask* public key, a hash
  commitment to its fresh self-mask seed, and for every other participant a share box (AES-GCM under
  the two members' long-term keys) holding that participant's Shamir shares of the self-mask seed
  and of the mask private key, with a hash commitment to each share in the clear. The members whose
  setup the chain recorded are the round's *key set* U1.
* **reveal** (after the contributor set U2 froze): each contributor publishes the shares it holds:
  the self-seed share of every member of U2 and the mask-key share of every member of U1 not in U2,
  never both for one member.

Each contributor adds its weighted, clipped, fixed-point update to the pairwise masks it shares with
every other member of U1 and its self mask (``fl_chain.privacy.masks``). An aggregator sums the masked
slices of U2, checks every revealed share against its owner's commitment (a wrong share is dropped,
alike on every honest node), rebuilds the self seeds of U2 and the mask keys of U1 minus U2, removes
their masks from its slice and divides by the total weight: the same bytes on every honest node.

Share x-coordinates are positions in the task's participant list sorted by address (1-based), the
same for every node. Every byte of a blob from a peer has a bound known before it is read.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from fl_chain.errors import BlobFormatError, BlobMismatchError, InvalidShareError, PrivacyError
from fl_chain.privacy.context import RoundContext, member_bytes
from fl_chain.privacy.fixed_point import MAX_EXACT_SUM, MAX_FRAC_BITS, Ring, decode, encode, ring_sum
from fl_chain.privacy.keys import KEY_BYTES, KeyPair, pairwise_mask_seed, recover_key_pair, share_encryption_key
from fl_chain.privacy.masks import SEED_BYTES, mask_update, unmask_sum
from fl_chain.privacy.shamir import SHARE_BYTES, Share, combine, split
from fl_chain.privacy.share_box import BOX_BYTES, ShareBundle, open_shares, seal_shares

SETUP_MAGIC = b"FLSS"
REVEAL_MAGIC = b"FLSR"
VERSION = 1
_DIGEST = 32
_HEADER = struct.Struct(">4sBQQ20sH")  # magic, version, task, round, member, entry count
_SETUP_ENTRY = 20 + 2 * _DIGEST + BOX_BYTES
_REVEAL_ENTRY = 20 + 1 + SHARE_BYTES


class ShareKind(IntEnum):
    """What a revealed share rebuilds."""

    SELF_SEED = 0
    MASK_KEY = 1


def setup_size_bound(participants: int) -> int:
    """Largest setup blob of a task with at most ``participants`` members."""
    return _HEADER.size + KEY_BYTES + _DIGEST + participants * _SETUP_ENTRY


def reveal_size_bound(participants: int) -> int:
    """Largest reveal blob of a task with at most ``participants`` members."""
    return _HEADER.size + participants * _REVEAL_ENTRY


def _address(raw: bytes) -> str:
    return "0x" + raw.hex()


def share_commitment(context: RoundContext, owner: str, holder: str, kind: ShareKind, share: Share) -> bytes:
    """Hash commitment to the share of ``owner``'s secret held by ``holder`` (hides a 521-bit random point)."""
    info = context.info(b"share-commitment", member_bytes(owner), member_bytes(holder), bytes([kind]))
    return hashlib.sha256(info + share.to_bytes()).digest()


def seed_commitment(context: RoundContext, member: str, seed: bytes) -> bytes:
    """Hash commitment to ``member``'s self-mask seed of the round (a 32-byte random secret)."""
    return hashlib.sha256(context.info(b"self-seed-commitment", member_bytes(member)) + seed).digest()


def share_positions(participants: Sequence[str]) -> dict[str, int]:
    """Each participant's share x-coordinate: its 1-based place in the list sorted by address."""
    ordered = sorted({p.lower() for p in participants}, key=member_bytes)
    return {member: i + 1 for i, member in enumerate(ordered)}


# ------------------------------------------------------------------------------------------------
# Blobs
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupEntry:
    """What one member sends one other in its setup."""

    recipient: str
    seed_share_commitment: bytes
    key_share_commitment: bytes
    box: bytes


@dataclass(frozen=True)
class RoundSetup:
    """A member's setup blob of a round."""

    task_id: int
    round: int
    member: str
    mask_public: bytes
    self_seed_commitment: bytes
    entries: tuple[SetupEntry, ...]

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            SETUP_MAGIC, VERSION, self.task_id, self.round, member_bytes(self.member), len(self.entries)
        )
        body = b"".join(
            member_bytes(e.recipient) + e.seed_share_commitment + e.key_share_commitment + e.box for e in self.entries
        )
        return head + self.mask_public + self.self_seed_commitment + body

    @classmethod
    def from_bytes(cls, data: bytes, *, max_participants: int) -> RoundSetup:
        """Parse a setup blob; :class:`BlobFormatError` for anything malformed or past the bound."""
        if len(data) > setup_size_bound(max_participants):
            raise BlobFormatError(f"a setup blob is at most {setup_size_bound(max_participants)} bytes")
        task, round_, member, count, rest = _split_header(data, SETUP_MAGIC)
        if len(rest) != KEY_BYTES + _DIGEST + count * _SETUP_ENTRY:
            raise BlobFormatError(f"a setup blob with {count} entries has the wrong length ({len(data)} bytes)")
        entries = []
        at = KEY_BYTES + _DIGEST
        for _ in range(count):
            raw = rest[at : at + _SETUP_ENTRY]
            entries.append(SetupEntry(_address(raw[:20]), raw[20:52], raw[52:84], raw[84:]))
            at += _SETUP_ENTRY
        if len({e.recipient for e in entries}) != len(entries):
            raise BlobFormatError("a setup blob names a recipient twice")
        return cls(task, round_, member, rest[:KEY_BYTES], rest[KEY_BYTES : KEY_BYTES + _DIGEST], tuple(entries))

    def entry_for(self, recipient: str) -> SetupEntry | None:
        """The entry addressed to ``recipient``, if any."""
        return next((e for e in self.entries if e.recipient == recipient.lower()), None)


@dataclass(frozen=True)
class RevealedShare:
    """One share a contributor reveals: whose secret, which secret, the share."""

    owner: str
    kind: ShareKind
    share: Share


@dataclass(frozen=True)
class RoundReveal:
    """A contributor's reveal blob of a round."""

    task_id: int
    round: int
    member: str
    shares: tuple[RevealedShare, ...]

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            REVEAL_MAGIC, VERSION, self.task_id, self.round, member_bytes(self.member), len(self.shares)
        )
        return head + b"".join(member_bytes(s.owner) + bytes([s.kind]) + s.share.to_bytes() for s in self.shares)

    @classmethod
    def from_bytes(cls, data: bytes, *, max_participants: int) -> RoundReveal:
        """Parse a reveal blob; :class:`BlobFormatError` for anything malformed or past the bound."""
        if len(data) > reveal_size_bound(max_participants):
            raise BlobFormatError(f"a reveal blob is at most {reveal_size_bound(max_participants)} bytes")
        task, round_, member, count, rest = _split_header(data, REVEAL_MAGIC)
        if len(rest) != count * _REVEAL_ENTRY:
            raise BlobFormatError(f"a reveal blob with {count} shares has the wrong length ({len(data)} bytes)")
        shares = []
        for at in range(0, len(rest), _REVEAL_ENTRY):
            raw = rest[at : at + _REVEAL_ENTRY]
            if raw[20] not in (ShareKind.SELF_SEED, ShareKind.MASK_KEY):
                raise BlobFormatError(f"unknown share kind {raw[20]} in a reveal blob")
            try:
                share = Share.from_bytes(raw[21:])
            except InvalidShareError as exc:
                raise BlobFormatError(f"malformed share in a reveal blob: {exc}") from None
            shares.append(RevealedShare(_address(raw[:20]), ShareKind(raw[20]), share))
        if len({s.owner for s in shares}) != len(shares):
            raise BlobFormatError("a reveal blob names an owner twice (never both shares of one member)")
        return cls(task, round_, member, tuple(shares))


def _split_header(data: bytes, magic: bytes) -> tuple[int, int, str, int, bytes]:
    """Task, round, member, entry count and the rest of a blob, its header checked."""
    if len(data) < _HEADER.size:
        raise BlobFormatError(f"a secure-aggregation blob is at least {_HEADER.size} bytes, got {len(data)}")
    found, version, task, round_, member, count = _HEADER.unpack_from(data)
    if found != magic:
        raise BlobFormatError(f"not a {magic.decode()} blob (magic {found!r})")
    if version != VERSION:
        raise BlobFormatError(f"unknown secure-aggregation blob version {version}")
    return task, round_, _address(member), count, data[_HEADER.size :]


def check_blob_matches(blob: RoundSetup | RoundReveal, context: RoundContext, member: str) -> None:
    """:class:`BlobMismatchError` unless the blob is ``member``'s for this task and round."""
    if (blob.task_id, blob.round, blob.member) != (context.task_id, context.round, member.lower()):
        raise BlobMismatchError(
            f"blob of {blob.member}, task {blob.task_id} round {blob.round}, where the chain says "
            f"{member.lower()}, task {context.task_id} round {context.round}"
        )


# ------------------------------------------------------------------------------------------------
# A member's side
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class RoundSecrets:
    """What a member keeps (in its state directory) between its setup and its update: never published."""

    mask_key: KeyPair
    self_seed: bytes
    #: The member's own shares of both secrets (it reveals its self-seed share like any holder).
    own_shares: ShareBundle


def make_setup(
    context: RoundContext,
    member: str,
    long_term: KeyPair,
    participants: Mapping[str, bytes],
    threshold: int,
) -> tuple[RoundSetup, RoundSecrets]:
    """A fresh setup: mask key pair, self seed, their shares boxed to every other participant.

    ``participants`` maps every participant of the task (this member included) to its long-term
    public key as registered on chain.
    """
    member = member.lower()
    mask_key, self_seed = KeyPair.generate(), secrets.token_bytes(SEED_BYTES)
    positions = share_positions(list(participants))
    count = len(positions)
    seed_shares = {s.x: s for s in split(self_seed, threshold=threshold, count=count)}
    key_shares = {s.x: s for s in split(mask_key.private, threshold=threshold, count=count)}
    own = ShareBundle(self_seed=seed_shares[positions[member]], private_key=key_shares[positions[member]])
    secrets_ = RoundSecrets(mask_key, self_seed, own)
    entries = []
    for peer, public in sorted(participants.items(), key=lambda item: member_bytes(item[0])):
        peer = peer.lower()
        x = positions[peer]
        bundle = ShareBundle(self_seed=seed_shares[x], private_key=key_shares[x])
        box = (
            bytes(BOX_BYTES)  # its own shares stay in its state directory; the entry carries their commitments
            if peer == member
            else seal_shares(
                bundle,
                key=share_encryption_key(long_term, public, context),
                context=context,
                sender=member,
                recipient=peer,
            )
        )
        entries.append(
            SetupEntry(
                recipient=peer,
                seed_share_commitment=share_commitment(context, member, peer, ShareKind.SELF_SEED, seed_shares[x]),
                key_share_commitment=share_commitment(context, member, peer, ShareKind.MASK_KEY, key_shares[x]),
                box=box,
            )
        )
    setup = RoundSetup(
        context.task_id,
        context.round,
        member,
        secrets_.mask_key.public,
        seed_commitment(context, member, secrets_.self_seed),
        tuple(entries),
    )
    return setup, secrets_


def open_boxes(
    context: RoundContext,
    member: str,
    long_term: KeyPair,
    setups: Mapping[str, RoundSetup],
    long_term_publics: Mapping[str, bytes],
) -> dict[str, ShareBundle]:
    """The shares every other key-set member sent ``member``; a box that does not open is left out."""
    member = member.lower()
    bundles: dict[str, ShareBundle] = {}
    for owner, setup in setups.items():
        owner = owner.lower()
        entry = setup.entry_for(member)
        if owner == member or entry is None:
            continue
        try:
            key = share_encryption_key(long_term, long_term_publics[owner], context)
            bundles[owner] = open_shares(entry.box, key=key, context=context, sender=owner, recipient=member)
        except (PrivacyError, KeyError):
            continue
    return bundles


def make_reveal(
    context: RoundContext,
    member: str,
    bundles: Mapping[str, ShareBundle],
    key_set: Sequence[str],
    contributors: Sequence[str],
    own: RoundSecrets | None = None,
) -> RoundReveal:
    """The shares ``member`` reveals: self-seed shares of contributors, mask-key shares of the key set's
    members who did not contribute; never both for one member. ``bundles`` are the shares others
    sent it (:func:`open_boxes`); ``own`` its round secrets, whose self-seed share it reveals too."""
    survivors = {c.lower() for c in contributors}
    if own is not None:
        bundles = {**bundles, member.lower(): own.own_shares}
    shares = []
    for owner in sorted({k.lower() for k in key_set}, key=member_bytes):
        bundle = bundles.get(owner)
        if bundle is None:
            continue
        if owner in survivors:
            shares.append(RevealedShare(owner, ShareKind.SELF_SEED, bundle.self_seed))
        else:
            shares.append(RevealedShare(owner, ShareKind.MASK_KEY, bundle.private_key))
    return RoundReveal(context.task_id, context.round, member.lower(), tuple(shares))


def frac_bits_for(participants: int, clip: float, max_weight: int) -> int:
    """The fixed-point scale: the most fraction bits with which ``participants`` weighted values of
    magnitude up to ``clip * max_weight`` sum exactly (``MAX_EXACT_SUM``)."""
    bound = participants * clip * max_weight
    bits = 0
    while bits < MAX_FRAC_BITS and bound * 2.0 ** (bits + 1) <= MAX_EXACT_SUM:
        bits += 1
    if bound * 2.0**bits > MAX_EXACT_SUM:
        raise PrivacyError(f"{participants} x {clip} x {max_weight} does not fit the ring: lower clip or max_samples")
    return bits


def masked_update(
    context: RoundContext,
    member: str,
    change: np.ndarray,
    weight: int,
    secrets_: RoundSecrets,
    key_set_masks: Mapping[str, bytes],
    *,
    clip: float,
    frac_bits: int,
) -> Ring:
    """A contributor's whole masked update: its change from the global model clipped to ``[-clip, clip]``
    per coordinate, times its weight, in the ring, plus its masks with every other key-set member."""
    values = np.clip(change.astype(np.float64), -clip, clip) * np.float64(weight)
    return _masked(context, member, encode(values, clip=clip * weight, frac_bits=frac_bits), secrets_, key_set_masks)


def masked_units(
    context: RoundContext,
    member: str,
    units: np.ndarray,
    secrets_: RoundSecrets,
    key_set_masks: Mapping[str, bytes],
) -> Ring:
    """A contributor's whole masked update of integer ``units`` (int64, two's complement in the ring):
    with differential privacy, its quantized clipped change plus its secret noise share
    (``fl_chain.privacy.dp``), masked like :func:`masked_update`."""
    encoded = np.ascontiguousarray(units, dtype=np.int64).view(np.uint64)
    return _masked(context, member, encoded, secrets_, key_set_masks)


def _masked(
    context: RoundContext, member: str, encoded: Ring, secrets_: RoundSecrets, key_set_masks: Mapping[str, bytes]
) -> Ring:
    """``encoded`` (the whole vector) plus ``member``'s self mask and its pairwise masks with the key set."""
    member = member.lower()
    seeds = {
        peer.lower(): pairwise_mask_seed(secrets_.mask_key, public, context)
        for peer, public in key_set_masks.items()
        if peer.lower() != member
    }
    return mask_update(
        encoded, offset=0, member=member, self_seed=secrets_.self_seed, pairwise_seeds=seeds, context=context
    )


# ------------------------------------------------------------------------------------------------
# An aggregator's side
# ------------------------------------------------------------------------------------------------


def _verified_shares(
    context: RoundContext, setups: Mapping[str, RoundSetup], reveals: Sequence[RoundReveal]
) -> dict[tuple[str, ShareKind], list[Share]]:
    """Revealed shares that match their owner's commitment, by (owner, kind); others are dropped."""
    found: dict[tuple[str, ShareKind], list[Share]] = {}
    for reveal in sorted(reveals, key=lambda r: member_bytes(r.member)):
        for revealed in reveal.shares:
            setup = setups.get(revealed.owner)
            entry = setup.entry_for(reveal.member) if setup is not None else None
            if entry is None:
                continue
            expected = (
                entry.seed_share_commitment if revealed.kind is ShareKind.SELF_SEED else entry.key_share_commitment
            )
            if share_commitment(context, revealed.owner, reveal.member, revealed.kind, revealed.share) == expected:
                found.setdefault((revealed.owner, revealed.kind), []).append(revealed.share)
    return found


def unmask_partition(
    context: RoundContext,
    masked: Mapping[str, Ring],
    *,
    offset: int,
    setups: Mapping[str, RoundSetup],
    reveals: Sequence[RoundReveal],
    threshold: int,
) -> Ring:
    """The ring sum of the contributors' weighted updates over one slice.

    ``masked`` maps each contributor (U2) to its masked slice at ``offset``; ``setups`` holds the
    setup of every key-set member (U1); ``reveals`` the reveal blobs the chain counted (U3).

    Raises
    ------
    NotEnoughSharesError
        If a secret has fewer verified shares than ``threshold``.
    InvalidShareError
        If verified shares disagree or rebuild a secret its owner did not commit to (the owner dealt
        them wrong): the slice cannot be unmasked, alike on every honest node.
    """
    survivors = sorted((m.lower() for m in masked), key=member_bytes)
    dropped = sorted((m for m in setups if m not in set(survivors)), key=member_bytes)
    shares = _verified_shares(context, setups, reveals)
    self_seeds = {}
    for member in survivors:
        seed = combine(shares.get((member, ShareKind.SELF_SEED), []), threshold=threshold)
        if seed_commitment(context, member, seed) != setups[member].self_seed_commitment:
            raise InvalidShareError(f"the self-seed shares of {member} rebuild a seed it did not commit to")
        self_seeds[member] = seed
    pairwise = {}
    for member in dropped:
        private = combine(shares.get((member, ShareKind.MASK_KEY), []), threshold=threshold)
        pair = recover_key_pair(private, setups[member].mask_public)
        for survivor in survivors:
            pairwise[(survivor, member)] = pairwise_mask_seed(pair, setups[survivor].mask_public, context)
    total = ring_sum(masked[m] for m in survivors)
    return unmask_sum(total, offset=offset, self_seeds=self_seeds, dropped_pairwise_seeds=pairwise, context=context)


def weighted_average(base: np.ndarray, summed: Ring, total_weight: int, *, frac_bits: int) -> np.ndarray:
    """``float32(base + decode(sum) / total_weight)``: one rounding, the same bytes everywhere."""
    if total_weight <= 0:
        raise ValueError("the total weight of a secure aggregate must be positive")
    mean = decode(summed, frac_bits=frac_bits) / np.float64(total_weight)
    return (base.astype(np.float64) + mean).astype(np.float32)
