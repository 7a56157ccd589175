"""Update and model manifests: the small JSON documents whose digests go on chain.

A manifest lists the CIDs of a model vector's P partition blobs. Its bytes are canonical JSON
(sorted keys, no spaces), so the same content always has the same CID; the sha2-256 digest of that
CID is the bytes32 committed on chain, and the CID is rebuilt from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from fl_chain.errors import BlobFormatError, BlobMismatchError
from fl_chain.storage.cid import normalize_cid

MANIFEST_VERSION = 1
UPDATE_FORMAT = "fl-chain/update"
MODEL_FORMAT = "fl-chain/model"


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

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes."""
        body: dict[str, Any] = {
            "format": UPDATE_FORMAT if self.kind == "update" else MODEL_FORMAT,
            "version": MANIFEST_VERSION,
            "task": self.task_id,
            "round": self.round,
            "dimension": self.dimension,
            "dtype": "float32",
            "partitions": list(self.partitions),
        }
        if self.kind == "update":
            body["contributor"] = self.contributor
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def check(self, *, kind: str, task_id: int, round_: int, partitions: int, contributor: str | None = None) -> None:
        """Raise :class:`BlobMismatchError` unless this is the manifest the chain says it is."""
        expected = {"kind": kind, "task_id": task_id, "round": round_, "partition count": partitions}
        got = {"kind": self.kind, "task_id": self.task_id, "round": self.round, "partition count": len(self.partitions)}
        for name, want in expected.items():
            if got[name] != want:
                raise BlobMismatchError(f"manifest has {name}={got[name]}, expected {want}")
        if contributor is not None and (self.contributor or "").lower() != contributor.lower():
            raise BlobMismatchError(f"manifest names contributor {self.contributor}, expected {contributor}")


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate manifest bytes (which must be canonical)."""
    try:
        body = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BlobFormatError("manifest is not JSON") from None
    if not isinstance(body, dict):
        raise BlobFormatError("manifest is not a JSON object")
    fmt = body.get("format")
    if fmt not in (UPDATE_FORMAT, MODEL_FORMAT):
        raise BlobFormatError(f"unknown manifest format {fmt!r}")
    if body.get("version") != MANIFEST_VERSION:
        raise BlobFormatError(f"manifest version {body.get('version')!r} is not supported")
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
        )
    except KeyError as exc:
        raise BlobFormatError(f"manifest lacks field {exc.args[0]!r}") from None
    if body.get("dtype") != "float32":
        raise BlobFormatError(f"manifest dtype {body.get('dtype')!r} is not supported")
    if manifest.kind == "update" and not (isinstance(manifest.contributor, str) and Web3.is_address(manifest.contributor)):
        raise BlobFormatError("update manifest lacks a valid contributor address")
    if manifest.dimension < len(manifest.partitions):
        raise BlobFormatError("manifest dimension is smaller than its partition count")
    if manifest.to_bytes() != bytes(data):
        raise BlobFormatError("manifest bytes are not canonical")
    return manifest


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BlobFormatError(f"manifest field {name!r} must be a non-negative integer")
    return value
