"""A round's committed updates, fetched and verified one partition at a time, as the contribution rule takes them.

Shared by the node's aggregation and the audit, so both see the same submissions: content that does
not verify becomes a submission with no values (invalid, excluded by every honest aggregator alike);
content that does not arrive raises :class:`~fl_chain.errors.BlobNotFoundError` (unavailable: the
caller waits, or the chain excludes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from fl_chain.aggregation.contribution import Submission
from fl_chain.chain.coordinator import UpdateCommit
from fl_chain.errors import BlobInvalidError, BlobNotFoundError, StorageError
from fl_chain.exchange.transfer import fetch_manifest, fetch_partition
from fl_chain.protocol.blob import BlobKind, blob_dtype_name
from fl_chain.protocol.manifest import Manifest
from fl_chain.storage.base import Storage
from fl_chain.storage.concurrent import run_gets


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
    blob_kind:
        ``BlobKind.MASKED_UPDATE`` for a secure-aggregation round (uint64 ring words), else updates.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        task_id: int,
        round_: int,
        partitions: int,
        dimension: int,
        timeout: float,
        blob_kind: BlobKind = BlobKind.UPDATE,
    ) -> None:
        self.storage = storage
        self.blob_kind = blob_kind
        self.task_id = task_id
        self.round = round_
        self.partitions = partitions
        self.dimension = dimension
        self.timeout = timeout
        self._manifests: dict[str, Manifest | str] = {}  # contributor -> manifest, or why it is invalid
        # (contributor, partition) -> what the last prefetch got: taken by the next submission() of it
        self._prefetched: dict[tuple[str, int], Submission | StorageError] = {}

    def prefetch(self, commits: Sequence[UpdateCommit], partitions: Sequence[int]) -> None:
        """Fetch the manifests, then the slices of ``partitions``, of ``commits`` at once.

        Up to the storage's ``parallel_gets`` fetches run together, so a round's blobs cost about
        their largest latency instead of the sum; :meth:`submission` then hands out what arrived
        (each result once) and fetches anything else itself. Does nothing for a storage that runs
        one get at a time. A result not taken is dropped by the next prefetch.
        """
        self._prefetched = {}
        parallel = self.storage.parallel_gets
        if parallel <= 1:
            return
        missing = [c for c in commits if c.contributor not in self._manifests]
        run_gets([partial(self.manifest, commit) for commit in missing], parallel=parallel)
        pairs = [
            (commit, p)
            for commit in commits
            for p in partitions
            if isinstance(self._manifests.get(commit.contributor), Manifest)
        ]
        results = run_gets([partial(self._fetch_submission, commit, p) for commit, p in pairs], parallel=parallel)
        self._prefetched = {(commit.contributor, p): result for (commit, p), result in zip(pairs, results)}

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
                    dtype=blob_dtype_name(self.blob_kind),
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
        ready = self._prefetched.pop((commit.contributor, partition), None)
        if isinstance(ready, Submission):
            return ready
        if isinstance(ready, BlobNotFoundError):
            raise ready
        return self._fetch_submission(commit, partition)

    def _fetch_submission(self, commit: UpdateCommit, partition: int) -> Submission:
        manifest = self.manifest(commit)
        if isinstance(manifest, str):
            return Submission(commit.contributor, commit.samples, None, manifest)
        try:
            values = fetch_partition(self.storage, manifest, partition, blob_kind=self.blob_kind, timeout=self.timeout)
        except BlobInvalidError as exc:
            return Submission(commit.contributor, commit.samples, None, str(exc))
        return Submission(commit.contributor, commit.samples, values)
