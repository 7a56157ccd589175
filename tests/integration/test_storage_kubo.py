"""Real IPFS peers (embedded kubo) in separate OS processes on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fl_chain.errors import BlobFormatError, BlobIntegrityError, StorageError, StorageStartError
from fl_chain.protocol.blob import BlobKind, decode_partition, encode_partition
from fl_chain.storage import MemoryStorage
from fl_chain.storage.kubo_config import NON_LOOPBACK_RANGES
from tests.helpers.peer_process import PeerError, PeerProcess

pytestmark = pytest.mark.kubo


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PeerProcess]]:
    """Three kubo peers, each in its own OS process; B and C connected to A."""
    root = tmp_path_factory.mktemp("kubo")
    started: list[PeerProcess] = []
    try:
        for name in "abc":
            started.append(PeerProcess(root / name))
        a, b, c = started
        b.request("connect", a.multiaddrs[0])
        c.request("connect", a.multiaddrs[0])
        yield started
    finally:
        for peer in started:
            peer.stop()


def _partition_blob(megabytes: int, seed: int) -> bytes:
    values = np.random.default_rng(seed).standard_normal(megabytes * 2**20 // 4).astype(np.float32)
    return encode_partition(values, kind=BlobKind.UPDATE, task_id=1, round_=0, partition=0, partitions=4, offset=0)


def test_8mb_partition_put_by_one_peer_is_fetched_by_two_others_over_bitswap(peers: list[PeerProcess]) -> None:
    """Peers B and C, in other processes, fetch A's 8 MB partition by CID: bytes identical."""
    a, b, c = peers
    blob = _partition_blob(8, seed=1)
    cid = a.request("put", blob)
    for fetcher in (b, c):
        fetched = fetcher.request("get", cid, 60.0)
        assert fetched == blob
    header, _ = decode_partition(fetched)
    assert header.length == 2 * 2**20
    assert a.peer_id in b.request("peers") and a.peer_id in c.request("peers")


def test_memory_backend_gives_the_kubo_cid_for_the_same_bytes(peers: list[PeerProcess]) -> None:
    """The in-process store names the same bytes with the same CID as kubo, across chunk boundaries."""
    a = peers[0]
    for size in (0, 1, 262_144, 262_145, 174 * 262_144 + 1):
        data = np.random.default_rng(size).bytes(size)
        assert a.request("put", data) == MemoryStorage().put(data), size


def test_get_of_a_cid_nobody_has_fails_within_its_timeout(peers: list[PeerProcess]) -> None:
    """A missing CID is a BlobNotFoundError after the timeout, not a hang; the peer keeps working."""
    b = peers[1]
    missing = MemoryStorage().put(b"nobody stored this " + str(time.time()).encode())
    started = time.monotonic()
    with pytest.raises(PeerError) as exc:
        b.request("get", missing, 3.0)
    elapsed = time.monotonic() - started
    assert exc.value.kind == "BlobNotFoundError"
    assert 3.0 <= elapsed < 10.0
    assert b.request("get", b.request("put", b"still alive"), 5.0) == b"still alive"


def test_corrupted_and_truncated_blobs_fetched_from_a_peer_are_rejected(peers: list[PeerProcess]) -> None:
    """Blobs that are valid IPFS content but damaged partitions never decode."""
    a, b = peers[0], peers[1]
    blob = bytearray(_partition_blob(1, seed=2))
    blob[-5] ^= 0xFF
    corrupted = b.request("get", a.request("put", bytes(blob)), 30.0)
    with pytest.raises(BlobIntegrityError):
        decode_partition(corrupted)
    truncated = b.request("get", a.request("put", bytes(blob[:-4])), 30.0)
    with pytest.raises(BlobFormatError):
        decode_partition(truncated)


def test_peer_config_on_disk_has_no_bootstrap_and_only_loopback(peers: list[PeerProcess]) -> None:
    """Each repo's config: empty Bootstrap, loopback swarm, API/gateway off, MDNS/NAT/relay/AutoNAT off."""
    for peer in peers:
        config = json.loads((peer.repo / "config").read_text())
        assert config["Bootstrap"] == []
        assert config["Addresses"]["Swarm"] == ["/ip4/127.0.0.1/tcp/0"]
        assert config["Addresses"]["API"] == [] and config["Addresses"]["Gateway"] == []
        assert config["Discovery"]["MDNS"]["Enabled"] is False
        assert config["Routing"]["Type"] == "none"
        assert config["Swarm"]["DisableNatPortMap"] is True
        assert config["AutoNAT"]["ServiceMode"] == "disabled"
        assert config["Swarm"]["RelayClient"]["Enabled"] is False
        assert sorted(config["Swarm"]["AddrFilters"]) == sorted(NON_LOOPBACK_RANGES)
        assert all(a.startswith("/ip4/127.0.0.1/tcp/") for a in peer.multiaddrs)
        # Blocks are written without an fsync each, and the repo (running) still opens with it.
        flatfs = [m["child"] for m in config["Datastore"]["Spec"]["mounts"] if m["child"]["type"] == "flatfs"]
        assert flatfs and all(child["sync"] is False for child in flatfs)


def test_peer_processes_have_only_loopback_sockets(peers: list[PeerProcess]) -> None:
    """Every TCP/UDP socket of every peer process is bound to or connected with 127.0.0.1."""
    out = subprocess.run(["ss", "-H", "-tuanp"], capture_output=True, text=True, check=True).stdout
    for peer in peers:
        lines = [line.split() for line in out.splitlines() if f"pid={peer.pid}," in line]
        assert lines, "the peer should at least listen"
        for fields in lines:
            for endpoint in (fields[4], fields[5]):
                host = endpoint.rsplit(":", 1)[0]
                assert host.startswith("127.") or (host in ("*", "0.0.0.0") and endpoint == fields[5]), fields


def test_dialing_a_non_loopback_address_is_refused_before_any_network_call(peers: list[PeerProcess]) -> None:
    """connect() rejects anything but /ip4/127.0.0.1/tcp/PORT/p2p/ID."""
    for address in ("/ip4/10.0.0.1/tcp/4001/p2p/" + peers[0].peer_id, "/dns4/example.org/tcp/4001", "/ip6/::1/tcp/1"):
        with pytest.raises(PeerError) as exc:
            peers[1].request("connect", address)
        assert exc.value.kind == "StorageError"


def test_swarm_port_in_use_is_a_start_error(tmp_path: Path) -> None:
    """Asking for a taken port fails with StorageStartError naming the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PeerError) as exc:
            PeerProcess(tmp_path / "repo", port=port)
    assert exc.value.kind == "StorageStartError" and str(port) in str(exc.value)


def test_unsafe_config_is_refused(tmp_path: Path) -> None:
    """check_safe_config rejects a config with bootstrap peers or a public swarm address."""
    from fl_chain.storage.kubo_config import check_safe_config, safe_config_patch

    config = safe_config_patch(0)
    config["Bootstrap"] = ["/dnsaddr/bootstrap.example/p2p/QmX"]
    config["Addresses"]["Swarm"] = ["/ip4/0.0.0.0/tcp/4001"]
    (tmp_path / "config").write_text(json.dumps(config))
    with pytest.raises(StorageStartError, match="Bootstrap is not empty.*not loopback"):
        check_safe_config(tmp_path)
    assert issubclass(StorageStartError, StorageError)
