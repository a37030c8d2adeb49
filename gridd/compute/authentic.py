"""Who sent a compute message, and is it fresh: checked before any field is read.

Kubo verifies the pubsub sender of a live message, but anyone can re-publish bytes they
recorded, and a restarted node has forgotten what it saw. So every compute message is
sealed with its author's signature and stamped with its sending time, and a receiver:

1. checks the signature against the author the seal names (a message altered or claimed
   for someone else fails: `bad_signature`; a plain envelope: `unsigned`). The author is
   who the message is from, whichever daemon relayed it;
2. refuses a time outside the window (`stale` older than WINDOW s, `future` more than
   SKEW s ahead);
3. refuses an exact message it accepted before (`replayed`, a digest set over the window);
4. after a restart, refuses anything a sender signed no later than the newest message it
   had accepted from that sender (`replayed`): those high-water marks are persisted in
   `state_path` (atomically; at most every SAVE_GAP s, and at stop), so recorded messages
   replayed after a restart are refused even inside the window. Senders re-send offers and
   heartbeats with fresh times, so refusing old ones costs an honest peer nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridd.compute import protocol as p
from gridd.runtime import BoundedMap
from gridd.wire import WireError

log = logging.getLogger(__name__)

WINDOW = 300.0  # seconds a message stays acceptable after it was sent
SKEW = 60.0  # seconds a sender's clock may be ahead of ours
SAVE_GAP = 0.5  # seconds between writes of the high-water marks
MAX_SENDERS = 4_096
MAX_SEEN = 100_000

Verifier = Callable[[str, bytes, bytes], bool]


class Refused(WireError):
    """A message refused by authentication; `reason` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Authenticator:
    """See the module docstring. Thread-safe."""

    def __init__(self, verify: Verifier, *, state_path: Path | None = None,
                 window: float = WINDOW, skew: float = SKEW,
                 clock: Callable[[], float] = time.time) -> None:
        self.verify = verify
        self.state_path = Path(state_path) if state_path is not None else None
        self.window = window
        self.skew = skew
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: BoundedMap[bytes, float] = BoundedMap(MAX_SEEN)  # digest -> ts
        self._hwm: BoundedMap[str, float] = BoundedMap(MAX_SENDERS, lru=True)
        self._floor: dict[str, float] = self._load()  # marks from before the restart
        self._dirty = False
        self._saved_at = 0.0

    def open(self, data: bytes) -> tuple[str, str, dict[str, Any]]:
        """(author, type, body) of an authentic, fresh message; raises WireError (Refused)
        if it is not."""
        envelope, signature, sender = p.unseal(data)
        if not self.verify(sender, envelope, signature):
            raise Refused("bad_signature", f"not signed by its author {sender[:60]}")
        kind, body = p.unpack(envelope)
        ts = float(body["ts"])
        now = self.clock()
        if ts < now - self.window:
            raise Refused("stale", f"{kind} sent {now - ts:.0f}s ago (window {self.window:.0f}s)")
        if ts > now + self.skew:
            raise Refused("future", f"{kind} dated {ts - now:.0f}s ahead of this clock")
        digest = hashlib.sha256(envelope).digest()
        with self._lock:
            if digest in self._seen:
                raise Refused("replayed", f"{kind} from {sender[:60]} was received before")
            if ts <= self._floor.get(sender, 0.0):
                raise Refused("replayed", f"{kind} from {sender[:60]} predates a restart "
                              "(older than what was accepted before it)")
            self._seen[digest] = ts
            if ts > self._hwm.get(sender, 0.0):
                self._hwm[sender] = ts
                self._dirty = True
        return sender, kind, body

    def prune(self) -> None:
        """Forget digests older than the window (the window refuses those anyway)."""
        horizon = self.clock() - self.window
        with self._lock:
            self._seen.prune(lambda _, ts: ts < horizon)

    def save(self, force: bool = False) -> None:
        """Persist the high-water marks (atomic); no more often than SAVE_GAP s."""
        if self.state_path is None:
            return
        now = time.monotonic()
        with self._lock:
            if not self._dirty or (not force and now - self._saved_at < SAVE_GAP):
                return
            marks = {**self._floor, **dict(self._hwm.items())}
            self._dirty = False
            self._saved_at = now
        tmp = self.state_path.with_suffix(".tmp")
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump({"version": 1, "marks": marks}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
        except OSError as e:
            log.warning("could not save replay marks to %s: %s", self.state_path, e)

    def _load(self) -> dict[str, float]:
        if self.state_path is None or not self.state_path.exists():
            return {}
        try:
            data = json.loads(self.state_path.read_text())
            marks = data["marks"]
            floor = {str(k): float(v) for k, v in list(marks.items())[:MAX_SENDERS]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("ignoring unreadable replay marks in %s: %s", self.state_path, e)
            return {}
        log.info("loaded replay marks of %d senders from %s", len(floor), self.state_path)
        return floor
