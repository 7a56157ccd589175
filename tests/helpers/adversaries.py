"""Adversarial participants for in-process federations: real nodes that lie on purpose.

Each adversary is the real :class:`~fl_chain.node.runtime.Node` (real contract calls, real storage)
with one step changed:

- :class:`LyingAggregator` commits wrong aggregate digests for the partitions it is assigned:
  ``"random"`` digests that point at nothing, or ``"skewed"`` ones that point at a well-formed
  aggregate blob holding the honest aggregate plus 0.5.
- :class:`ForgingContributor` trains honestly but publishes forged content for its update (a blob
  that does not hash to its CID, a payload that does not match its header, short partitions, a
  manifest for someone else, no manifest at all) and commits that digest.
- :class:`TamperingTrainer` wraps a node's trainer and transforms the vector it returns (NaN, Inf,
  wrong length, scaled, sign-flipped): the node then publishes and commits it as usual.

:func:`rebuild` turns a node made by :func:`~fl_chain.federation.inprocess.build_federation` into one of the
node classes here, keeping its account, state directory, storage and trainer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from fl_chain.chain.coordinator import RoundInfo, TaskConfig
from fl_chain.exchange.transfer import publish_vector
from fl_chain.node.runtime import Node, Step
from fl_chain.node.state import RoundProgress
from fl_chain.protocol.blob import HEADER_SIZE, BlobKind, encode_partition
from fl_chain.protocol.cid import digest_from_cid
from fl_chain.protocol.manifest import Manifest
from fl_chain.protocol.partitioning import partition_bounds
from fl_chain.storage.base import Storage
from fl_chain.storage.memory import MemoryStorage
from fl_chain.training.trainer import Trainer, training_seed

AnyNode = TypeVar("AnyNode", bound=Node)


def rebuild(node: Node, cls: type[AnyNode], **options: Any) -> AnyNode:
    """``node`` (its account, task, state directory, storage, trainer and options) as a ``cls``."""
    return cls(
        coordinator=node.coordinator,
        account=node.account,
        task_id=node.task_id,
        spec=node.spec,
        trainer=node.trainer,
        storage=node.storage,
        state=node.state,
        options=node.options,
        logs=node.logs,
        report=node.report,
        **options,
    )


# -- Byzantine aggregators -------------------------------------------------------------------------

#: How a :class:`LyingAggregator` lies.
LIES = ("random", "skewed")

#: What a ``"skewed"`` liar adds to every coordinate of the honest aggregate.
SKEW = np.float32(0.5)


class LyingAggregator(Node):
    """A node that trains and contributes honestly but commits wrong aggregates.

    Parameters
    ----------
    lie:
        ``"random"``: a random digest, stored nowhere. ``"skewed"``: the honest aggregate plus
        :data:`SKEW`, encoded and stored as a valid aggregate blob, so the digest points at real,
        well-formed content; two skewed liars of one partition commit the same digest.
    ignore_finality:
        Also lie on assigned partitions that are already final (the honest runtime skips them), so
        the contract sees a late contradicting commit while the round is still aggregating.

    Attributes
    ----------
    lies:
        ``(round, partition) -> digest`` of every wrong digest this node tried to commit.
    """

    def __init__(self, *, lie: str, ignore_finality: bool = False, **node: Any) -> None:
        if lie not in LIES:
            raise ValueError(f"lie must be one of {LIES}, got {lie!r}")
        super().__init__(**node)
        self.lie = lie
        self.ignore_finality = ignore_finality
        self.lies: dict[tuple[int, int], bytes] = {}

    def _aggregation_phase(self, round_: int, info: RoundInfo, config: TaskConfig, base: np.ndarray) -> Step:
        if not self.ignore_finality:
            return super()._aggregation_phase(round_, info, config, base)
        honest_view = self.coordinator
        self.coordinator = _NothingFinal(honest_view)  # type: ignore[assignment]
        try:
            return super()._aggregation_phase(round_, info, config, base)
        finally:
            self.coordinator = honest_view

    def _aggregate_partition(self, round_, partition, commits, base, unavailable=None):  # type: ignore[no-untyped-def]
        honest = super()._aggregate_partition(round_, partition, commits, base, unavailable)
        if honest is None or self.lie != "skewed":
            return honest
        return honest + SKEW

    def _commit_aggregates(self, round_: int, ready: dict[int, bytes], progress: RoundProgress, fallback: bool) -> Step:
        if self.lie == "random":
            ready = {p: random_digest(f"{self.address}/{self.task_id}/{round_}/{p}") for p in ready}
        self.lies.update({(round_, p): digest for p, digest in ready.items()})
        return super()._commit_aggregates(round_, ready, progress, fallback)


class _NothingFinal:
    """A coordinator view in which no partition is final yet (everything else passes through)."""

    def __init__(self, coordinator: Any) -> None:
        self._coordinator = coordinator

    def get_final_digests(self, task_id: int, round_: int) -> list[bytes | None]:
        return [None] * len(self._coordinator.get_final_digests(task_id, round_))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._coordinator, name)


def random_digest(label: str) -> bytes:
    """A 32-byte digest no content is stored under (a hash of ``label``)."""
    return hashlib.sha256(b"fl-chain test lie/" + label.encode()).digest()


# -- broken or forged updates ----------------------------------------------------------------------

#: ``(node, round, trained vector) -> digest to commit``: what a :class:`ForgingContributor` publishes.
Forgery = Callable[["ForgingContributor", int, np.ndarray], bytes]


class ForgingContributor(Node):
    """A node that trains honestly, then publishes forged update content and commits its digest.

    Parameters
    ----------
    forgery:
        A key of :data:`FORGERIES`.

    Attributes
    ----------
    forged:
        ``round -> digest`` this node committed.
    """

    def __init__(self, *, forgery: str, **node: Any) -> None:
        if forgery not in FORGERIES:
            raise ValueError(f"forgery must be one of {sorted(FORGERIES)}, got {forgery!r}")
        super().__init__(**node)
        self.forgery = forgery
        self.forged: dict[int, bytes] = {}

    def _update_phase(self, round_: int, info: RoundInfo, base: np.ndarray) -> Step:
        progress = self.state.round(self.task_id, round_)
        if self.options.clock() >= info.update_deadline:
            return self._advance()
        if progress.update_committed:
            return Step.IDLE
        seed = training_seed(self.spec.model_seed, self.task_id, round_, self.address)
        update, samples, _ = self.trainer.train(base, seed=seed)
        digest = FORGERIES[self.forgery](self, round_, update)
        self.coordinator.commit_update(self.account, self.task_id, round_, digest, samples)
        progress.samples = samples
        progress.update_digest = digest.hex()
        progress.update_committed = True
        self.state.save_round(self.task_id, round_, progress)
        self.forged[round_] = digest
        return Step.PROGRESS

    def publish(self, round_: int, vector: np.ndarray, **overrides: Any) -> tuple[bytes, Manifest]:
        """Publish ``vector`` the honest way (``overrides`` change publish_vector's arguments)."""
        arguments: dict[str, Any] = {
            "blob_kind": BlobKind.UPDATE,
            "task_id": self.task_id,
            "round_": round_,
            "partitions": self.config.partitions,
            "contributor": self.address,
        }
        arguments.update(overrides)
        return publish_vector(self.storage, vector, **arguments)

    def publish_blobs(self, round_: int, dimension: int, blobs: list[bytes]) -> bytes:
        """Store ``blobs`` as the update's partitions under an honest manifest; returns its digest."""
        cids = tuple(self.storage.put(blob) for blob in blobs)
        manifest = Manifest("update", self.task_id, round_, dimension, cids, contributor=self.address)
        return digest_from_cid(self.storage.put(manifest.to_bytes()))

    def update_blobs(self, round_: int, vector: np.ndarray) -> list[bytes]:
        """The honest partition blobs of ``vector``."""
        return [
            encode_partition(
                vector[b.offset : b.offset + b.length],
                kind=BlobKind.UPDATE,
                task_id=self.task_id,
                round_=round_,
                partition=b.index,
                partitions=self.config.partitions,
                offset=b.offset,
                contributor=self.address,
            )
            for b in partition_bounds(vector.size, self.config.partitions)
        ]


def flip_payload_byte(blob: bytes) -> bytes:
    """``blob`` with the first payload byte changed (header, and so its payload hash, untouched)."""
    return blob[:HEADER_SIZE] + bytes([blob[HEADER_SIZE] ^ 0x01]) + blob[HEADER_SIZE + 1 :]


def serve_wrong_bytes(storage: Storage, cid: str, data: bytes) -> None:
    """Make ``storage`` hand out ``data`` for ``cid`` although it does not hash to it (a lying peer)."""
    assert isinstance(storage, MemoryStorage), "only the memory backend can be made to lie"
    storage._blobs[cid] = data


def _corrupt_blob(node: ForgingContributor, round_: int, vector: np.ndarray) -> bytes:
    """An honest manifest whose partition CIDs are served with other bytes."""
    digest, manifest = node.publish(round_, vector)
    for cid in manifest.partitions:
        serve_wrong_bytes(node.storage, cid, flip_payload_byte(node.storage.get(cid)))
    return digest


def _payload_hash(node: ForgingContributor, round_: int, vector: np.ndarray) -> bytes:
    """Blobs stored under their true CIDs whose payload does not match the hash in their header."""
    return node.publish_blobs(round_, vector.size, [flip_payload_byte(b) for b in node.update_blobs(round_, vector)])


def _short_partitions(node: ForgingContributor, round_: int, vector: np.ndarray) -> bytes:
    """A manifest of the model's dimension whose partition blobs each hold one value too few."""
    blobs = [
        encode_partition(
            vector[b.offset : b.offset + b.length - 1],
            kind=BlobKind.UPDATE,
            task_id=node.task_id,
            round_=round_,
            partition=b.index,
            partitions=node.config.partitions,
            offset=b.offset,
            contributor=node.address,
        )
        for b in partition_bounds(vector.size, node.config.partitions)
    ]
    return node.publish_blobs(round_, vector.size, blobs)


def _not_a_manifest(node: ForgingContributor, round_: int, vector: np.ndarray) -> bytes:
    """The digest of stored content that is not a manifest (the update's first partition blob)."""
    _, manifest = node.publish(round_, vector)
    return digest_from_cid(manifest.partitions[0])


def _someone_elses(node: ForgingContributor, round_: int, vector: np.ndarray) -> bytes:
    """A well-formed update manifest that names another contributor."""
    other = next(p.account for p in node.coordinator.get_participants(node.task_id) if p.account != node.address)
    digest, _ = node.publish(round_, vector, contributor=other)
    return digest


def _other_round(node: ForgingContributor, round_: int, vector: np.ndarray) -> bytes:
    """A well-formed update of this contributor, published for the next round (a replay)."""
    digest, _ = node.publish(round_ + 1, vector)
    return digest


def _unavailable(node: ForgingContributor, round_: int, vector: np.ndarray) -> bytes:
    """The digest of content no peer has (never stored anywhere)."""
    return random_digest(f"unavailable/{node.address}/{node.task_id}/{round_}")


#: Forged update publications by name; all but ``"unavailable"`` are invalid for every verifier.
FORGERIES: dict[str, Forgery] = {
    "corrupt_blob": _corrupt_blob,
    "payload_hash": _payload_hash,
    "short_partitions": _short_partitions,
    "not_a_manifest": _not_a_manifest,
    "someone_elses_manifest": _someone_elses,
    "other_round": _other_round,
    "unavailable": _unavailable,
}


# -- poisoned values -------------------------------------------------------------------------------

#: ``(trained vector, the global model it was trained from) -> the vector to publish``.
Attack = Callable[[np.ndarray, np.ndarray], np.ndarray]


class TamperingTrainer:
    """A trainer that trains like ``inner`` and returns ``attack(trained, base)`` instead.

    Attributes
    ----------
    published:
        Every vector it returned, in order.
    """

    def __init__(self, inner: Trainer, attack: Attack) -> None:
        self.inner = inner
        self.attack = attack
        self.published: list[np.ndarray] = []

    def initial_vector(self) -> np.ndarray:
        return self.inner.initial_vector()

    def train(self, vector: np.ndarray, *, seed: int) -> tuple[np.ndarray, int, dict[str, float]]:
        trained, samples, metrics = self.inner.train(vector, seed=seed)
        tampered = np.ascontiguousarray(self.attack(trained, vector), dtype=np.float32)
        self.published.append(tampered)
        return tampered, samples, metrics

    def evaluate(self, vector: np.ndarray) -> dict[str, float]:
        return self.inner.evaluate(vector)


class InflatingTrainer(TamperingTrainer):
    """Trains honestly but claims ``samples`` training samples (the FedAvg weight) every round."""

    def __init__(self, inner: Trainer, samples: int) -> None:
        super().__init__(inner, lambda trained, base: trained)
        self.samples = samples

    def train(self, vector: np.ndarray, *, seed: int) -> tuple[np.ndarray, int, dict[str, float]]:
        trained, _, metrics = super().train(vector, seed=seed)
        return trained, self.samples, metrics


def with_nan(trained: np.ndarray, base: np.ndarray) -> np.ndarray:
    """A NaN in every 7th coordinate (so in every partition)."""
    out = trained.copy()
    out[::7] = np.nan
    return out


def with_inf(trained: np.ndarray, base: np.ndarray) -> np.ndarray:
    """+Inf and -Inf in alternating 7th coordinates (so in every partition)."""
    out = trained.copy()
    out[::14] = np.inf
    out[7::14] = -np.inf
    return out


def one_value_more(trained: np.ndarray, base: np.ndarray) -> np.ndarray:
    """The trained vector with one extra coordinate: its manifest's dimension differs from the model's."""
    return np.append(trained, np.float32(0.0))


def scaled(factor: float) -> Attack:
    """The trained vector times ``factor`` (a negative factor flips its sign too)."""

    def attack(trained: np.ndarray, base: np.ndarray) -> np.ndarray:
        return trained * np.float32(factor)

    attack.__name__ = f"scaled_{factor:g}"
    return attack


def sign_flipped(trained: np.ndarray, base: np.ndarray) -> np.ndarray:
    """The negated trained vector: as valid as the honest one and exactly as long (same L2 norm)."""
    return -trained


def nan_in_partition(partition: int, partitions: int) -> Attack:
    """A NaN in the first coordinate of one partition only."""

    def attack(trained: np.ndarray, base: np.ndarray) -> np.ndarray:
        out = trained.copy()
        out[partition_bounds(out.size, partitions)[partition].offset] = np.nan
        return out

    return attack
