"""Best-effort publishing that never blocks a message loop.

Publishing is an HTTP call to the local Kubo daemon: fast when it is up, up to a timeout
when it is stuck. So a node hands messages to one publisher thread through a queue bounded
in messages and bytes, and the thread publishes them in order (which keeps "store, log,
then announce" ordering). A full queue or a failed publish is counted and logged, never
raised: pubsub is best-effort, and peers re-announce their state periodically anyway.
Brokers that never block (the in-memory one) publish inline, so the lab stays synchronous.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from gridd.transport import Broker

log = logging.getLogger(__name__)

MAX_QUEUED = 1_000
MAX_QUEUED_BYTES = 16 * 1024 * 1024
LOG_EVERY = 30.0  # seconds between repeated "publish failed" warnings


class Outbox:
    """Publishes to one topic of `broker`; see the module docstring."""

    def __init__(self, broker: Broker, topic: str, *, inline: bool,
                 on_error: Callable[[str], None] | None = None, name: str = "outbox",
                 prepare: Callable[[bytes], bytes] | None = None) -> None:
        """`prepare` turns a queued message into what is sent (signing it: a Kubo call, so
        it runs in the publisher thread, not in the caller's loop)."""
        self.broker = broker
        self.prepare = prepare
        self.topic = topic
        self.inline = inline
        self.published = 0
        self._on_error = on_error
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._busy = False
        self._closed = False
        self._last_log = -LOG_EVERY
        self._thread: threading.Thread | None = None
        if not inline:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def publish(self, data: bytes) -> bool:
        """Queue (or, inline, send) one message; False if it was dropped or failed."""
        try:
            self.broker.check_size(data)  # a programming error, not a network one
        except ValueError as e:
            self._failed("oversized", e)
            return False
        if self.inline:
            return self._send(data)
        with self._cond:
            if self._closed:
                return False
            full = len(self._queue) >= MAX_QUEUED or self._bytes + len(data) > MAX_QUEUED_BYTES
            if not full:
                self._queue.append(data)
                self._bytes += len(data)
                self._cond.notify_all()
        if full:
            self._failed("queue_full", RuntimeError("the publish queue is full"))
            return False
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued was handed to the broker; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float = 2.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return
                data = self._queue.popleft()
                self._bytes -= len(data)
                self._busy = True
            try:
                self._send(data)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _send(self, data: bytes) -> bool:
        try:
            if self.prepare is not None:
                data = self.prepare(data)
            self.broker.publish(self.topic, data)
        except Exception as e:  # Kubo down for a moment: the next announcement re-sends state
            self._failed("error", e)
            return False
        self.published += 1
        return True

    def _failed(self, reason: str, error: BaseException) -> None:
        if self._on_error is not None:
            self._on_error(reason)
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY:
            self._last_log = now
            log.warning("publish on %s failed (%s): %s", self.topic, reason, error)
