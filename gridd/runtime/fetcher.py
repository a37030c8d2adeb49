"""Fetching off the message path: a small bounded pool with one deadline per fetch.

A message handler never waits on IPFS. It submits a fetch (a function of the seconds left)
and returns; a pool thread runs it and the result's callback runs later on the node's loop
thread (`run_callbacks`), so mode state stays single-threaded. Fairness is per sender: work
is taken round-robin across the senders it is attributed to, each sender may have only
`per_sender_inflight` fetches running and `per_sender_queued` waiting, so one sender naming
content nobody serves cannot occupy every thread. A fetch's deadline covers its wait in the
queue too: one that waited past it completes with TimeoutError without running.

With `workers=0` a fetch runs at once in the caller's thread (for stores that never block,
such as the in-memory one: the lab stays deterministic and single-threaded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

FetchFn = Callable[[float], Any]  # (seconds left) -> value; raises on failure


@dataclass
class FetchResult:
    key: Hashable
    sender: str | None
    value: Any = None
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Job:
    key: Hashable
    fn: FetchFn
    sender: str | None
    deadline: float
    done: Callable[[FetchResult], None]


class FetchPool:
    """See the module docstring. `submit` is called from the loop thread only."""

    def __init__(self, workers: int = 4, *, max_queued: int = 1024, per_sender_inflight: int = 2,
                 per_sender_queued: int = 64, wake: Callable[[], None] | None = None,
                 on_refuse: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, name: str = "fetch") -> None:
        self.workers = workers
        self.max_queued = max_queued
        self.per_sender_inflight = per_sender_inflight
        self.per_sender_queued = per_sender_queued
        self.clock = clock
        self._wake = wake
        self._on_refuse = on_refuse
        self._cond = threading.Condition()
        self._queues: OrderedDict[str | None, deque[_Job]] = OrderedDict()
        self._inflight: dict[str | None, int] = {}
        self._keys: set[Hashable] = set()  # queued or running
        self._queued = 0
        self._results: deque[tuple[FetchResult, Callable[[FetchResult], None]]] = deque()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def inline(self) -> bool:
        return self.workers == 0

    def busy(self, key: Hashable) -> bool:
        """True while a fetch under `key` is queued or running."""
        with self._cond:
            return key in self._keys

    @property
    def outstanding(self) -> int:
        with self._cond:
            return len(self._keys)

    def submit(self, key: Hashable, fn: FetchFn, *, timeout: float,
               done: Callable[[FetchResult], None], sender: str | None = None) -> str | None:
        """Queue one fetch; returns None, or why it was refused (nothing queued then)."""
        job = _Job(key, fn, sender, self.clock() + timeout, done)
        with self._cond:
            reason = self._refusal(job)
            if reason is None and not self.inline:  # inline: it runs below, at once
                self._keys.add(key)
                self._queues.setdefault(sender, deque()).append(job)
                self._queued += 1
                self._cond.notify()
        if reason is not None:
            if self._on_refuse is not None:
                self._on_refuse(reason)
            return reason
        if self.inline:
            self._finish(job, self._run(job))
        return None

    def _refusal(self, job: _Job) -> str | None:
        if self._closed:
            return "closed"
        if job.key in self._keys:
            return "duplicate"
        if self.inline:
            return None
        if self._queued >= self.max_queued:
            return "queue_full"
        if len(self._queues.get(job.sender, ())) >= self.per_sender_queued:
            return "sender_queue_full"
        return None

    def run_callbacks(self, limit: int = 100_000) -> int:
        """Run the callbacks of finished fetches in this (the loop's) thread; how many ran."""
        ran = 0
        while ran < limit:
            with self._cond:
                if not self._results:
                    break
                result, done = self._results.popleft()
            ran += 1
            try:
                done(result)
            except Exception:
                log.exception("fetch callback for %r failed", result.key)
        return ran

    def close(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._closed = True
            self._queues.clear()
            self._queued = 0
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    # -- pool threads ----------------------------------------------------------------------

    def _next(self) -> _Job | None:
        """Round-robin over senders under their in-flight cap (called with the lock held)."""
        for sender in list(self._queues):
            if self._inflight.get(sender, 0) >= self.per_sender_inflight:
                continue
            queue = self._queues.pop(sender)
            job = queue.popleft()
            if queue:
                self._queues[sender] = queue  # to the back of the rotation
            self._queued -= 1
            self._inflight[sender] = self._inflight.get(sender, 0) + 1
            return job
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                job = None
                while not self._closed:
                    job = self._next()
                    if job is not None:
                        break
                    self._cond.wait()
                if job is None:
                    return
            result = self._run(job)
            with self._cond:
                left = self._inflight.get(job.sender, 1) - 1
                if left > 0:
                    self._inflight[job.sender] = left
                else:
                    self._inflight.pop(job.sender, None)
                self._keys.discard(job.key)
                self._cond.notify_all()
            self._finish(job, result)

    def _run(self, job: _Job) -> FetchResult:
        start = self.clock()
        left = job.deadline - start
        if left <= 0:
            return FetchResult(job.key, job.sender, error=TimeoutError(
                "waited past its deadline in the fetch queue"))
        try:
            value = job.fn(left)
        except Exception as e:
            return FetchResult(job.key, job.sender, error=e, seconds=self.clock() - start)
        return FetchResult(job.key, job.sender, value=value, seconds=self.clock() - start)

    def _finish(self, job: _Job, result: FetchResult) -> None:
        with self._cond:
            self._results.append((result, job.done))
        if self._wake is not None:
            self._wake()
