"""A round's committed updates, fetched and verified one partition at a time, as the contribution rule takes them.

Shared by the node's aggregation and the audit, so both see the same submissions: content that does
not verify becomes a submission with no values (invalid, excluded by every honest aggregator alike);
content that does not arrive raises :class:`~fl_chain.errors.BlobNotFoundError` (unavailable: the
caller waits, or the chain excludes it).
"""

from __future__ import annotations

from fl_chain.aggregation.contribution import Submission
from fl_chain.chain.coordinator import UpdateCommit
from fl_chain.errors import BlobInvalidError
from fl_chain.exchange.transfer import fetch_manifest, fetch_partition
from fl_chain.protocol.blob import BlobKind
from fl_chain.protocol.manifest import Manifest
from fl_chain.storage.base import Storage


class RoundUpdates:
    """The updates committed in one round of one task; each update manifest is fetched once.

    Parameters
    ----------
    storage:
        Where to fetch from.
    task_id, round_, partitions:
        The round, as the chain knows it.
    dimension:
        The model's parameter count (bounds every fetch).
    timeout:
        Seconds each fetch may take.
    """

    def __init__(
        self, storage: Storage, *, task_id: int, round_: int, partitions: int, dimension: int, timeout: float
    ) -> None:
        self.storage = storage
        self.task_id = task_id
        self.round = round_
        self.partitions = partitions
        self.dimension = dimension
        self.timeout = timeout
        self._manifests: dict[str, Manifest | str] = {}  # contributor -> manifest, or why it is invalid

    def manifest(self, commit: UpdateCommit) -> Manifest | str:
        """The contributor's verified update manifest, or why it is invalid.

        Raises
        ------
        BlobNotFoundError
            If the manifest is not served within the timeout (not remembered: the next call tries again).
        """
        if commit.contributor not in self._manifests:
            try:
                self._manifests[commit.contributor] = fetch_manifest(
                    self.storage,
                    commit.digest,
                    kind="update",
                    task_id=self.task_id,
                    round_=self.round,
                    partitions=self.partitions,
                    contributor=commit.contributor,
                    dimension=self.dimension,
                    timeout=self.timeout,
                )
            except BlobInvalidError as exc:
                self._manifests[commit.contributor] = f"invalid manifest: {exc}"
        return self._manifests[commit.contributor]

    def submission(self, commit: UpdateCommit, partition: int) -> Submission:
        """The contributor's slice of ``partition``: verified values, or none and why.

        Raises
        ------
        BlobNotFoundError
            If the manifest or the partition's blob is not served within the timeout.
        """
        manifest = self.manifest(commit)
        if isinstance(manifest, str):
            return Submission(commit.contributor, commit.samples, None, manifest)
        try:
            values = fetch_partition(self.storage, manifest, partition, blob_kind=BlobKind.UPDATE, timeout=self.timeout)
        except BlobInvalidError as exc:
            return Submission(commit.contributor, commit.samples, None, str(exc))
        return Submission(commit.contributor, commit.samples, values)
