"""Staying connected to the peers of our topics across Kubo restarts and long partitions.

Kubo never re-dials a peer whose connection dropped: with Routing "none" (the lab) nothing
looks it up again, and on the public network the DHT only finds it by chance. A peer whose
daemon restarted, or that was cut off for longer than the muxer's keepalive (~40 s of
silence closes a yamux session), would then train alone forever. `TopicPeering` remembers who
was subscribed to our topics and where they listen, and re-dials them with per-peer
exponential backoff.

Why our own dialling and not Kubo's peering subsystem (`swarm/peering/add`):

* Backoff we can live with: Kubo's peering waits 5 s before the first attempt and grows its
  delay 1.5-2.5x per failure up to 10 minutes, so after a 3-minute cut the next attempt can
  come minutes after the network healed; ours doubles from 1 s and stops at 30 s (measured:
  with 60 s, two hosts cut for 3 minutes took up to 84 s after the heal to converge).
* It survives the daemon: peering added over RPC lives only in the daemon's memory, as does
  its peerstore, so a restarted Kubo knows neither the peers nor their addresses and would need
  a restart detector plus re-assertion. Here the memory sits in the gridd process and a
  restart is just "everybody is disconnected": every remembered peer is due at once.
* Bounded and observable: the set is capped (peering would grow until we `peering rm`), and
  each check reports how many re-dials it made, which the runtime turns into a metric.

What we give up is the connection manager's protection of peering peers; `swarm/connect`
tags the peer instead ("user-connect", weight 100) and gossipsub tags its mesh peers, so the
connection manager trims them last.

A gridd restart forgets the remembered addresses (they are not persisted): the configured
bootstrap / `gridd peers connect` brings the first peer back, and the rest follows from it.
Bootstrap peers are *pinned* here (`pin`): dialled at once, with the same backoff, never
forgotten or evicted, their configured addresses always tried first (gridd/ipfs/bootstrap.py).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from gridd.ipfs.client import KuboClient
from gridd.ipfs.errors import IPFSError, IPFSUnreachable

MAX_PEERS = 256  # remembered topic peers; the least recently seen is forgotten first
MAX_ADDRS = 8  # addresses kept per peer (public nodes announce a dozen transports)
BACKOFF_START = 1.0  # seconds before the first retry after a failed dial
BACKOFF_MAX = 30.0  # the longest wait between two dials of one peer (and after a heal)
FORGET_AFTER = 6 * 3600.0  # a peer not seen connected for this long is forgotten
DIAL_TIMEOUT = 5.0  # per dial: a partition drops packets silently, so a dial can hang
MAX_DIALS = 8  # dials per check, run in parallel: check() returns within ~DIAL_TIMEOUT


@dataclass(frozen=True)
class PeeringStatus:
    """What one `TopicPeering.check` saw and did.

    topic_peers: distinct peers the daemon lists as subscribed to any of the topics, counted
        before this check's dials (a peer re-dialled now shows up in the next check, once
        its subscription has been exchanged). 0 with reachable=True means messages reach
        nobody: the moment to warn.
    redialed: dials of remembered, disconnected topic peers attempted by this check.
    reconnected: how many of those dials succeeded.
    remembered: topic peers currently remembered (bounded by MAX_PEERS).
    reachable: False when the daemon's API did not answer (then nothing else was done).
    error: the first RPC error of a reachable daemon (e.g. pubsub disabled), else None.
    """

    reachable: bool
    topic_peers: int = 0
    redialed: int = 0
    reconnected: int = 0
    remembered: int = 0
    error: str | None = None


@dataclass(frozen=True)
class PinnedStatus:
    """A pinned peer after a check: connected (also if re-dialled by it), failed dials in a
    row, how often it was found lost after being connected, and the last dial error."""

    connected: bool
    failures: int
    drops: int
    last_error: str | None


@dataclass
class _Peer:
    addrs: tuple[str, ...]
    last_seen: float
    failures: int = 0
    next_dial: float = 0.0  # monotonic time before which we do not dial again
    last_error: str | None = None  # why the last dial failed, for debugging
    pinned: tuple[str, ...] = ()  # configured (bootstrap) addresses: never forgotten
    connected: bool = False  # connected at the last check (bootstrap logging)
    drops: int = 0  # times a check found it disconnected after it had been connected


class TopicPeering:
    """Remembers our topics' peers and re-dials the lost ones; one instance per daemon.

    Keep the instance for the life of the node: what it remembers is the whole point (a new
    instance per check would know nobody after a restart). `check()` is meant for a
    background thread every few seconds: it makes a handful of RPC calls plus at most
    MAX_DIALS parallel dials of DIAL_TIMEOUT each, and never raises.
    """

    def __init__(
        self,
        client: KuboClient,
        max_peers: int = MAX_PEERS,
        max_addrs: int = MAX_ADDRS,
        backoff_start: float = BACKOFF_START,
        backoff_max: float = BACKOFF_MAX,
        forget_after: float = FORGET_AFTER,
        dial_timeout: float = DIAL_TIMEOUT,
        max_dials: int = MAX_DIALS,
    ) -> None:
        self.client = client
        self.max_peers = max_peers
        self.max_addrs = max_addrs
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.forget_after = forget_after
        self.dial_timeout = dial_timeout
        self.max_dials = max_dials
        self._peers: OrderedDict[str, _Peer] = OrderedDict()  # least recently seen first
        self._daemon_was_down = False
        self._lock = threading.Lock()

    def remembered(self) -> dict[str, tuple[str, ...]]:
        """Remembered peers and their addresses (a copy)."""
        with self._lock:
            return {p: r.addrs for p, r in self._peers.items()}

    def pin(self, peer: str, addrs: Sequence[str]) -> None:
        """Keep `peer` connected whatever its topics: a bootstrap peer. Its configured
        `addrs` (transport parts, no /p2p/) are dialled first; it is due at once."""
        with self._lock:
            rec = self._peers.pop(peer, None) or _Peer(addrs=(), last_seen=time.monotonic())
            rec.pinned = tuple(dict.fromkeys(addrs))
            rec.addrs = tuple(dict.fromkeys((*rec.pinned, *rec.addrs)))[
                : max(self.max_addrs, len(rec.pinned))]
            rec.failures, rec.next_dial = 0, 0.0
            self._peers[peer] = rec

    def pinned(self) -> dict[str, PinnedStatus]:
        """The pinned (bootstrap) peers and how their connections went."""
        with self._lock:
            return {p: PinnedStatus(r.connected, r.failures, r.drops, r.last_error)
                    for p, r in self._peers.items() if r.pinned}

    def check(self, topics: Sequence[str]) -> PeeringStatus:
        """Count the topics' peers, remember them and re-dial the lost ones that are due."""
        with self._lock:
            try:
                return self._check(list(topics))
            except (IPFSUnreachable, httpx.HTTPError) as e:
                self._daemon_was_down = True
                return PeeringStatus(reachable=False, remembered=len(self._peers),
                                     error=str(e).splitlines()[0])
            except IPFSError as e:
                return PeeringStatus(reachable=True, remembered=len(self._peers),
                                     error=str(e).splitlines()[0])

    def _check(self, topics: list[str]) -> PeeringStatus:
        connected = {peer: addr for peer, addr in self.client.swarm_peers()}
        now = time.monotonic()
        if self._daemon_was_down:
            # The daemon came back: it is a new process with no connections and an empty
            # peerstore, so every remembered peer is worth a dial right now.
            self._daemon_was_down = False
            for rec in self._peers.values():
                rec.failures, rec.next_dial = 0, 0.0
        error: str | None = None
        subscribed: set[str] = set()
        for topic in topics:
            try:
                subscribed.update(self.client.pubsub_peers(topic))
            except IPFSUnreachable:
                raise
            except IPFSError as e:
                error = error or str(e).splitlines()[0]
        if subscribed:
            self._remember(subscribed, connected, self.client.swarm_addrs(), now)
        for peer, rec in self._peers.items():
            if rec.connected and peer not in connected:
                rec.drops += 1
            rec.connected = peer in connected
            if rec.connected:  # connected, topic peer or not: nothing to retry
                rec.failures, rec.next_dial = 0, 0.0
        self._forget_stale(now)
        due = sorted(
            (p for p, r in self._peers.items()
             if p not in connected and r.addrs and r.next_dial <= now),
            key=lambda p: self._peers[p].next_dial,
        )[: self.max_dials]
        reconnected = sum(self._dial_all(due))
        return PeeringStatus(reachable=True, topic_peers=len(subscribed), redialed=len(due),
                             reconnected=reconnected, remembered=len(self._peers),
                             error=error)

    def _remember(self, subscribed: set[str], connected: dict[str, str],
                  known: dict[str, list[str]], now: float) -> None:
        """Refresh subscribed peers' addresses from the peerstore; evict beyond max_peers."""
        for peer in subscribed:
            addrs = list(dict.fromkeys(a for a in known.get(peer, []) if "/p2p/" not in a
                                       or "/p2p-circuit" in a))
            live = connected.get(peer)
            if live in addrs:  # the address that works now goes first
                addrs.remove(live)
                addrs.insert(0, live)
            rec = self._peers.pop(peer, None)
            if rec is None:
                rec = _Peer(addrs=(), last_seen=now)
            if addrs:
                learned = tuple(dict.fromkeys((*rec.pinned, *addrs)))
                rec.addrs = learned[: max(self.max_addrs, len(rec.pinned))]
            rec.last_seen = now
            self._peers[peer] = rec  # most recently seen last
        unpinned = [p for p, r in self._peers.items() if not r.pinned]
        for peer in unpinned[: max(0, len(self._peers) - self.max_peers)]:
            del self._peers[peer]  # least recently seen first; bootstrap peers stay

    def _forget_stale(self, now: float) -> None:
        for peer in [p for p, r in self._peers.items()
                     if not r.pinned and now - r.last_seen > self.forget_after]:
            del self._peers[peer]

    def _dial_all(self, peers: list[str]) -> list[bool]:
        if not peers:
            return []
        jobs = [(p, self._peers[p].addrs) for p in peers]
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="redial") as pool:
            results = list(pool.map(lambda job: self._dial(*job), jobs))
        now = time.monotonic()
        for (peer, _), err in zip(jobs, results, strict=True):
            rec = self._peers.get(peer)
            if rec is None:
                continue
            if err is None:
                rec.failures, rec.next_dial, rec.last_error, rec.last_seen = 0, 0.0, None, now
                rec.connected = True
            else:
                rec.failures += 1
                delay = self.backoff_start * 2.0 ** min(rec.failures - 1, 30)
                rec.next_dial = now + min(delay, self.backoff_max)
                rec.last_error = err
        return [err is None for err in results]

    def _dial(self, peer: str, addrs: tuple[str, ...]) -> str | None:
        """None on success, else the reason (never raises: one bad peer must not stop others)."""
        try:
            self.client.swarm_connect_peer(peer, addrs, timeout=self.dial_timeout)
            return None
        except (IPFSError, httpx.HTTPError) as e:
            return str(e).splitlines()[0]
