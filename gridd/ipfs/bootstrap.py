"""Bootstrap peers: the multiaddrs a node dials at start and keeps connected, so joining a
group needs no `gridd peers connect` by hand.

Two layers, because they fail differently:

* **The daemon** (`bin/start_ipfs --bootstrap`, `kubo_peering`): the peers go into Kubo's own
  `Peering.Peers`. Kubo then connects at start, re-dials a lost peering peer (5 s, growing to
  minutes), protects the connection from its connection manager, and keeps doing so across
  daemon restarts because the list lives in the repo's config, with no gridd process running.
  Kubo's `Bootstrap` list is not used: it is only dialled while the daemon has few peers, so
  on a node that knows the public network it would never reach our group.
* **The worker** (`start_worker --bootstrap`, `BootstrapKeeper`): the peers are *pinned* in a
  `TopicPeering`, so gridd dials them at once and re-dials with its own backoff (1 s doubling
  to 30 s) from a thread of the worker. This works on a daemon gridd did not configure (a
  shared or managed Kubo) and heals within seconds of a partition ending, where Kubo's peering
  backoff may wait minutes (see gridd/ipfs/peering.py).

Once one connection exists, the rest of a group is found through the shared topic: gossipsub
relays through the bootstrap peer, and TopicPeering remembers and re-dials topic peers.

An address must name its peer (`.../p2p/<peer id>`), as libp2p dials only a known identity;
a malformed entry is refused at start with the entry and the reason (`BootstrapError`); an
unreachable one is logged and retried while the node runs without it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import base58
import httpx

from gridd.ipfs.client import KuboClient
from gridd.ipfs.errors import IPFSError
from gridd.ipfs.peering import TopicPeering

log = logging.getLogger("gridd.bootstrap")

BOOTSTRAP_ENV = "GRIDD_BOOTSTRAP"
MAX_ENTRIES = 64  # a bootstrap list is a handful of well-known peers, not a peer database
MAX_ENTRY_CHARS = 1024
CHECK_INTERVAL = 1.0  # seconds between connectivity checks: the backoff starts at 1 s

_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
# protocol -> kind of value it takes (None: no value)
_PROTOCOLS: dict[str, str | None] = {
    "ip4": "ip4", "ip6": "ip6", "dns": "host", "dns4": "host", "dns6": "host",
    "dnsaddr": "host", "tcp": "port", "udp": "port", "quic": None, "quic-v1": None,
    "ws": None, "wss": None, "tls": None, "noise": None, "sni": "host",
    "p2p": "peer", "ipfs": "peer", "p2p-circuit": None, "webtransport": None,
}


class BootstrapError(ValueError):
    """A bootstrap entry that is not a dialable peer address; the message names it."""


@dataclass(frozen=True)
class BootstrapPeer:
    """One peer of the list: its id and the addresses (without /p2p/<id>) it was given."""

    peer_id: str
    addrs: tuple[str, ...]

    @property
    def multiaddrs(self) -> list[str]:
        return [f"{a}/p2p/{self.peer_id}" for a in self.addrs]


def split_entries(text: str) -> list[str]:
    """`GRIDD_BOOTSTRAP`'s form: entries separated by commas and/or whitespace."""
    return [e for e in re.split(r"[,\s]+", text or "") if e]


def check_peer_id(text: str) -> str:
    """A base58 peer id (12D3KooW..., Qm..., 16Uiu2...): ValueError with the reason if not."""
    if not 40 <= len(text) <= 100:
        raise ValueError(f"peer id {text!r} has the wrong length")
    try:
        raw = base58.b58decode(text)
    except ValueError:
        raise ValueError(f"peer id {text!r} is not base58") from None
    if len(raw) < 2 or raw[0] not in (0x00, 0x12) or raw[1] != len(raw) - 2:
        raise ValueError(f"peer id {text!r} is not a multihash of a public key")
    if raw[0] == 0x12 and raw[1] != 32:
        raise ValueError(f"peer id {text!r}: a sha2-256 peer id has 32 bytes")
    return text


def parse_multiaddr(entry: str) -> tuple[str, str]:
    """Split `/ip4/1.2.3.4/tcp/4001/p2p/<id>` into (transport address, peer id)."""
    if len(entry) > MAX_ENTRY_CHARS:
        raise BootstrapError(f"bootstrap address {entry[:60]!r}... is longer than "
                             f"{MAX_ENTRY_CHARS} characters")

    def bad(reason: str) -> BootstrapError:
        return BootstrapError(f"bootstrap address {entry!r}: {reason} (expected e.g. "
                              "/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...; `gridd peers` on "
                              "that machine prints its addresses)")

    if not entry.startswith("/"):
        raise bad("a multiaddr starts with '/'")
    parts = entry.split("/")[1:]
    if parts and parts[-1] == "":
        parts.pop()
    i, peer_at = 0, -1
    while i < len(parts):
        proto = parts[i]
        if proto not in _PROTOCOLS:
            raise bad(f"unknown protocol {proto!r}")
        kind = _PROTOCOLS[proto]
        if kind is None:
            i += 1
            continue
        if i + 1 >= len(parts) or parts[i + 1] == "":
            raise bad(f"/{proto} needs a value")
        value = parts[i + 1]
        try:
            if kind == "ip4":
                ipaddress.IPv4Address(value)
            elif kind == "ip6":
                ipaddress.IPv6Address(value)
            elif kind == "host" and not _HOST.match(value):
                raise ValueError(f"{value!r} is not a host name")
            elif kind == "port" and not (value.isdigit() and 0 < int(value) < 65536):
                raise ValueError(f"port {value!r} is not in 1..65535")
            elif kind == "peer":
                check_peer_id(value)
                peer_at = i
        except ValueError as e:
            raise bad(f"/{proto}: {e}") from None
        i += 2
    if peer_at < 0 or peer_at != len(parts) - 2:
        raise bad("it does not end with /p2p/<peer id> (libp2p dials only a known peer)")
    transport = "/" + "/".join(parts[:peer_at])
    if transport == "/":
        raise bad("it has no transport address before /p2p/")
    return transport, parts[peer_at + 1]


def parse_bootstrap(entries: Iterable[str]) -> list[BootstrapPeer]:
    """Entries (each may hold several, comma/space separated) -> peers, addresses grouped
    per peer id in the order given. Raises BootstrapError naming the first bad entry."""
    flat = [e for raw in entries for e in split_entries(raw)]
    if len(flat) > MAX_ENTRIES:
        raise BootstrapError(f"{len(flat)} bootstrap addresses; at most {MAX_ENTRIES}")
    grouped: dict[str, list[str]] = {}
    for entry in flat:
        addr, peer = parse_multiaddr(entry)
        addrs = grouped.setdefault(peer, [])
        if addr not in addrs:
            addrs.append(addr)
    return [BootstrapPeer(p, tuple(a)) for p, a in grouped.items()]


def bootstrap_entries(flags: Sequence[str] = (), env: Mapping[str, str] | None = None,
                      config: Sequence[str] | str | None = None) -> list[str]:
    """The list in force: flags if any were given, else $GRIDD_BOOTSTRAP, else the config."""
    if flags:
        return list(flags)
    value = (env or {}).get(BOOTSTRAP_ENV, "")
    if value.strip():
        return [value]
    if isinstance(config, str):
        return [config]
    return list(config or ())


class BootstrapKeeper:
    """Dials the bootstrap peers at start and keeps them connected from a daemon thread.

    Built on TopicPeering (pinned peers, no topics): the same dial timeout, parallelism and
    backoff as the re-dialling of topic peers. `start()` makes the first attempt before it
    returns, so a worker's log says at once whether its bootstrap peers answered; an
    unreachable peer is a warning, never fatal.
    """

    def __init__(self, client: KuboClient, peers: Sequence[BootstrapPeer],
                 interval: float = CHECK_INTERVAL, peering: TopicPeering | None = None) -> None:
        self.client = client
        self.peers = list(peers)
        self.interval = interval
        self.peering = peering or TopicPeering(client)
        for p in self.peers:
            self.peering.pin(p.peer_id, p.addrs)
        self._state: dict[str, tuple[bool, int]] = {}  # peer -> (connected, drops) logged
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> BootstrapKeeper:
        self.check()
        self._thread = threading.Thread(target=self._run, name="bootstrap", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def connected(self) -> dict[str, bool]:
        """Peer id -> connected at the last check."""
        return {p: s.connected for p, s in self.peering.pinned().items()}

    def check(self) -> dict[str, bool]:
        """One round: dial what is due, log what changed, return who is connected."""
        status = self.peering.check([])
        if not status.reachable:
            log.debug("bootstrap: daemon unreachable (%s); will retry", status.error)
            return self.connected()
        by_id = {p.peer_id: p for p in self.peers}
        for peer, s in self.peering.pinned().items():
            before, drops = self._state.get(peer, (None, 0))
            if s.drops > drops:
                log.warning("bootstrap: lost the connection to %s; re-dialling", peer)
            if s.connected and (before is not True or s.drops > drops):
                log.info("bootstrap: connected to %s", peer)
            elif not s.connected and s.failures and before is None:
                first = by_id[peer].multiaddrs[0] if peer in by_id else peer
                log.warning("bootstrap peer %s is unreachable (%s); retrying with backoff "
                            "(1 s doubling to 30 s) while this node runs without it",
                            first, s.last_error)
            elif not (not s.connected and before is True):
                self._state[peer] = (before if before is not None else s.connected, s.drops)
                continue
            self._state[peer] = (s.connected, s.drops)
        return self.connected()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the keeper must outlive any surprise; say it once per round
                log.exception("bootstrap: connectivity check failed")


def start_keeper(api: str | None, peers: Sequence[BootstrapPeer]) -> BootstrapKeeper | None:
    """Start a BootstrapKeeper on the daemon at `api` (None when the list is empty)."""
    if not peers:
        return None
    client = KuboClient(api, timeout=15.0)
    own = client.id().peer_id  # one list for a whole group names us too: skip ourselves
    others = [p for p in peers if p.peer_id != own]
    return BootstrapKeeper(client, others).start() if others else None


# -- the daemon's own peering (bin/start_ipfs) -------------------------------------------------


def peering_config(existing: object, peers: Sequence[BootstrapPeer]) -> list[dict[str, object]]:
    """Kubo's Peering.Peers with `peers` merged in (their addresses replace older ones)."""
    out: dict[str, dict[str, object]] = {}
    for item in existing if isinstance(existing, list) else []:
        if isinstance(item, dict) and isinstance(item.get("ID"), str):
            out[item["ID"]] = {"ID": item["ID"], "Addrs": list(item.get("Addrs") or [])}
    for p in peers:
        out[p.peer_id] = {"ID": p.peer_id, "Addrs": list(p.addrs)}
    return list(out.values())


def write_peering_config(config_path: str, peers: Sequence[BootstrapPeer]) -> None:
    """Merge `peers` into Peering.Peers of a repo's config file (daemon stopped or not: a
    running daemon reads it at its next start)."""
    with open(config_path) as f:
        config = json.load(f)
    peering = config.setdefault("Peering", {}) or {}
    config["Peering"] = peering
    peering["Peers"] = peering_config(peering.get("Peers"), peers)
    tmp = config_path + ".gridd-tmp"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
    os.replace(tmp, config_path)


def add_live_peering(client: KuboClient, peers: Sequence[BootstrapPeer]) -> None:
    """Tell a running daemon to peer with `peers` now (`swarm/peering/add`)."""
    for p in peers:
        client.request("swarm/peering/add", [("arg", a) for a in p.multiaddrs])


def wait_connected(client: KuboClient, peers: Sequence[BootstrapPeer],
                   timeout: float) -> list[BootstrapPeer]:
    """Dial each peer once now (Kubo's peering may wait seconds before its first attempt),
    then poll until every peer is connected or `timeout` passes; returns those missing."""
    deadline = time.monotonic() + timeout
    for p in peers:  # one dial each, all within the deadline (a dead peer can hang a dial)
        left = min(10.0, deadline - time.monotonic())
        if left < 0.5:
            break
        try:
            client.swarm_connect_peer(p.peer_id, p.addrs, timeout=left)
        except (IPFSError, httpx.HTTPError) as e:
            log.debug("bootstrap: first dial of %s failed: %s", p.peer_id, e)
    missing = list(peers)
    while True:
        try:
            connected = {p for p, _ in client.swarm_peers()}
        except (IPFSError, httpx.HTTPError):
            connected = set()
        missing = [p for p in peers if p.peer_id not in connected]
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(0.2)
