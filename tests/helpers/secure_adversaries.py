"""Hostile or failing members of secure-aggregation rounds, for in-process federations.

Each is the real node with its :class:`~fl_chain.node.secure.SecureRounds` replaced by a subclass that
changes one thing, in the rounds listed in ``rounds``:

- ``"malformed_setup"``: publishes and commits bytes that are no setup blob;
- ``"stale_setup"``: publishes and commits its (well-formed) setup of the previous round;
- ``"malformed_reveal"``: publishes and commits bytes that are no reveal blob;
- ``"wrong_share"``: reveals well-formed shares with every y changed (they verify against no commitment);
- ``"withhold_reveal"``: contributes but never reveals;
- ``"drop_after_setup"``: commits its setup, then neither an update nor anything else that round.
- ``"plain_update"``: publishes its update unmasked, as float32 blobs of a plain task, and commits it.
- ``"oversized_setup"`` / ``"oversized_reveal"``: a blob above the size bound every node applies.
- ``"withhold_setup"``: commits the digest of a setup it never serves.
- ``"inconsistent_shares"``: deals its real secrets, but the box to one other member holds shares of
  them from other polynomials than the committed ones (they do not verify).
- ``"bad_boxes"``: a well-formed setup whose share boxes open for nobody;
- ``"bad_box_for_one"``: a well-formed setup whose box for one recipient (the lowest address) does not open;
- ``"invalid_slice"``: masks honestly but publishes partition 0 of its masked update one word short
  (only partition 0's aggregators can see it).

:class:`RecordingTrainer` keeps what each node trained in each round, for plaintext references.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

import numpy as np

from fl_chain.chain.coordinator import RoundInfo
from fl_chain.exchange.transfer import publish_vector
from fl_chain.node.runtime import Node, Step
from fl_chain.node.secure import SecureRounds
from fl_chain.privacy.keys import MaskKeyPair, share_encryption_key
from fl_chain.privacy.share_box import ShareBundle, seal_shares
from fl_chain.privacy.vss import ORDER, Share, split
from fl_chain.protocol.blob import MAGIC as BLOB_MAGIC
from fl_chain.protocol.blob import BlobKind
from fl_chain.protocol.secagg import (
    RevealedShare,
    RoundReveal,
    RoundSetup,
    SetupEntry,
    reveal_size_bound,
    setup_size_bound,
)
from fl_chain.storage.base import Storage
from fl_chain.training.trainer import Trainer

SECURE_ATTACKS = (
    "malformed_setup",
    "stale_setup",
    "malformed_reveal",
    "wrong_share",
    "withhold_reveal",
    "drop_after_setup",
    "plain_update",
    "oversized_setup",
    "oversized_reveal",
    "withhold_setup",
    "inconsistent_shares",
    "bad_boxes",
    "bad_box_for_one",
    "invalid_slice",
)


def _flip_last_byte(box: bytes) -> bytes:
    return box[:-1] + bytes([box[-1] ^ 1])


class _ShortFirstBlob:
    """Storage whose first ``put`` of a masked partition blob stores it one ring word short."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.cut = False

    def put(self, data: bytes) -> str:
        if not self.cut and data.startswith(BLOB_MAGIC):
            self.cut = True
            data = data[:-8]
        return self.inner.put(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class HostileSecureRounds(SecureRounds):
    """A node's secure side that does ``attack`` in ``rounds`` and is honest otherwise."""

    def __init__(self, node: Node, *, attack: str, rounds: Collection[int]) -> None:
        assert node.secure is not None and attack in SECURE_ATTACKS
        super().__init__(node, node.secure.params)
        self.attack = attack
        self.rounds = set(rounds)

    def setup_blob(self, round_: int, record: dict[str, str]) -> bytes:
        if round_ in self.rounds and self.attack == "malformed_setup":
            return b"FLSS" + bytes(range(200))
        if round_ in self.rounds and self.attack == "oversized_setup":
            return b"FLSS" + bytes(setup_size_bound(self.params.max_participants) + 1)
        if round_ in self.rounds and self.attack == "stale_setup":
            earlier = self.node.state.load_secagg_round(self.node.task_id, round_ - 1)
            assert earlier is not None, "stale_setup needs a round before"
            return bytes.fromhex(earlier["setup"])
        if round_ in self.rounds and self.attack == "inconsistent_shares":
            return self._inconsistent_setup(round_, record)
        if round_ in self.rounds and self.attack in ("bad_boxes", "bad_box_for_one"):
            setup = RoundSetup.from_bytes(
                bytes.fromhex(record["setup"]),
                max_participants=self.params.max_participants,
                threshold=self.params.threshold,
            )
            victims = sorted(e.recipient for e in setup.entries if e.recipient != self.me)
            if self.attack == "bad_box_for_one":
                victims = victims[:1]
            entries = tuple(
                dataclasses.replace(e, box=_flip_last_byte(e.box)) if e.recipient in victims else e
                for e in setup.entries
            )
            return dataclasses.replace(setup, entries=entries).to_bytes()
        return super().setup_blob(round_, record)

    def _inconsistent_setup(self, round_: int, record: dict[str, str]) -> bytes:
        """The honest setup with the box to the first other recipient resealed around shares of the same
        secrets from other polynomials: they rebuild nothing with the others' and do not verify."""
        params = self.params
        setup = RoundSetup.from_bytes(
            bytes.fromhex(record["setup"]), max_participants=params.max_participants, threshold=params.threshold
        )
        seed = int.from_bytes(bytes.fromhex(record["self_seed"]), "big")
        key = MaskKeyPair.from_private(bytes.fromhex(record["mask_private"])).scalar
        seed_shares, _ = split(seed, threshold=params.threshold, count=len(setup.entries))
        key_shares, _ = split(key, threshold=params.threshold, count=len(setup.entries))
        victim = next(e.recipient for e in setup.entries if e.recipient != self.me)
        x = setup.position_of(victim)
        assert x is not None
        box = seal_shares(
            ShareBundle(seed_shares[x - 1], key_shares[x - 1]),
            key=share_encryption_key(self.long_term, self._publics()[victim], self.context(round_)),
            context=self.context(round_),
            sender=self.me,
            recipient=victim,
        )
        entries = tuple(SetupEntry(victim, box) if e.recipient == victim else e for e in setup.entries)
        return dataclasses.replace(setup, entries=entries).to_bytes()

    def reveal_blob(self, round_: int, reveal: RoundReveal) -> bytes:
        if round_ in self.rounds and self.attack == "malformed_reveal":
            return b"FLSR" + bytes(300)
        if round_ in self.rounds and self.attack == "oversized_reveal":
            return b"FLSR" + bytes(reveal_size_bound(self.params.max_participants) + 1)
        if round_ in self.rounds and self.attack == "wrong_share":
            wrong = tuple(
                RevealedShare(s.owner, s.kind, Share(s.share.x, (s.share.y + 1) % ORDER)) for s in reveal.shares
            )
            return RoundReveal(reveal.task_id, reveal.round, reveal.member, wrong).to_bytes()
        return super().reveal_blob(round_, reveal)

    def shares_phase(self, round_: int, info: RoundInfo) -> Step:
        if round_ in self.rounds and self.attack == "withhold_setup":
            node = self.node
            progress = node.state.round(node.task_id, round_)
            if progress.setup_committed:
                return Step.IDLE
            node._transact("commit_setup", round_, bytes(range(32)))  # the digest of nothing anyone serves
            progress.setup_committed = True
            node.state.save_round(node.task_id, round_, progress)
            return Step.PROGRESS
        return super().shares_phase(round_, info)

    def update_phase(self, round_: int, info: RoundInfo, base: np.ndarray) -> Step:
        if round_ in self.rounds and self.attack == "drop_after_setup":
            return Step.IDLE
        if round_ in self.rounds and self.attack == "invalid_slice":
            node = self.node
            honest, node.storage = node.storage, _ShortFirstBlob(node.storage)  # type: ignore[assignment]
            try:
                return super().update_phase(round_, info, base)
            finally:
                node.storage = honest
        if round_ in self.rounds and self.attack == "plain_update":
            node = self.node
            progress = node.state.round(node.task_id, round_)
            if progress.update_committed:
                return Step.IDLE
            update, samples = node._trained_update(round_, base, progress)
            digest, _ = publish_vector(
                node.storage,
                update,
                blob_kind=BlobKind.UPDATE,
                task_id=node.task_id,
                round_=round_,
                partitions=node.config.partitions,
                contributor=node.address,
            )
            return node._commit_update(round_, digest, samples, progress)
        return super().update_phase(round_, info, base)

    def unmask_phase(self, round_: int, info: RoundInfo, base: np.ndarray) -> Step:
        if (
            round_ in self.rounds
            and self.attack == "withhold_reveal"
            and self.node.options.clock() >= info.reveal_start
        ):
            return Step.IDLE
        return super().unmask_phase(round_, info, base)


def make_hostile(node: Node, attack: str, rounds: Collection[int]) -> Node:
    """``node`` with a hostile secure side (same account, state, storage and trainer)."""
    node.secure = HostileSecureRounds(node, attack=attack, rounds=rounds)
    return node


class RecordingTrainer:
    """Trains like ``inner`` and keeps, per round of ``node``, the base, the trained model and the samples."""

    def __init__(self, inner: Trainer) -> None:
        self.inner = inner
        self.node: Node | None = None
        self.trained: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}

    def initial_vector(self) -> np.ndarray:
        return self.inner.initial_vector()

    def train(self, vector: np.ndarray, *, seed: int) -> tuple[np.ndarray, int, dict[str, float]]:
        trained, samples, metrics = self.inner.train(vector, seed=seed)
        assert self.node is not None and self.node._round is not None
        self.trained[self.node._round] = (np.array(vector), np.array(trained), int(samples))
        return trained, samples, metrics

    def evaluate(self, vector: np.ndarray) -> dict[str, float]:
        return self.inner.evaluate(vector)


def record_training(nodes: list[Node]) -> list[RecordingTrainer]:
    """Wrap every node's trainer in a :class:`RecordingTrainer`; returns them in node order."""
    recorders = []
    for node in nodes:
        recorder = RecordingTrainer(node.trainer)
        recorder.node = node
        node.trainer = recorder  # type: ignore[assignment]
        recorders.append(recorder)
    return recorders
