"""Secure aggregation of one round: the blobs members exchange and the rules every node applies.

A round with secure aggregation has two extra exchanges (their digests go on chain, the bytes in IPFS):

* **setup** (before updates): a member deals two fresh per-round secrets, its self-mask seed and the
  private key of its secp256k1 *mask* key pair, by Feldman verifiable secret sharing
  (``fl_chain.privacy.vss``, threshold t): it publishes the commitments of both polynomials (the
  key's ``C_0`` *is* its mask public key; the seed's ``C_0`` is ``seed * G``) and for every other
  participant a share box (AES-GCM under the two members' long-term X25519 keys) holding that
  participant's shares of both. A recipient checks its shares against the commitments when it opens
  its box (:func:`open_boxes` leaves out a box that does not open or whose shares do not verify).
  The members whose setup the chain recorded are the round's *key set* U1.
* **reveal** (after the contributor set U2 froze): each contributor publishes the shares it holds:
  the self-seed share of every member of U2 and the mask-key share of every member of U1 not in U2,
  never both for one member.

Each contributor adds its weighted, clipped, fixed-point update to the pairwise masks it shares with
every other member of U1 and its self mask (``fl_chain.privacy.masks``). An aggregator sums the masked
slices of U2, verifies every revealed share against its owner's commitments (a wrong share is
dropped, alike on every honest node), rebuilds the self seeds of U2 and the mask keys of U1 minus U2
from the t verified shares of lowest x (any t verified shares give exactly the committed secret, so a
dealer whose shares verified cannot make this fail), removes their masks from its slice and divides by
the total weight: the same bytes on every honest node.

A share's x-coordinate is its holder's 1-based place among the recipients of the dealer's setup,
which lists them sorted by address (the dealer's own entry included). Every byte of a blob from a peer
has a bound known before it is read.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

import numpy as np

from fl_chain.errors import BlobFormatError, BlobMismatchError, InvalidCommitmentError, InvalidShareError, PrivacyError
from fl_chain.privacy.context import RoundContext, member_bytes
from fl_chain.privacy.fixed_point import MAX_EXACT_SUM, MAX_FRAC_BITS, Ring, decode, encode, ring_sum
from fl_chain.privacy.keys import (
    POSSESSION_BYTES,
    KeyPair,
    MaskKeyPair,
    pairwise_mask_seed,
    recover_key_pair,
    share_encryption_key,
    verify_possession,
)
from fl_chain.privacy.masks import mask_update, unmask_sum
from fl_chain.privacy.share_box import BOX_BYTES, ShareBundle, open_shares, seal_shares
from fl_chain.privacy.vss import (
    POINT_BYTES,
    SHARE_BYTES,
    Commitments,
    Share,
    combine,
    random_scalar,
    scalar_bytes,
    split,
    verify,
)

SETUP_MAGIC = b"FLSS"
REVEAL_MAGIC = b"FLSR"
VERSION = 3
_HEADER = struct.Struct(">4sBQQ20sH")  # magic, version, task, round, member, entry count
_THRESHOLD = struct.Struct(">H")
_SETUP_ENTRY = 20 + BOX_BYTES
_REVEAL_ENTRY = 20 + 1 + SHARE_BYTES


class ShareKind(IntEnum):
    """What a revealed share rebuilds."""

    SELF_SEED = 0
    MASK_KEY = 1


def setup_size_bound(participants: int) -> int:
    """Largest setup blob of a task with at most ``participants`` members (its threshold is at most that)."""
    return _HEADER.size + _THRESHOLD.size + POSSESSION_BYTES + participants * (2 * POINT_BYTES + _SETUP_ENTRY)


def reveal_size_bound(participants: int) -> int:
    """Largest reveal blob of a task with at most ``participants`` members."""
    return _HEADER.size + participants * _REVEAL_ENTRY


def _address(raw: bytes) -> str:
    return "0x" + raw.hex()


def share_positions(participants: Sequence[str]) -> dict[str, int]:
    """Each participant's share x-coordinate: its 1-based place in the list sorted by address."""
    ordered = sorted({p.lower() for p in participants}, key=member_bytes)
    return {member: i + 1 for i, member in enumerate(ordered)}


# ------------------------------------------------------------------------------------------------
# Blobs
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupEntry:
    """What one member sends one other in its setup: the box with its two shares."""

    recipient: str
    box: bytes


@dataclass(frozen=True)
class RoundSetup:
    """A member's setup blob of a round.

    Layout (``VERSION`` 3): the header (magic ``FLSS``, version, task, round, member, entry count),
    the threshold t (2 bytes), the t commitments of the self-seed sharing and the t of the mask-key
    sharing (33 bytes each), the proof of possession of the mask key (65 bytes: a recoverable ECDSA
    signature of the member's round under it, so nobody can present another member's mask key as its
    own), then per recipient, sorted by address: its address (20 bytes) and its share box
    (``BOX_BYTES``). The dealer's own entry carries an all-zero box.
    """

    task_id: int
    round: int
    member: str
    seed_commitments: Commitments
    key_commitments: Commitments
    possession: bytes
    entries: tuple[SetupEntry, ...]

    @property
    def mask_public(self) -> bytes:
        """The member's mask public key of the round: ``C_0`` of its mask-key sharing."""
        return self.key_commitments.secret_point

    @property
    def threshold(self) -> int:
        """How many shares rebuild each of the member's secrets."""
        return self.seed_commitments.threshold

    def commitments(self, kind: ShareKind) -> Commitments:
        """The commitments the shares of ``kind`` verify against."""
        return self.seed_commitments if kind is ShareKind.SELF_SEED else self.key_commitments

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            SETUP_MAGIC, VERSION, self.task_id, self.round, member_bytes(self.member), len(self.entries)
        )
        body = b"".join(member_bytes(e.recipient) + e.box for e in self.entries)
        commitments = self.seed_commitments.to_bytes() + self.key_commitments.to_bytes()
        return head + _THRESHOLD.pack(self.threshold) + commitments + self.possession + body

    @classmethod
    def from_bytes(cls, data: bytes, *, max_participants: int, threshold: int) -> RoundSetup:
        """Parse a setup blob of a task with threshold ``threshold``; :class:`BlobFormatError` for anything
        malformed or past the bound: another threshold (a polynomial of higher degree would let t
        verified shares miss the secret), fewer entries than t, recipients not in strictly ascending
        order, a commitment that is not a point."""
        if len(data) > setup_size_bound(max_participants):
            raise BlobFormatError(f"a setup blob is at most {setup_size_bound(max_participants)} bytes")
        task, round_, member, count, rest = _split_header(data, SETUP_MAGIC)
        if len(rest) < _THRESHOLD.size:
            raise BlobFormatError(f"a setup blob is at least {_HEADER.size + _THRESHOLD.size} bytes")
        (dealt,) = _THRESHOLD.unpack_from(rest)
        if dealt != threshold:
            raise BlobFormatError(f"a setup blob deals {dealt}-of-n shares, the task's threshold is {threshold}")
        if count < threshold:
            raise BlobFormatError(f"a setup blob with {count} recipients cannot deal {threshold}-of-n shares")
        at = _THRESHOLD.size + 2 * threshold * POINT_BYTES + POSSESSION_BYTES
        if len(rest) != at + count * _SETUP_ENTRY:
            raise BlobFormatError(f"a setup blob with {count} entries has the wrong length ({len(data)} bytes)")
        size = threshold * POINT_BYTES
        at_possession = _THRESHOLD.size + 2 * size
        try:
            seed = Commitments.from_bytes(rest[_THRESHOLD.size : _THRESHOLD.size + size], threshold=threshold)
            key = Commitments.from_bytes(rest[_THRESHOLD.size + size : at - POSSESSION_BYTES], threshold=threshold)
        except InvalidCommitmentError as exc:
            raise BlobFormatError(f"a setup blob with a malformed commitment: {exc}") from None
        entries = []
        for _ in range(count):
            raw = rest[at : at + _SETUP_ENTRY]
            entries.append(SetupEntry(_address(raw[:20]), raw[20:]))
            at += _SETUP_ENTRY
        if any(member_bytes(a.recipient) >= member_bytes(b.recipient) for a, b in itertools.pairwise(entries)):
            raise BlobFormatError("a setup blob lists its recipients out of order, or one twice")
        return cls(
            task, round_, member, seed, key, rest[at_possession : at_possession + POSSESSION_BYTES], tuple(entries)
        )

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {e.recipient: i + 1 for i, e in enumerate(self.entries)}

    def entry_for(self, recipient: str) -> SetupEntry | None:
        """The entry addressed to ``recipient``, if any."""
        position = self.position_of(recipient)
        return None if position is None else self.entries[position - 1]

    def position_of(self, holder: str) -> int | None:
        """The x-coordinate of ``holder``'s shares of this member's secrets (its 1-based place among the
        recipients), or None if it is no recipient."""
        return self._positions.get(holder.lower())

    def verifies(self, holder: str, kind: ShareKind, share: Share) -> bool:
        """Whether ``share`` is a valid share of this member's secret ``kind`` held by ``holder``: at
        ``holder``'s position and on the committed polynomial."""
        return share.x == self.position_of(holder) and verify(share, self.commitments(kind))


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
    """:class:`BlobMismatchError` unless the blob is ``member``'s for this task and round (and, for a
    setup, proves that ``member`` holds the private key of its mask public key)."""
    if (blob.task_id, blob.round, blob.member) != (context.task_id, context.round, member.lower()):
        raise BlobMismatchError(
            f"blob of {blob.member}, task {blob.task_id} round {blob.round}, where the chain says "
            f"{member.lower()}, task {context.task_id} round {context.round}"
        )
    if isinstance(blob, RoundSetup) and not verify_possession(blob.mask_public, blob.possession, context, member):
        raise BlobMismatchError(f"the setup of {member.lower()} does not prove it holds its mask key")


# ------------------------------------------------------------------------------------------------
# A member's side
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class RoundSecrets:
    """What a member keeps (in its state directory) between its setup and its update: never published."""

    mask_key: MaskKeyPair
    #: The self-mask seed: a scalar in 1..n-1 as 32 big-endian bytes (``C_0`` of its sharing is public).
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
    """A fresh setup: mask key pair, self seed, their Feldman commitments, their shares boxed to every
    other participant.

    ``participants`` maps every participant of the task (this member included) to its long-term
    public key as registered on chain.
    """
    member = member.lower()
    mask_key, seed = MaskKeyPair.generate(), random_scalar()
    positions = share_positions(list(participants))
    count = len(positions)
    seed_list, seed_commitments = split(seed, threshold=threshold, count=count)
    key_list, key_commitments = split(mask_key.scalar, threshold=threshold, count=count)
    seed_shares, key_shares = {s.x: s for s in seed_list}, {s.x: s for s in key_list}
    own = ShareBundle(self_seed=seed_shares[positions[member]], private_key=key_shares[positions[member]])
    secrets_ = RoundSecrets(mask_key, scalar_bytes(seed), own)
    entries = []
    for peer, public in sorted(participants.items(), key=lambda item: member_bytes(item[0])):
        peer = peer.lower()
        x = positions[peer]
        bundle = ShareBundle(self_seed=seed_shares[x], private_key=key_shares[x])
        box = (
            bytes(BOX_BYTES)  # its own shares stay in its state directory
            if peer == member
            else seal_shares(
                bundle,
                key=share_encryption_key(long_term, public, context),
                context=context,
                sender=member,
                recipient=peer,
            )
        )
        entries.append(SetupEntry(recipient=peer, box=box))
    possession = mask_key.prove_possession(context, member)
    setup = RoundSetup(
        context.task_id, context.round, member, seed_commitments, key_commitments, possession, tuple(entries)
    )
    assert setup.mask_public == mask_key.public  # C_0 of the key's sharing is its public key
    return setup, secrets_


def open_boxes(
    context: RoundContext,
    member: str,
    long_term: KeyPair,
    setups: Mapping[str, RoundSetup],
    long_term_publics: Mapping[str, bytes],
) -> dict[str, ShareBundle]:
    """The shares every other key-set member sent ``member``, each verified against its dealer's
    commitments; a box that does not open, or whose shares do not verify (wrong position, not on the
    committed polynomial), is left out: its dealer is at fault and ``member`` cannot use its setup."""
    member = member.lower()
    bundles: dict[str, ShareBundle] = {}
    for owner, setup in setups.items():
        owner = owner.lower()
        entry = setup.entry_for(member)
        if owner == member or entry is None:
            continue
        try:
            key = share_encryption_key(long_term, long_term_publics[owner], context)
            bundle = open_shares(entry.box, key=key, context=context, sender=owner, recipient=member)
        except (PrivacyError, KeyError):
            continue
        if setup.verifies(member, ShareKind.SELF_SEED, bundle.self_seed) and setup.verifies(
            member, ShareKind.MASK_KEY, bundle.private_key
        ):
            bundles[owner] = bundle
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
    setups: Mapping[str, RoundSetup], reveals: Sequence[RoundReveal], wanted: Mapping[str, ShareKind]
) -> dict[str, list[Share]]:
    """For each owner in ``wanted``, the first t revealed shares of the wanted kind that verify against
    its commitments (reveals in revealer address order, so lowest x first); others are dropped.

    Any t verified shares rebuild the same secret, so stopping at t (and a reveal not served yet) changes
    nothing in the result: every honest node gets the same bytes."""
    found: dict[str, list[Share]] = {owner: [] for owner in wanted}
    seen: set[str] = set()
    for reveal in sorted(reveals, key=lambda r: member_bytes(r.member)):
        if reveal.member in seen:
            continue
        seen.add(reveal.member)
        for revealed in reveal.shares:
            setup = setups.get(revealed.owner)
            if setup is None or wanted.get(revealed.owner) is not revealed.kind:
                continue
            shares = found[revealed.owner]
            if len(shares) < setup.threshold and setup.verifies(reveal.member, revealed.kind, revealed.share):
                shares.append(revealed.share)
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
        If a secret has fewer verified shares than ``threshold`` (too few revealers, or revealers who
        never got a verifying share of it).
    InvalidShareError
        If a setup deals another threshold than ``threshold`` (the parser refuses those, so only a
        caller that skipped it sees this).
    """
    survivors = sorted((m.lower() for m in masked), key=member_bytes)
    dropped = sorted((m for m in setups if m not in set(survivors)), key=member_bytes)
    if any(setup.threshold != threshold for setup in setups.values()):
        raise InvalidShareError(f"a setup deals shares of another threshold than {threshold}")
    wanted = {m: ShareKind.SELF_SEED for m in survivors} | {m: ShareKind.MASK_KEY for m in dropped}
    shares = _verified_shares(setups, reveals, wanted)
    self_seeds = {}
    for member in survivors:
        seed = combine(shares[member], commitments=setups[member].seed_commitments)
        self_seeds[member] = scalar_bytes(seed)
    pairwise = {}
    for member in dropped:
        private = combine(shares[member], commitments=setups[member].key_commitments)
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
