"""Broker (pub/sub) and Store (content by CID): the two things gridd needs from a network.

`IpfsBroker`/`IpfsStore` run on a real Kubo daemon. `MemoryNetwork` gives the same interface in
one process, for simulations with hundreds of peers and for fast unit tests. Both have the same
semantics: a publisher receives its own messages, delivery is best-effort to current
subscribers, messages over the size cap are refused before sending, `sender` is set by the
network (never by the message), and content is addressed by a hash of its bytes.
"""

from __future__ import annotations

import base64
import hashlib
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gridd import identity
from gridd.ipfs import (
    ContentTooLarge,
    ContentUnavailable,
    KuboClient,
    NoTopicPeers,
    PubsubMessage,
    Subscription,
)
from gridd.wire import MAX_BLOB_BYTES, MAX_MESSAGE_BYTES


class MessageTooLarge(ValueError):
    """A publish over the cap: refused locally, because Kubo would drop it silently."""


@dataclass(frozen=True)
class Message:
    topic: str
    data: bytes
    sender: str  # verified by the network layer (Kubo's `from`), never read from the payload


Sink = Callable[[Message], object]
"""Receives each message in the network's thread (the node runtime's byte-bounded inbox)."""


@dataclass(frozen=True)
class Connectivity:
    """What `Broker.maintain` found: subscribed peers, re-dials made, daemon reachable."""

    topic_peers: int
    redialed: int = 0
    reachable: bool = True


class Inbox(ABC):
    """One subscription: messages in arrival order (`get`), or handed to a sink."""

    topic: str

    @abstractmethod
    def get(self, timeout: float | None = None) -> Message | None: ...

    @abstractmethod
    def close(self) -> None: ...

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return True

    @property
    def alive(self) -> bool:
        """False when the reader died (the runtime's watchdog then calls restart())."""
        return True

    def restart(self) -> None:  # noqa: B027 (a reader that cannot die has nothing to do)
        """Start reading again after the reader died."""


class Broker(ABC):
    peer_id: str
    max_message_size: int = MAX_MESSAGE_BYTES
    blocking: bool = True
    """Whether publish/topic_peers may wait on a network (then the runtime calls them from
    its own threads, never from a message loop)."""

    def check_size(self, data: bytes) -> None:
        if len(data) > self.max_message_size:
            raise MessageTooLarge(
                f"message of {len(data)} bytes is over the {self.max_message_size}-byte pubsub "
                "limit; put large content in the store and send its CID"
            )

    @abstractmethod
    def publish(self, topic: str, data: bytes) -> None: ...

    @abstractmethod
    def subscribe(self, topic: str, sink: Sink | None = None) -> Inbox: ...

    @abstractmethod
    def topic_peers(self, topic: str) -> list[str]: ...

    @abstractmethod
    def sign(self, data: bytes) -> bytes:
        """This peer's signature over `data` (Ed25519, as Kubo's `key sign` makes it)."""

    def verify(self, author: str, data: bytes, signature: bytes) -> bool:
        """Whether `signature` is `author`'s over `data`; offline, from the peer id."""
        return identity.verify(author, data, signature)

    def maintain(self, topics: Sequence[str]) -> Connectivity:
        """Keep connected to the peers of `topics` (re-dial the lost); called periodically
        from a background thread. The default only counts topic peers."""
        peers: set[str] = set()
        for topic in topics:
            peers.update(self.topic_peers(topic))
        return Connectivity(len(peers))

    def wait_for_peers(self, topic: str, min_peers: int = 1, timeout: float = 10.0) -> list[str]:
        """Block until min_peers others subscribe to topic; NoTopicPeers (with the fix) if not."""
        deadline = time.monotonic() + timeout
        while True:
            peers = self.topic_peers(topic)
            if len(peers) >= min_peers:
                return peers
            if time.monotonic() >= deadline:
                raise NoTopicPeers(topic)
            time.sleep(0.05)


class Store(ABC):
    blocking: bool = True
    """Whether get() may wait on a network (then the runtime fetches in its pool)."""

    @abstractmethod
    def put(self, data: bytes, pin: bool = True, name: str | None = None) -> str:
        """Store bytes, pinned (under `name`, see gridd.pins) unless pin=False; the CID."""

    @abstractmethod
    def get(self, cid: str, max_size: int = MAX_BLOB_BYTES, timeout: float = 60.0) -> bytes: ...

    @abstractmethod
    def pin(self, cid: str, name: str | None = None, rename: bool = True) -> None:
        """Pin (a pinned CID is renamed when `name` differs, unless rename=False: then a
        CID pinned already keeps its pin and name, e.g. another identity's on one daemon)."""

    @abstractmethod
    def unpin(self, cid: str) -> None: ...

    def pins(self, prefix: str = "gridd:") -> dict[str, str]:
        """Pins whose name starts with `prefix`: {cid: name} (the app's record of its pins)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no pin names")

    def size(self, cid: str) -> int:
        """Bytes of the content of `cid` (all its blocks)."""
        raise NotImplementedError(f"{type(self).__name__} cannot size content")


# -- IPFS ----------------------------------------------------------------------------------------


class _IpfsInbox(Inbox):
    def __init__(self, client: KuboClient, topic: str, sink: Sink | None = None) -> None:
        self.topic = topic

        def deliver(m: PubsubMessage) -> object:
            assert sink is not None
            return sink(Message(topic, m.data, m.sender))

        self._sub = Subscription(client, topic, sink=deliver if sink is not None else None)

    def get(self, timeout: float | None = None) -> Message | None:
        m: PubsubMessage | None = self._sub.get(timeout)
        return None if m is None else Message(self.topic, m.data, m.sender)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return self._sub.wait_ready(timeout)

    def close(self) -> None:
        self._sub.close()

    @property
    def alive(self) -> bool:
        return self._sub.alive

    def restart(self) -> None:
        self._sub.restart()

    @property
    def subscription(self) -> Subscription:
        return self._sub


class IpfsBroker(Broker):
    """Pubsub on a Kubo daemon. With `key` (a role key, gridd.ipfs.roles), this process
    speaks and signs as that key's peer id instead of the daemon's, so several gridd
    processes on one daemon are distinct peers."""

    def __init__(self, client: KuboClient, key: Any = None) -> None:
        self.client = client
        self.key = key
        self.daemon_id = client.id().peer_id
        self.peer_id = key.peer_id if key is not None else self.daemon_id
        self._peering: Any = None

    def publish(self, topic: str, data: bytes) -> None:
        self.check_size(data)
        self.client.pubsub_pub(topic, data)

    def subscribe(self, topic: str, sink: Sink | None = None) -> Inbox:
        return _IpfsInbox(self.client, topic, sink)

    def topic_peers(self, topic: str) -> list[str]:
        return self.client.pubsub_peers(topic)

    def sign(self, data: bytes) -> bytes:
        return self.client.key_sign(data, key=self.key.name if self.key is not None else None)

    def maintain(self, topics: Sequence[str]) -> Connectivity:
        """Remember the topics' peers and re-dial those lost (Kubo restart, partition)."""
        if self._peering is None:
            from gridd.ipfs.peering import TopicPeering

            self._peering = TopicPeering(self.client)
        status = self._peering.check(list(topics))
        return Connectivity(status.topic_peers, status.redialed, status.reachable)


class IpfsStore(Store):
    def __init__(self, client: KuboClient) -> None:
        self.client = client

    def put(self, data: bytes, pin: bool = True, name: str | None = None) -> str:
        return self.client.add_bytes(data, pin=pin, pin_name=name)

    def get(self, cid: str, max_size: int = MAX_BLOB_BYTES, timeout: float = 60.0) -> bytes:
        return self.client.cat(cid, max_size=max_size, timeout=timeout)

    def pin(self, cid: str, name: str | None = None, rename: bool = True) -> None:
        if not rename and self.client.pin_name(cid) is not None:
            return
        self.client.pin_add(cid, name=name)

    def unpin(self, cid: str) -> None:
        self.client.pin_rm(cid)

    def pins(self, prefix: str = "gridd:") -> dict[str, str]:
        named = self.client.pin_ls_names(prefix)
        return {cid: name for cid, name in named.items() if name.startswith(prefix)}

    def size(self, cid: str) -> int:
        return self.client.dag_sizes([cid])[cid]


# -- memory --------------------------------------------------------------------------------------


def raw_cid(data: bytes) -> str:
    """CIDv1, raw codec, sha2-256, base32: what `ipfs add --cid-version=1` gives a small blob."""
    digest = hashlib.sha256(data).digest()
    return "b" + base64.b32encode(b"\x01\x55\x12\x20" + digest).decode().lower().rstrip("=")


class _MemoryInbox(Inbox):
    def __init__(self, net: MemoryNetwork, topic: str, sink: Sink | None = None) -> None:
        self.topic = topic
        self._net = net
        self._sink = sink
        self._queue: queue.Queue[Message] = queue.Queue()

    def deliver(self, msg: Message) -> None:
        if self._sink is not None:
            self._sink(msg)
        else:
            self._queue.put_nowait(msg)

    def get(self, timeout: float | None = None) -> Message | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._net._unsubscribe(self)


class MemoryNetwork:
    """An in-process pubsub + content network shared by many simulated peers."""

    def __init__(self, max_message_size: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message_size = max_message_size
        self._lock = threading.Lock()
        self._subs: dict[str, list[tuple[str, _MemoryInbox]]] = {}
        self._blobs: dict[str, bytes] = {}
        self.messages_sent = 0
        self.keyring = identity.Keyring()  # each named peer signs with its own key

    def broker(self, peer_id: str) -> MemoryBroker:
        return MemoryBroker(self, peer_id)

    def store(self) -> MemoryStore:
        return MemoryStore(self)

    def _subscribe(self, peer_id: str, topic: str, sink: Sink | None = None) -> _MemoryInbox:
        inbox = _MemoryInbox(self, topic, sink)
        with self._lock:
            self._subs.setdefault(topic, []).append((peer_id, inbox))
        return inbox

    def _unsubscribe(self, inbox: _MemoryInbox) -> None:
        with self._lock:
            subs = self._subs.get(inbox.topic, [])
            self._subs[inbox.topic] = [(p, i) for p, i in subs if i is not inbox]

    def _publish(self, sender: str, topic: str, data: bytes) -> None:
        msg = Message(topic, bytes(data), sender)
        with self._lock:
            targets = [i for _, i in self._subs.get(topic, [])]
            self.messages_sent += 1
        for inbox in targets:
            inbox.deliver(msg)

    def _peers(self, topic: str, exclude: str) -> list[str]:
        with self._lock:
            return sorted({p for p, _ in self._subs.get(topic, []) if p != exclude})


class MemoryBroker(Broker):
    blocking = False

    def __init__(self, net: MemoryNetwork, peer_id: str) -> None:
        self.net = net
        self.peer_id = peer_id
        self.max_message_size = net.max_message_size

    def publish(self, topic: str, data: bytes) -> None:
        self.check_size(data)
        self.net._publish(self.peer_id, topic, data)

    def subscribe(self, topic: str, sink: Sink | None = None) -> Inbox:
        return self.net._subscribe(self.peer_id, topic, sink)

    def topic_peers(self, topic: str) -> list[str]:
        return self.net._peers(topic, exclude=self.peer_id)

    def sign(self, data: bytes) -> bytes:
        return self.net.keyring.sign(self.peer_id, data)

    def verify(self, author: str, data: bytes, signature: bytes) -> bool:
        return self.net.keyring.verify(author, data, signature)


class MemoryStore(Store):
    """Content shared by every peer of the network (as if IPFS always found a provider)."""

    blocking = False

    def __init__(self, net: MemoryNetwork) -> None:
        self.net = net
        self.pinned: set[str] = set()
        self.names: dict[str, str] = {}  # pinned cid -> pin name ("" unnamed), as Kubo's

    def put(self, data: bytes, pin: bool = True, name: str | None = None) -> str:
        cid = raw_cid(data)
        with self.net._lock:
            self.net._blobs[cid] = bytes(data)
        if pin:
            self._pin(cid, name)
        return cid

    def _pin(self, cid: str, name: str | None) -> None:
        self.pinned.add(cid)
        self.names[cid] = name or ""  # as Kubo: pinning again without a name clears it

    def get(self, cid: str, max_size: int = MAX_BLOB_BYTES, timeout: float = 60.0) -> bytes:
        with self.net._lock:
            data = self.net._blobs.get(cid)
        if data is None:
            raise ContentUnavailable(cid, "not in the in-memory store")
        if len(data) > max_size:
            raise ContentTooLarge(f"content {cid}", len(data), max_size)
        return data

    def pin(self, cid: str, name: str | None = None, rename: bool = True) -> None:
        self.get(cid)
        if rename or cid not in self.pinned:
            self._pin(cid, name)

    def unpin(self, cid: str) -> None:
        self.pinned.discard(cid)
        self.names.pop(cid, None)

    def pins(self, prefix: str = "gridd:") -> dict[str, str]:
        return {cid: name for cid, name in self.names.items() if name.startswith(prefix)}

    def size(self, cid: str) -> int:
        return len(self.get(cid))
