"""Update and model manifests: the small JSON documents whose digests go on chain.

A manifest lists the CIDs of a model vector's P partition blobs. Its bytes are canonical JSON
(sorted keys, no spaces), so the same content always has the same CID; the sha2-256 digest of that
CID is the bytes32 committed on chain, and the CID is rebuilt from it.

Manifest bytes come from peers, so parsing is total: any bytes give a :class:`Manifest` or a
:class:`BlobFormatError`. A fetch reads at most :func:`manifest_size_limit` bytes; before
``json.loads`` a linear pre-scan refuses non-ASCII text and more than one ``{`` or ``[`` (a
canonical manifest has exactly one of each, so nesting is at most two deep: no deep recursion);
integers longer than 20 digits, floats, NaN and Infinity are refused while parsing (no quadratic
big-int conversion), and anything else that escapes is turned into BlobFormatError.

An update manifest may carry the contributor's evaluation of the global model it trained from
(:class:`Evaluation`: four flat integer fields, so the pre-scan and the no-float rule still hold).
It is informative only: nothing in aggregation reads it, and a value no honest node would publish
(:meth:`Evaluation.plausible`) is ignored by its readers (the dashboard), never trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_utils import is_address

from fl_chain.errors import BlobFormatError, BlobMismatchError
from fl_chain.protocol.cid import normalize_cid

MANIFEST_VERSION = 1
UPDATE_FORMAT = "fl-chain/update"
MODEL_FORMAT = "fl-chain/model"
#: Longest integer literal a manifest may hold (``2**64 - 1`` has 20 digits).
MAX_INT_DIGITS = 20
_MAX_INT = 10**MAX_INT_DIGITS - 1
_LONGEST_CID = "b" + "a" * 58  # CIDv1 dag-pb sha2-256 base32: always 59 characters
#: Payload types a manifest may name (the longest first: it sets the size bound).
DTYPES = ("float32", "uint64")


#: Fixed-point scale of an evaluation's accuracy and loss (parts per million).
EVAL_SCALE = 1_000_000
#: The manifest fields of an :class:`Evaluation`, all or none present.
EVAL_FIELDS = ("eval_round", "eval_accuracy", "eval_loss", "eval_samples")


@dataclass(frozen=True)
class Evaluation:
    """A contributor's evaluation of a global model on its local test data, in integers.

    ``round`` is the finalized round whose global model was evaluated (the model the update was
    trained from); ``accuracy`` and ``loss`` are in millionths (:data:`EVAL_SCALE`); ``samples`` is
    the number of local test samples it was measured on.
    """

    round: int
    accuracy: int
    loss: int
    samples: int

    @classmethod
    def of(cls, round_: int, accuracy: float, loss: float, samples: int) -> Evaluation | None:
        """The evaluation of measured figures; None when they cannot be one (not finite, no samples)."""
        if samples < 1 or not (0.0 <= accuracy <= 1.0) or not (0.0 <= loss < 1e12):  # also refuses NaN
            return None
        return cls(round_, round(accuracy * EVAL_SCALE), round(loss * EVAL_SCALE), int(samples))

    def plausible(self, update_round: int) -> bool:
        """Whether an honest node of ``update_round`` could have published this (else: ignore it)."""
        return self.round < update_round and 0 <= self.accuracy <= EVAL_SCALE and 0 < self.samples < 2**40

    @property
    def accuracy_value(self) -> float:
        return self.accuracy / EVAL_SCALE

    @property
    def loss_value(self) -> float:
        return self.loss / EVAL_SCALE


@dataclass(frozen=True)
class Manifest:
    """A model vector stored as partitions.

    ``kind`` is ``update`` (a contributor's trained model for a round, ``contributor`` set) or
    ``model`` (a global model: the final partitions of a round, or the task's initial model).
    """

    kind: str
    task_id: int
    round: int
    dimension: int
    partitions: tuple[str, ...]
    contributor: str | None = None
    #: The blobs' payload: ``float32``, or ``uint64`` ring words for a masked update (secure aggregation).
    dtype: str = "float32"
    #: An update's evaluation of the global model it was trained from (optional, informative only).
    evaluation: Evaluation | None = None

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes."""
        body: dict[str, Any] = {
            "format": UPDATE_FORMAT if self.kind == "update" else MODEL_FORMAT,
            "version": MANIFEST_VERSION,
            "task": self.task_id,
            "round": self.round,
            "dimension": self.dimension,
            "dtype": self.dtype,
            "partitions": list(self.partitions),
        }
        if self.kind == "update":
            body["contributor"] = self.contributor
            if self.evaluation is not None:
                e = self.evaluation
                body.update(eval_round=e.round, eval_accuracy=e.accuracy, eval_loss=e.loss, eval_samples=e.samples)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def check(
        self,
        *,
        kind: str,
        task_id: int,
        round_: int,
        partitions: int,
        contributor: str | None = None,
        dimension: int | None = None,
        dtype: str = "float32",
    ) -> None:
        """Raise :class:`BlobMismatchError` unless this is the manifest the chain (and the model) says it is."""
        expected = {"kind": kind, "task_id": task_id, "round": round_, "partition count": partitions, "dtype": dtype}
        got = {
            "kind": self.kind,
            "task_id": self.task_id,
            "round": self.round,
            "partition count": len(self.partitions),
            "dtype": self.dtype,
        }
        for name, want in expected.items():
            if got[name] != want:
                raise BlobMismatchError(f"manifest has {name}={got[name]}, expected {want}")
        if contributor is not None and (self.contributor or "").lower() != contributor.lower():
            raise BlobMismatchError(f"manifest names contributor {self.contributor}, expected {contributor}")
        if dimension is not None and self.dimension != dimension:
            raise BlobMismatchError(f"manifest has {self.dimension} parameters, the model {dimension}")


def manifest_size_limit(partitions: int) -> int:
    """The largest canonical manifest of ``partitions`` partitions, in bytes (the fetch bound)."""
    if partitions < 1:
        raise ValueError(f"a manifest has at least one partition, got {partitions}")
    widest = Manifest(
        "update",
        _MAX_INT,
        _MAX_INT,
        _MAX_INT,
        (_LONGEST_CID,) * partitions,
        "0x" + "f" * 40,
        evaluation=Evaluation(_MAX_INT, _MAX_INT, _MAX_INT, _MAX_INT),
    )
    return len(widest.to_bytes())


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate manifest bytes (which must be canonical); BlobFormatError for anything else."""
    if not isinstance(data, (bytes, bytearray)):
        raise BlobFormatError(f"manifest must be bytes, got {type(data).__name__}")
    if not data.isascii():
        raise BlobFormatError("manifest is not ASCII")
    if data.count(b"{") > 1 or data.count(b"[") > 1:
        raise BlobFormatError("manifest nests objects or lists")
    try:
        return _parse(bytes(data))
    except BlobFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - total: whatever else peer bytes provoke is a format error
        raise BlobFormatError(f"manifest does not parse: {type(exc).__name__}: {str(exc)[:200]}") from None


def _parse(data: bytes) -> Manifest:
    try:
        body = json.loads(data.decode("ascii"), parse_int=_bounded_int, parse_float=_no_float, parse_constant=_no_float)
    except json.JSONDecodeError:
        raise BlobFormatError("manifest is not JSON") from None
    if not isinstance(body, dict):
        raise BlobFormatError("manifest is not a JSON object")
    fmt = body.get("format")
    if fmt not in (UPDATE_FORMAT, MODEL_FORMAT):
        raise BlobFormatError(f"unknown manifest format {str(fmt)[:80]!r}")
    if body.get("version") != MANIFEST_VERSION:
        raise BlobFormatError(f"manifest version {str(body.get('version'))[:80]!r} is not supported")
    try:
        partitions = body["partitions"]
        if not isinstance(partitions, list) or not partitions or not all(isinstance(c, str) for c in partitions):
            raise BlobFormatError("manifest partitions must be a non-empty list of CIDs")
        manifest = Manifest(
            kind="update" if fmt == UPDATE_FORMAT else "model",
            task_id=_int(body["task"], "task"),
            round=_int(body["round"], "round"),
            dimension=_int(body["dimension"], "dimension"),
            partitions=tuple(normalize_cid(c) for c in partitions),
            contributor=body.get("contributor") if fmt == UPDATE_FORMAT else None,
            dtype=str(body.get("dtype")) if body.get("dtype") in DTYPES else "float32",
            evaluation=_evaluation(body) if fmt == UPDATE_FORMAT else None,
        )
    except KeyError as exc:
        raise BlobFormatError(f"manifest lacks field {exc.args[0]!r}") from None
    if body.get("dtype") not in DTYPES or (body["dtype"] != "float32" and fmt != UPDATE_FORMAT):
        raise BlobFormatError(f"manifest dtype {str(body.get('dtype'))[:80]!r} is not supported")
    if manifest.kind == "update" and not (isinstance(manifest.contributor, str) and is_address(manifest.contributor)):
        raise BlobFormatError("update manifest lacks a valid contributor address")
    if manifest.dimension < len(manifest.partitions):
        raise BlobFormatError("manifest dimension is smaller than its partition count")
    if manifest.to_bytes() != data:
        raise BlobFormatError("manifest bytes are not canonical")
    return manifest


def _evaluation(body: dict[str, Any]) -> Evaluation | None:
    """The evaluation fields of an update manifest: all four non-negative integers, or none of them."""
    present = [name for name in EVAL_FIELDS if name in body]
    if not present:
        return None
    if len(present) != len(EVAL_FIELDS):
        raise BlobFormatError(f"manifest has {', '.join(present)} without the other evaluation fields")
    return Evaluation(*(_int(body[name], name) for name in EVAL_FIELDS))


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BlobFormatError(f"manifest holds an integer of {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _no_float(text: str) -> float:
    raise BlobFormatError(f"manifest holds a non-integer number {text[:40]!r}")


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BlobFormatError(f"manifest field {name!r} must be a non-negative integer")
    return value
