"""The foreign node of the attack benchmark: a plain Kubo daemon driven by raw RPC calls.

Why no gridd code here: the attacker must not inherit any politeness of gridd's own client
(publish pacing, retries, size checks, schema validation before sending). Everything below
is Kubo's documented HTTP RPC (POST /api/v0/..., topics as multibase base64url, pubsub data
as a multipart file) spoken with httpx, so the bytes that reach honest nodes are exactly the
bytes an attack function built.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

RAW_SHA256_CIDV1 = b"\x01\x55\x12\x20"  # CIDv1, raw codec, sha2-256, 32-byte digest


def multibase_topic(topic: str) -> str:
    """Kubo wants topics in `arg` as multibase base64url ('u', no padding)."""
    return "u" + base64.urlsafe_b64encode(topic.encode()).decode().rstrip("=")


def _unmultibase(text: str) -> bytes:
    if not text:
        return b""
    prefix, body = text[0], text[1:]
    if prefix == "u":
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    if prefix == "m":
        return base64.b64decode(body + "=" * (-len(body) % 4))
    raise ValueError(f"unexpected multibase prefix {prefix!r}")


def raw_cid(digest: bytes) -> str:
    """The CIDv1 (raw, sha2-256, base32) Kubo gives a small blob with this SHA-256 digest."""
    return "b" + base64.b32encode(RAW_SHA256_CIDV1 + digest).decode().lower().rstrip("=")


def unserved_cid(seed_bytes: bytes) -> str:
    """A well-formed CID of bytes nobody ever added: fetching it can only time out."""
    return raw_cid(hashlib.sha256(b"gridd-attack-unserved:" + seed_bytes).digest())


def api_url(multiaddr: str) -> str:
    """http://host:port of an /ip4/<host>/tcp/<port> API multiaddr."""
    parts = multiaddr.strip("/").split("/")
    if len(parts) < 4 or parts[0] not in ("ip4", "ip6") or parts[2] != "tcp":
        raise ValueError(f"not an /ip4/<host>/tcp/<port> multiaddr: {multiaddr!r}")
    host = parts[1] if parts[0] == "ip4" else f"[{parts[1]}]"
    return f"http://{host}:{parts[3]}"


@dataclass(frozen=True)
class Heard:
    """One pubsub message the foreign node received from someone else."""

    topic: str
    sender: str
    data: bytes
    at: float


class Watch:
    """A raw pubsub/sub stream of one topic read by a thread; skips our own echoes cheaply.

    Listeners are called on the reader thread for every message from someone else (they
    must be quick: queue or count, never publish); `recent` keeps the last ones for replay.
    """

    def __init__(self, node: ForeignNode, topic: str, keep: int = 500) -> None:
        self.node = node
        self.topic = topic
        self.recent: collections.deque[Heard] = collections.deque(maxlen=keep)
        self.heard = 0
        self.listeners: list[Callable[[Heard], None]] = []
        self._closed = threading.Event()
        self._response: httpx.Response | None = None
        self._open = threading.Event()
        self._own_prefix = ('{"from":"' + node.peer_id).encode()
        self._thread = threading.Thread(target=self._run, name=f"foreign-watch:{topic}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                with httpx.Client(timeout=httpx.Timeout(None, connect=5.0)) as http, \
                        http.stream("POST", f"{self.node.url}/api/v0/pubsub/sub",
                                    params={"arg": multibase_topic(self.topic)}) as resp:
                    self._response = resp
                    self._open.set()
                    buf = b""
                    for chunk in resp.iter_raw():
                        if self._closed.is_set():
                            return
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            self._line(line)
            except (httpx.HTTPError, OSError, ValueError):
                pass
            finally:
                self._open.clear()
            self._closed.wait(0.2)

    def _line(self, line: bytes) -> None:
        if not line.strip() or line.startswith(self._own_prefix):
            return  # our own flood comes back to us: never parse a megabyte for nothing
        try:
            d = json.loads(line)
            heard = Heard(self.topic, str(d.get("from", "")), _unmultibase(d.get("data", "")),
                          time.monotonic())
        except (ValueError, TypeError):
            return
        if heard.sender == self.node.peer_id:
            return
        self.heard += 1
        self.recent.append(heard)
        for listener in list(self.listeners):
            try:
                listener(heard)
            except Exception:  # an attack's bug must not stop the watch
                pass

    def listen(self, listener: Callable[[Heard], None]) -> None:
        self.listeners.append(listener)

    def queue(self, maxsize: int = 5_000) -> queue.Queue[Heard]:
        """A bounded queue fed with every message heard from now on (full = dropped)."""
        q: queue.Queue[Heard] = queue.Queue(maxsize=maxsize)

        def put(h: Heard) -> None:
            try:
                q.put_nowait(h)
            except queue.Full:
                pass

        self.listeners.append(put)
        return q

    def wait_open(self, timeout: float = 10.0) -> bool:
        return self._open.wait(timeout)

    def close(self) -> None:
        self._closed.set()
        resp = self._response
        if resp is not None:  # unblock a read that has no timeout: shut the socket down
            stream = resp.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(2.0)


class ForeignNode:
    """RPC access to the attacker's own Kubo daemon (thread-safe; one HTTP pool)."""

    def __init__(self, api: str, timeout: float = 30.0) -> None:
        self.url = api_url(api) if api.startswith("/") else api.rstrip("/")
        self._http = httpx.Client(base_url=self.url + "/api/v0",
                                  timeout=httpx.Timeout(timeout, connect=5.0),
                                  limits=httpx.Limits(max_connections=16))
        self.peer_id = str(self._post("id").json()["ID"])
        self.published = 0
        self.publish_errors = 0
        self.bytes_published = 0
        self.signed = 0
        self._lock = threading.Lock()

    def _post(self, endpoint: str, **kw: object) -> httpx.Response:
        resp = self._http.post(endpoint, **kw)  # type: ignore[arg-type]
        if resp.status_code != 200:
            raise RuntimeError(f"{endpoint}: HTTP {resp.status_code}: {resp.text[:200]}")
        return resp

    def pub(self, topic: str, data: bytes) -> bool:
        """One publish, no pacing and no retry: an attacker sends as fast as Kubo accepts."""
        try:
            self._post("pubsub/pub", params={"arg": multibase_topic(topic)},
                       files={"file": ("data", data, "application/octet-stream")})
        except (RuntimeError, httpx.HTTPError):
            with self._lock:
                self.publish_errors += 1
            return False
        with self._lock:
            self.published += 1
            self.bytes_published += len(data)
        return True

    def sign(self, data: bytes, key: str | None = None) -> bytes:
        """Kubo's key/sign with this node's own key (or `key`, a keystore name): Ed25519
        over "libp2p-key signed message:" + data; the answer is multibase base64url."""
        params = {"key": key} if key else {}
        resp = self._post("key/sign", params=params,
                          files={"file": ("data", data, "application/octet-stream")})
        with self._lock:
            self.signed += 1
        return _unmultibase(str(resp.json()["Signature"]))

    def key(self, name: str) -> str:
        """The peer id of keystore key `name`, created (Ed25519) if it does not exist yet:
        one more identity for the same daemon, signing with `sign(data, key=name)`."""
        keys = self._post("key/list", params={"ipns-base": "b58mh"}).json().get("Keys") or []
        for k in keys:
            if k.get("Name") == name:
                return str(k["Id"])
        made = self._post("key/gen", params={"arg": name, "type": "ed25519",
                                             "ipns-base": "b58mh"}).json()
        return str(made["Id"])

    def add(self, data: bytes) -> str:
        """Add and pin a blob on the foreign node (CIDv1, raw leaves); its CID."""
        resp = self._post("add", params={"pin": "true", "cid-version": "1", "quieter": "true"},
                          files={"file": ("blob", data, "application/octet-stream")},
                          timeout=120.0)
        return str(json.loads(resp.text.strip().splitlines()[-1])["Hash"])

    def cat(self, cid: str, limit: int, timeout: float = 30.0) -> bytes:
        resp = self._post("cat", params={"arg": cid, "length": str(limit),
                                         "timeout": f"{timeout}s"}, timeout=timeout + 5)
        return resp.content

    def topic_peers(self, topic: str) -> set[str]:
        d = self._post("pubsub/peers", params={"arg": multibase_topic(topic)}).json() or {}
        return set(d.get("Strings") or [])

    def wait_topic_peers(self, topic: str, peers: set[str], timeout: float = 30.0) -> bool:
        """Until every id in `peers` is known subscribed to `topic` (messages then arrive)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if peers <= self.topic_peers(topic):
                    return True
            except (RuntimeError, httpx.HTTPError):
                pass
            time.sleep(0.1)
        return False

    def watch(self, topic: str) -> Watch:
        return Watch(self, topic)

    def counters(self) -> tuple[int, int, int, int]:
        """(published, publish errors, bytes published, signatures made)."""
        with self._lock:
            return self.published, self.publish_errors, self.bytes_published, self.signed

    def close(self) -> None:
        self._http.close()
