"""How gridd names its pins in Kubo, so that it can find and release them later.

Kubo has no pin expiry: an application that wants to release content must remember what it
pinned. gridd keeps that record in Kubo itself, as named pins (`pin add --name`, Kubo >=
0.26; `pin ls --names`), so it survives restarts of gridd and of Kubo, and `gridd storage`
can account for it. Pinning a pinned CID again under another name renames the pin (a CID has
one recursive pin). The names (Kubo allows at most 255 bytes):

    gridd:tree:<genesis12>:genesis    a tangle's genesis: record, recipe, initial weights
    gridd:tree:<genesis12>:record     transaction records (small; kept)
    gridd:tree:<genesis12>:weights    weights of others' transactions (retention window)
    gridd:tree:<genesis12>:own:<peer12>
                                      weights a peer published (RETENTION_OWN newest); per
                                      identity, since peers of one tangle may share a daemon
    gridd:compute:result:<expiry>:<owner12>:<job>
                                      a worker's result (model, history); unpinned once
                                      <expiry> (unix seconds) has passed
    gridd:compute:fetched:<job>       a result the client loaded (kept)
    gridd:compute:federated:<job>     a federated job's model and global weights (the last
                                      two rounds while it runs; the final ones kept)

`<genesis12>` is the first 12 characters of the genesis id, `<peer12>` and `<owner12>` the
last 12 of a peer id (peer ids share their first characters). A CID has one pin in Kubo: a
blob two roles both pin carries the name given last.
"""

from __future__ import annotations

from typing import Any

from gridd.transport import Store
from gridd.wire import MAX_BLOB_BYTES

PREFIX = "gridd:"
TREE_KINDS = ("genesis", "record", "weights", "own")
RESULT_PREFIX = "gridd:compute:result:"
MAX_NAME = 255


def tree(genesis_id: str, kind: str) -> str:
    """The name of one kind of tree pin of one tangle."""
    if kind not in TREE_KINDS:
        raise ValueError(f"tree pin kind must be one of {TREE_KINDS}, got {kind!r}")
    return f"{tree_prefix(genesis_id)}{kind}"


def own(genesis_id: str, peer_id: str) -> str:
    """The name of the weights one peer (identity) published in one tangle."""
    return f"{tree(genesis_id, 'own')}:{peer_id[-12:]}"


def tree_prefix(genesis_id: str) -> str:
    return f"{PREFIX}tree:{genesis_id[:12]}:"


def compute_result(job: str, owner: str, expires: float) -> str:
    """A worker's result pin, carrying when it may be unpinned (survives restarts)."""
    return f"{RESULT_PREFIX}{int(expires)}:{owner[-12:]}:{job}"[:MAX_NAME]


def compute_fetched(job: str) -> str:
    return f"{PREFIX}compute:fetched:{job}"[:MAX_NAME]


def federated(job: str) -> str:
    """A federated job's model and global weights on its coordinator's daemon: the last
    two rounds' while it runs, the final ones kept after (followers fetch them)."""
    return f"{PREFIX}compute:federated:{job}"[:MAX_NAME]


def result_expiry(name: str) -> float | None:
    """When a compute result pin expires (unix seconds); None for any other name."""
    if not name.startswith(RESULT_PREFIX):
        return None
    stamp = name[len(RESULT_PREFIX):].split(":", 1)[0]
    return float(stamp) if stamp.isdigit() else None


def expired_results(pinned: dict[str, str], now: float) -> list[str]:
    """CIDs of compute result pins ({cid: name}) whose expiry has passed."""
    return sorted(cid for cid, name in pinned.items()
                  if (when := result_expiry(name)) is not None and when <= now)


def kind_of(name: str) -> str:
    """What a pin holds, for accounting: tree:<genesis12>:<kind>, compute:result, ..."""
    if not name:
        return "unnamed"
    if not name.startswith(PREFIX):
        return "other"
    parts = name[len(PREFIX):].split(":")
    if parts[0] == "tree" and len(parts) >= 3:
        return ":".join(parts[:3])
    if parts[0] == "compute" and len(parts) >= 2:
        return f"compute:{parts[1]}"
    return "other"


class NamedPins(Store):
    """A view of a store whose pins get `name` unless the caller names them otherwise.

    A tree peer gives this view to code that pins without knowing gridd's names (the
    builder storing records), so everything it pins is accounted for.
    """

    def __init__(self, inner: Store, name: str) -> None:
        self.inner = inner
        self.name = name
        self.blocking = inner.blocking

    def put(self, data: bytes, pin: bool = True, name: str | None = None) -> str:
        return self.inner.put(data, pin=pin, name=name or self.name)

    def get(self, cid: str, max_size: int = MAX_BLOB_BYTES, timeout: float = 60.0) -> bytes:
        return self.inner.get(cid, max_size=max_size, timeout=timeout)

    def pin(self, cid: str, name: str | None = None, rename: bool = True) -> None:
        self.inner.pin(cid, name=name or self.name, rename=rename)

    def unpin(self, cid: str) -> None:
        self.inner.unpin(cid)

    def pins(self, prefix: str = PREFIX) -> dict[str, str]:
        return self.inner.pins(prefix)

    def size(self, cid: str) -> int:
        return self.inner.size(cid)

    def __getattr__(self, attr: str) -> Any:  # the inner store's own API (client, pinned...)
        return getattr(self.inner, attr)
