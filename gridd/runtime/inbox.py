"""The inbox between a subscription's reader thread and a node's message loop.

Bounded in bytes, not messages: a node blocked in a training must not buffer gigabytes of
1 MB messages. Every limit is applied in the reader thread *before* a message is queued, so
refused bytes are never held: a message over the mode's size limit, a sender over its
message or byte rate (token buckets), a sender already holding more than its share of the
queue, or a full queue. Each refusal is counted by reason; nothing is ever raised at the
reader.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gridd.runtime.bounded import BoundedMap, TokenBucket
from gridd.transport import Message

MiB = 1024 * 1024


@dataclass(frozen=True)
class InboxLimits:
    """What one node accepts from the network; the defaults suit tree and compute topics."""

    max_message_bytes: int = 128 * 1024  # modes lower or raise it to their largest message
    max_bytes: int = 32 * MiB  # everything queued
    max_messages: int = 20_000
    sender_rate: float = 50.0  # messages per second, sustained, per sender
    sender_burst: float = 500.0
    sender_bytes_rate: float = 1 * MiB  # bytes per second, sustained, per sender
    sender_bytes_burst: float = 8 * MiB
    sender_share: float = 0.25  # of max_bytes one sender may have queued at once
    max_senders: int = 4096  # senders tracked; the least recently heard is forgotten

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1 or self.max_bytes < self.max_message_bytes:
            raise ValueError("need 1 <= max_message_bytes <= max_bytes")
        if not 0 < self.sender_share <= 1:
            raise ValueError("sender_share must be in (0, 1]")


@dataclass
class _Sender:
    messages: TokenBucket
    bytes: TokenBucket
    queued: int = 0


class BoundedInbox:
    """A thread-safe FIFO of messages with the limits above; `get` blocks with a timeout."""

    def __init__(self, limits: InboxLimits | None = None,
                 on_drop: Callable[[str, Message], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or InboxLimits()
        self.clock = clock
        self.bytes = 0
        self.dropped: dict[str, int] = {}
        self._on_drop = on_drop
        self._queue: deque[Message] = deque()
        self._senders: BoundedMap[str, _Sender] = BoundedMap(self.limits.max_senders, lru=True)
        self._cond = threading.Condition()
        self._pokes = 0

    def offer(self, msg: Message) -> str | None:
        """Queue `msg` unless a limit refuses it; returns the refusal reason or None."""
        size = len(msg.data)
        lim = self.limits
        with self._cond:
            reason = self._refusal(msg, size, lim)
            if reason is None:
                self._queue.append(msg)
                self.bytes += size
                self._senders[msg.sender].queued += size
                self._cond.notify()
            else:
                self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if reason is not None and self._on_drop is not None:
            self._on_drop(reason, msg)
        return reason

    def _refusal(self, msg: Message, size: int, lim: InboxLimits) -> str | None:
        if size > lim.max_message_bytes:
            return "oversized"
        now = self.clock()
        sender = self._senders.get(msg.sender)
        if sender is None:
            sender = _Sender(TokenBucket(lim.sender_rate, lim.sender_burst, now),
                             TokenBucket(lim.sender_bytes_rate, lim.sender_bytes_burst, now))
            self._senders[msg.sender] = sender
        if sender.queued + size > lim.sender_share * lim.max_bytes:
            return "sender_share"
        if not sender.messages.take(1, now) or not sender.bytes.take(size, now):
            return "rate"
        if self.bytes + size > lim.max_bytes or len(self._queue) >= lim.max_messages:
            return "full"
        return None

    def get(self, timeout: float | None = None) -> Message | None:
        """The oldest message; None after `timeout` seconds or when `poke`d."""
        with self._cond:
            if not self._queue:
                pokes = self._pokes
                self._cond.wait_for(lambda: self._queue or self._pokes != pokes, timeout)
                if not self._queue:
                    return None
            msg = self._queue.popleft()
            size = len(msg.data)
            self.bytes -= size
            sender = self._senders.get(msg.sender)
            if sender is not None:
                sender.queued = max(0, sender.queued - size)
            return msg

    def poke(self) -> None:
        """Wake a waiting `get` (other work, such as a finished fetch, is ready)."""
        with self._cond:
            self._pokes += 1
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._queue)
