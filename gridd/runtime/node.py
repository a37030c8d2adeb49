"""One node runtime for every mode: tree peers, compute workers and the client's dispatcher.

A `Node` owns one topic subscription and everything between it and the mode's handler:

* the pump: the subscription's reader thread hands each message to a `BoundedInbox`, which
  applies the size limit, per-sender token buckets and byte bounds before queueing;
* the loop: `step()` hands queued messages to the mode's handler on one thread (mode state
  needs no locks), runs finished fetches' callbacks, then the ticks that are due; `run()`
  repeats it until stopped. Handlers never wait on the network: they `publish` (queued for
  the outbox thread) and `fetch` (queued for the fetch pool);
* a watchdog thread: restarts a reader thread that died (counted), keeps the topic's peers
  connected through `Broker.maintain` (re-dials after a Kubo restart or a partition) and
  warns when nobody else is subscribed.

With a broker and store that never block (the in-memory network) there are no threads at
all: publishing and fetching happen inline, so a lab of a hundred peers stepped from one
loop is deterministic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from gridd.metrics import RuntimeMetrics
from gridd.runtime.fetcher import FetchFn, FetchPool, FetchResult
from gridd.runtime.inbox import BoundedInbox, InboxLimits
from gridd.runtime.outbox import Outbox
from gridd.transport import Broker, Inbox, Message

log = logging.getLogger(__name__)

Handler = Callable[[Message], None]
MAX_MESSAGES_PER_STEP = 10_000
WATCH_INTERVAL = 1.0  # seconds between reader-thread checks
MAINTAIN_INTERVAL = 5.0  # seconds between connectivity checks (topic peers, re-dials)
FETCH_WORKERS = 4


@dataclass
class _Tick:
    name: str
    interval: float
    fn: Callable[[], object]
    due: float


class Node:
    """See the module docstring. Create, `start()`, then `step()`/`run()`, then `close()`."""

    def __init__(
        self,
        broker: Broker,
        topic: str,
        handler: Handler,
        *,
        name: str = "node",
        limits: InboxLimits | None = None,
        metrics: RuntimeMetrics | None = None,
        fetch_workers: int | None = None,
        blocking: bool | None = None,
        seal: Callable[[bytes], bytes] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`seal` wraps each published message (a signature), in the publisher thread."""
        self.broker = broker
        self.topic = topic
        self.handler = handler
        self.name = name
        self.metrics = metrics if metrics is not None else RuntimeMetrics()
        self.clock = clock
        self.blocking = broker.blocking if blocking is None else blocking
        self.inbox = BoundedInbox(limits, on_drop=self._dropped)
        workers = (FETCH_WORKERS if self.blocking else 0) if fetch_workers is None \
            else fetch_workers
        self.fetcher = FetchPool(
            workers, wake=self.inbox.poke, name=f"{name}-fetch",
            on_refuse=lambda r: self.metrics.fetch_refused.labels(reason=r).inc(),
        )
        self.outbox = Outbox(
            broker, topic, inline=not self.blocking, name=f"{name}-publish",
            on_error=lambda r: self.metrics.publish_errors.labels(reason=r).inc(), prepare=seal,
        )
        self.handled = 0
        self.topic_peer_count: int | None = None  # last count the watchdog saw
        self._ticks: list[_Tick] = []
        self._after: list[Callable[[int], object]] = []
        self._subscription: Inbox | None = None
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._drop_logged: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, ready_timeout: float = 10.0) -> Node:
        """Subscribe (messages flow into the inbox from now on) and wait until the daemon
        lists the subscription, so what is published next reaches us."""
        self._subscription = self.broker.subscribe(self.topic, sink=self.inbox.offer)
        self._subscription.wait_ready(ready_timeout)
        if self.blocking:
            self._watchdog = threading.Thread(target=self._watch, name=f"{self.name}-watchdog",
                                              daemon=True)
            self._watchdog.start()
        return self

    def close(self) -> None:
        """Stop reading, flush what is queued for publishing, stop the threads."""
        self._closed.set()
        self.outbox.close()
        self.fetcher.close()
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._watchdog is not None:
            self._watchdog.join(timeout=2.0)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- what modes call -----------------------------------------------------------------------

    def every(self, seconds: float, fn: Callable[[], object], *, name: str,
              first: float | None = None) -> None:
        """Run fn on the loop thread every `seconds` (first after `first` s, default now)."""
        due = self.clock() + (0.0 if first is None else first)
        self._ticks.append(_Tick(name, seconds, fn, due))

    def after_step(self, fn: Callable[[int], object]) -> None:
        """Run fn(messages handled) on the loop thread after each step's messages and
        fetch callbacks, before the ticks (a mode's bookkeeping: queue fetches, gauges)."""
        self._after.append(fn)

    def publish(self, data: bytes) -> bool:
        """Best effort: queued for the publisher thread (inline for in-memory brokers)."""
        return self.outbox.publish(data)

    def fetch(self, key: Hashable, fn: FetchFn, *, timeout: float,
              done: Callable[[FetchResult], None], sender: str | None = None) -> str | None:
        """Run fn(seconds_left) in the fetch pool; `done` runs later on the loop thread.
        Returns None, or why the fetch was not queued."""
        return self.fetcher.submit(key, fn, timeout=timeout, done=done, sender=sender)

    # -- the loop ------------------------------------------------------------------------------

    def step(self, timeout: float = 0.0, max_messages: int = MAX_MESSAGES_PER_STEP) -> int:
        """Handle queued messages (waiting up to `timeout` for the first), run finished
        fetches' callbacks and the ticks that are due. Returns the messages handled."""
        handled = 0
        wait: float | None = max(0.0, timeout)
        while handled < max_messages:
            msg = self.inbox.get(timeout=wait)
            if msg is None:
                break
            wait = 0.0
            handled += 1
            try:
                self.handler(msg)
            except Exception:  # a bug must not kill the loop; count it and say so loudly
                self.metrics.handler_errors.inc()
                log.exception("%s: unexpected error handling a message from %s", self.name,
                              msg.sender[:60])
        self.handled += handled
        self.metrics.messages_handled.inc(handled)
        self.metrics.inbox_bytes.set(self.inbox.bytes)
        self.fetcher.run_callbacks()
        for fn in self._after:
            try:
                fn(handled)
            except Exception:
                self.metrics.handler_errors.inc()
                log.exception("%s: step hook failed; continuing", self.name)
        self.run_due_ticks()
        return handled

    def run_due_ticks(self) -> None:
        for tick in list(self._ticks):
            now = self.clock()
            if now < tick.due:
                continue
            tick.due = now + tick.interval
            try:
                tick.fn()
            except Exception:
                log.exception("%s: tick %s failed; continuing", self.name, tick.name)

    def next_due(self) -> float:
        """Seconds until the next tick is due (0 if one is due now)."""
        if not self._ticks:
            return 0.5
        return max(0.0, min(t.due for t in self._ticks) - self.clock())

    def run(self, stop: threading.Event, max_wait: float = 0.5) -> None:
        """The daemon loop: step until `stop` is set (or the node is closed)."""
        while not stop.is_set() and not self._closed.is_set():
            self.step(timeout=min(max_wait, self.next_due()))

    # -- watchdog --------------------------------------------------------------------------------

    def _watch(self) -> None:
        next_maintain = 0.0
        while not self._closed.wait(WATCH_INTERVAL):
            sub = self._subscription
            if sub is not None and not sub.alive:
                self.metrics.reader_restarts.inc()
                log.warning("%s: the subscription reader of %s died; restarting it", self.name,
                            self.topic)
                sub.restart()
            now = time.monotonic()
            if now >= next_maintain:
                next_maintain = now + MAINTAIN_INTERVAL
                self.maintain()

    def maintain(self) -> None:
        """Count topic peers and re-dial lost ones; warns when nobody else is subscribed."""
        try:
            status = self.broker.maintain([self.topic])
        except Exception as e:
            log.debug("%s: connectivity check failed: %s", self.name, e)
            return
        if status.redialed:
            self.metrics.redials.inc(status.redialed)
            log.info("%s: re-dialled %d peer(s) of %s", self.name, status.redialed, self.topic)
        before = self.topic_peer_count
        self.topic_peer_count = status.topic_peers
        self.metrics.topic_peers.set(status.topic_peers)
        if status.topic_peers == 0 and before != 0 and status.reachable:
            log.warning("%s: no other daemon is subscribed to %s: gridd processes on this "
                        "daemon hear its messages, other machines only once a peer connects "
                        "(gridd peers connect <multiaddr>)", self.name, self.topic)
        elif status.topic_peers and before == 0:
            log.info("%s: %d other daemon(s) on %s", self.name, status.topic_peers, self.topic)

    def _dropped(self, reason: str, msg: Message) -> None:
        self.metrics.messages_dropped.labels(reason=reason).inc()
        key = f"{reason}:{msg.sender}"
        if key not in self._drop_logged:
            if len(self._drop_logged) > 10_000:
                self._drop_logged.clear()
            self._drop_logged.add(key)
            log.warning("%s: dropped a %d-byte message from %s (%s)", self.name, len(msg.data),
                        msg.sender[:60], reason)
