"""A small typed client for Kubo's RPC (POST /api/v0/...) on httpx.

Why not ipfshttpclient: its 0.7.0 release refuses every Kubo >= 0.8 and its pubsub calls fail on
Kubo >= 0.11 (see DESIGN.md). This client covers exactly what gridd uses.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from gridd.ipfs import multibase
from gridd.ipfs.address import ApiAddress, parse_api_address
from gridd.ipfs.errors import (
    ContentTooLarge,
    ContentUnavailable,
    IPFSApiError,
    IPFSUnreachable,
    PubsubDisabled,
)

DEFAULT_CAT_LIMIT = 256 * 1024 * 1024
# Receivers validate a sender's seqnos on several goroutines at once (go-libp2p-pubsub's
# BasicSeqnoValidator with NumCPU workers) and drop any message whose seqno is not above the
# highest seen so far: two publishes arriving microseconds apart can be checked out of order
# and the older one is lost. A short gap between publishes from one daemon avoids that race.
MIN_PUBLISH_GAP = 0.005
_PUBLISH_LOCKS: dict[str, threading.Lock] = {}
_LAST_PUBLISH: dict[str, float] = {}
_PUBLISH_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class PubsubMessage:
    """One pubsub message as Kubo delivers it; `sender` is Kubo's verified `from` peer id."""

    sender: str
    data: bytes
    seqno: bytes
    topics: tuple[str, ...]


@dataclass(frozen=True)
class NodeId:
    peer_id: str
    addresses: tuple[str, ...]
    agent: str


@dataclass(frozen=True)
class RepoStat:
    """`repo/stat`: bytes the repo takes, Datastore.StorageMax, number of blocks."""

    size: int
    storage_max: int
    objects: int


def _publish_lock(base_url: str) -> threading.Lock:
    """Kubo >= 0.40 drops a peer's messages whose seqno does not increase: publish serially."""
    with _PUBLISH_LOCKS_GUARD:
        return _PUBLISH_LOCKS.setdefault(base_url, threading.Lock())


def _is_pubsub_disabled(message: str) -> bool:
    m = message.lower()
    return "pubsub" in m and ("not enabled" in m or "experiment" in m or "disabled" in m)


class KuboClient:
    """Typed access to one Kubo daemon. Thread-safe; cheap to create."""

    def __init__(self, api: str | ApiAddress | None = None, timeout: float = 30.0) -> None:
        self.address = api if isinstance(api, ApiAddress) else parse_api_address(api)
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.address.url + "/api/v0",
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KuboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unreachable(self, cause: Exception | str = "") -> IPFSUnreachable:
        return IPFSUnreachable(self.address.host, self.address.port, str(cause))

    def _check(self, endpoint: str, resp: httpx.Response) -> httpx.Response:
        if resp.status_code == 200:
            return resp
        try:
            message = resp.json().get("Message", resp.text)
        except (ValueError, AttributeError):
            message = resp.text
        if endpoint.startswith("pubsub/") and _is_pubsub_disabled(message):
            raise PubsubDisabled(message)
        raise IPFSApiError(endpoint, resp.status_code, message.strip())

    def request(
        self,
        endpoint: str,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        files: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        try:
            resp = self._http.post(
                endpoint, params=params, files=files,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as e:
            raise self.unreachable(e) from e
        except httpx.ReadError as e:
            raise self.unreachable(e) from e
        return self._check(endpoint, resp)

    def rpc(self, endpoint: str, **params: Any) -> Any:
        resp = self.request(endpoint, {k.replace("_", "-"): v for k, v in params.items()})
        return resp.json() if resp.content else None

    # -- node ---------------------------------------------------------------------------------

    def id(self) -> NodeId:
        d = self.rpc("id")
        return NodeId(d["ID"], tuple(d.get("Addresses") or ()), d.get("AgentVersion", ""))

    def version(self) -> str:
        return str(self.rpc("version")["Version"])

    def config_get(self, key: str) -> Any:
        return self.rpc("config", arg=key)["Value"]

    def swarm_connect(self, multiaddr: str) -> None:
        self.request("swarm/connect", {"arg": multiaddr}, timeout=self.timeout)

    def swarm_peers(self) -> list[tuple[str, str]]:
        """Connected peers as (peer id, remote multiaddr)."""
        d = self.rpc("swarm/peers") or {}
        return [(p["Peer"], p.get("Addr", "")) for p in d.get("Peers") or []]

    def swarm_addrs(self) -> dict[str, list[str]]:
        """Addresses the daemon's peerstore knows per peer (listen addresses learned through
        identify, plus dialled ones); lost when the daemon restarts."""
        known = (self.rpc("swarm/addrs") or {}).get("Addrs") or {}
        return {str(p): [str(a) for a in addrs or []] for p, addrs in known.items()}

    def swarm_connect_peer(self, peer_id: str, addrs: Sequence[str], timeout: float = 10.0
                           ) -> None:
        """Dial one peer on any of its addresses (Kubo tries them together and clears its own
        dial backoff for the peer first); IPFSApiError when no address answers in time."""
        args: list[tuple[str, Any]] = [("arg", f"{a}/p2p/{peer_id}") for a in addrs]
        args.append(("timeout", f"{timeout}s"))
        self.request("swarm/connect", args, timeout=timeout + 5)

    def swarm_addrs_local(self) -> list[str]:
        """Own listen addresses with /p2p/<id>: the form `ipfs swarm connect` takes."""
        d = self.rpc("swarm/addrs/local", id="true") or {}
        return list(d.get("Strings") or [])

    # -- content --------------------------------------------------------------------------------

    def add_bytes(self, data: bytes, pin: bool = True, pin_name: str | None = None) -> str:
        params = {"pin": str(pin).lower(), "cid-version": "1", "quieter": "true"}
        if pin and pin_name:
            params["pin-name"] = pin_name
        resp = self.request(
            "add",
            params,
            files={"file": ("blob", data, "application/octet-stream")},
            timeout=max(self.timeout, 60.0),
        )
        last = resp.text.strip().splitlines()[-1]
        return str(json.loads(last)["Hash"])

    def cat(self, cid: str, max_size: int = DEFAULT_CAT_LIMIT, timeout: float = 60.0) -> bytes:
        """Fetch content by CID, reading at most max_size bytes (ContentTooLarge beyond)."""
        params = {"arg": cid, "length": str(max_size + 1), "timeout": f"{timeout}s"}
        chunks: list[bytes] = []
        total = 0
        try:
            with self._http.stream(
                "POST", "cat", params=params,
                timeout=httpx.Timeout(timeout + 5, connect=5.0),
            ) as resp:
                if resp.status_code != 200:
                    resp.read()
                    try:
                        self._check("cat", resp)
                    except IPFSApiError as e:
                        raise ContentUnavailable(cid, e.message) from e
                for chunk in resp.iter_bytes(1 << 20):
                    total += len(chunk)
                    if total > max_size:
                        raise ContentTooLarge(f"content {cid}", total, max_size)
                    chunks.append(chunk)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise self.unreachable(e) from e
        except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError) as e:
            raise ContentUnavailable(cid, f"{type(e).__name__}: {e}") from e
        return b"".join(chunks)

    def pin_add(self, cid: str, timeout: float = 120.0, name: str | None = None) -> None:
        """Pin recursively; `name` names the pin (renames it if the CID is pinned already)."""
        params = {"arg": cid, "timeout": f"{timeout}s"}
        if name:
            params["name"] = name
        self.request("pin/add", params, timeout=timeout + 5)

    def pin_rm(self, cid: str) -> None:
        self.request("pin/rm", {"arg": cid})

    def pin_ls(self) -> set[str]:
        d = self.rpc("pin/ls", type="recursive") or {}
        return set((d.get("Keys") or {}).keys())

    # -- keys -----------------------------------------------------------------------------------

    def key_list(self) -> dict[str, str]:
        """{key name: peer id (12D3KooW... for Ed25519)} of the daemon's keystore."""
        d = self.rpc("key/list", ipns_base="b58mh") or {}
        return {k["Name"]: k["Id"] for k in d.get("Keys") or []}

    def key_gen(self, name: str) -> str:
        """Create an Ed25519 key named `name` in the daemon's keystore; its peer id."""
        d = self.rpc("key/gen", arg=name, type="ed25519", ipns_base="b58mh")
        return str(d["Id"])

    def key_sign(self, data: bytes, key: str | None = None) -> bytes:
        """Sign `data` with the node's key (or a named one): Kubo signs "libp2p-key signed
        message:" + data with Ed25519; gridd.identity.verify checks it offline."""
        params = {"key": key} if key else {}
        resp = self.request("key/sign", params,
                            files={"file": ("data", data, "application/octet-stream")})
        return multibase.decode(resp.json()["Signature"])

    # -- pubsub ---------------------------------------------------------------------------------

    def pubsub_pub(self, topic: str, data: bytes, retries: int = 8) -> None:
        """Publish serially per daemon, MIN_PUBLISH_GAP apart; retry 'validation ignored'."""
        key = self.address.url
        lock = _publish_lock(key)
        delay = 0.02
        for attempt in range(retries + 1):
            with lock:
                wait = _LAST_PUBLISH.get(key, 0.0) + MIN_PUBLISH_GAP - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    self.request(
                        "pubsub/pub", {"arg": multibase.encode(topic)},
                        files={"file": ("data", data, "application/octet-stream")},
                    )
                    return
                except IPFSApiError as e:
                    if "validation ignored" not in e.message or attempt == retries:
                        raise
                finally:
                    _LAST_PUBLISH[key] = time.monotonic()
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def pubsub_ls(self) -> list[str]:
        d = self.rpc("pubsub/ls") or {}
        return [multibase.decode(t).decode(errors="replace") for t in d.get("Strings") or []]

    def pubsub_peers(self, topic: str) -> list[str]:
        d = self.rpc("pubsub/peers", arg=multibase.encode(topic)) or {}
        return list(d.get("Strings") or [])

    def pubsub_stream(
        self,
        topic: str,
        http: httpx.Client | None = None,
        on_open: Callable[[httpx.Response], None] | None = None,
    ) -> Iterator[PubsubMessage]:
        """Yield messages of one subscription until the stream ends (no read timeout).

        on_open receives the live response, so another thread can shut its socket down.
        """
        client = http or self._http
        try:
            with client.stream(
                "POST", self.address.url + "/api/v0/pubsub/sub",
                params={"arg": multibase.encode(topic)},
                timeout=httpx.Timeout(None, connect=5.0),
            ) as resp:
                if resp.status_code != 200:
                    resp.read()
                    self._check("pubsub/sub", resp)
                if on_open is not None:
                    on_open(resp)
                for line in resp.iter_lines():
                    if line.strip():
                        yield parse_pubsub_line(line)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise self.unreachable(e) from e


    # -- named pins and the repo (storage accounting, retention) ---------------------------

    def pin_ls_names(self, contains: str | None = None) -> dict[str, str]:
        """Recursive pins with their names, {cid: name}; `contains` filters names (Kubo
        matches a substring), "" lists unnamed pins too."""
        params: dict[str, Any] = {"type": "recursive", "names": "true"}
        if contains:
            params["name"] = contains
        d = self.rpc("pin/ls", **params) or {}
        return {cid: str(v.get("Name") or "") for cid, v in (d.get("Keys") or {}).items()}

    def pin_name(self, cid: str) -> str | None:
        """The name of `cid`'s recursive pin ("" unnamed), or None if it is not pinned."""
        try:
            d = self.rpc("pin/ls", arg=cid, type="recursive", names="true") or {}
        except IPFSApiError as e:
            if "not pinned" in e.message:
                return None
            raise
        entry = (d.get("Keys") or {}).get(cid)
        return None if entry is None else str(entry.get("Name") or "")

    def dag_sizes(self, cids: Sequence[str], batch: int = 200) -> dict[str, int]:
        """Total bytes of each CID's DAG (`dag/stat`, many CIDs per call)."""
        sizes: dict[str, int] = {}
        for i in range(0, len(cids), batch):
            args: list[tuple[str, Any]] = [("arg", c) for c in cids[i:i + batch]]
            args.append(("progress", "false"))
            d = self.request("dag/stat", args, timeout=max(self.timeout, 60.0)).json()
            for entry in d.get("DagStats") or []:
                sizes[str(entry["Cid"])] = int(entry.get("Size") or 0)
        return sizes

    def repo_stat(self, count_objects: bool = True) -> RepoStat:
        """Repo size and StorageMax; counting blocks walks the whole repo (slower)."""
        d = self.request("repo/stat", {"size-only": str(not count_objects).lower()},
                         timeout=max(self.timeout, 60.0)).json()
        return RepoStat(int(d.get("RepoSize", 0)), int(d.get("StorageMax", 0)),
                        int(d.get("NumObjects", 0)))

    def repo_gc(self, timeout: float = 600.0) -> int:
        """Run garbage collection now; returns how many blocks were removed."""
        resp = self.request("repo/gc", {"quiet": "true"}, timeout=timeout)
        return sum(1 for line in resp.text.splitlines() if line.strip())


def parse_pubsub_line(line: str) -> PubsubMessage:
    d = json.loads(line)
    return PubsubMessage(
        sender=str(d.get("from", "")),
        data=multibase.decode(d.get("data", "")),
        seqno=multibase.decode(d.get("seqno", "")),
        topics=tuple(
            multibase.decode(t).decode(errors="replace") for t in d.get("topicIDs") or []
        ),
    )
