"""The runtime's parts on their own: inbox limits, fetch pool fairness and deadlines,
bounded maps, the outbox. No network: these are the mechanisms, the Kubo tests use them."""

from __future__ import annotations

import threading
import time

import pytest

from gridd.runtime import BoundedInbox, BoundedMap, FetchPool, InboxLimits, Outbox, TokenBucket
from gridd.transport import MemoryNetwork, Message

KiB = 1024


def msg(sender: str, size: int) -> Message:
    return Message("t", b"x" * size, sender)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_oversized_messages_are_refused_before_queueing() -> None:
    inbox = BoundedInbox(InboxLimits(max_message_bytes=64 * KiB))
    assert inbox.offer(msg("a", 64 * KiB + 1)) == "oversized"
    assert inbox.bytes == 0 and len(inbox) == 0
    assert inbox.offer(msg("a", 64 * KiB)) is None and inbox.bytes == 64 * KiB


def test_inbox_is_bounded_in_bytes_whatever_the_message_count() -> None:
    lim = InboxLimits(max_message_bytes=1024 * KiB, max_bytes=4 * 1024 * KiB,
                      sender_share=1.0, sender_rate=1e9, sender_burst=1e9,
                      sender_bytes_rate=1e12, sender_bytes_burst=1e12)
    inbox = BoundedInbox(lim)
    reasons = [inbox.offer(msg(f"s{i}", 1024 * KiB)) for i in range(400)]  # 400 MB offered
    assert reasons.count(None) == 4 and reasons.count("full") == 396
    assert inbox.bytes == 4 * 1024 * KiB
    assert inbox.get(0) is not None and inbox.bytes == 3 * 1024 * KiB
    assert inbox.offer(msg("late", 1024 * KiB)) is None  # room again once read


def test_one_sender_cannot_take_the_whole_queue_or_exceed_its_rate() -> None:
    clock = Clock()
    lim = InboxLimits(max_message_bytes=64 * KiB, max_bytes=1024 * KiB, sender_share=0.25,
                      sender_rate=10, sender_burst=20, sender_bytes_rate=1e12,
                      sender_bytes_burst=1e12)
    inbox = BoundedInbox(lim, clock=clock)
    flood = [inbox.offer(msg("mallory", 64 * KiB)) for _ in range(10)]
    assert flood.count(None) == 4 and flood.count("sender_share") == 6  # 256 KiB share
    assert inbox.offer(msg("alice", 64 * KiB)) is None  # others still get in
    small = [inbox.offer(msg("bob", 10)) for _ in range(30)]
    assert small.count(None) == 20 and small.count("rate") == 10  # burst 20, then 10/s
    clock.now += 1.0
    assert [inbox.offer(msg("bob", 10)) for _ in range(11)].count(None) == 10
    assert inbox.dropped == {"sender_share": 6, "rate": 11}


def test_get_waits_and_poke_wakes_it() -> None:
    inbox = BoundedInbox()
    t0 = time.monotonic()
    assert inbox.get(0.05) is None and time.monotonic() - t0 >= 0.04
    threading.Timer(0.05, inbox.poke).start()
    t0 = time.monotonic()
    assert inbox.get(5.0) is None and time.monotonic() - t0 < 2.0
    threading.Timer(0.05, lambda: inbox.offer(msg("a", 3))).start()
    got = inbox.get(5.0)
    assert got is not None and got.data == b"xxx"


def test_bounded_map_evicts_oldest_and_prunes() -> None:
    m: BoundedMap[int, str] = BoundedMap(3)
    for i in range(5):
        m[i] = str(i)
    assert list(m) == [2, 3, 4] and m.evicted == 2
    lru: BoundedMap[int, str] = BoundedMap(2, lru=True)
    lru[1], lru[2] = "a", "b"
    assert lru[1] == "a"
    lru[3] = "c"
    assert list(lru) == [1, 3]
    assert lru.values() == ["a", "c"] and lru.items() == [(1, "a"), (3, "c")]
    for _ in lru.values():  # iterating never reorders (no "mutated during iteration")
        lru.get(1)
    assert m.prune(lambda k, _: k % 2 == 0) == 2 and list(m) == [3]
    with pytest.raises(ValueError):
        BoundedMap(0)


def test_token_bucket() -> None:
    b = TokenBucket(rate=2, burst=4, now=0.0)
    assert all(b.take(1, 0.0) for _ in range(4)) and not b.take(1, 0.0)
    assert b.take(1, 0.5) and not b.take(1, 0.5)
    assert b.take(4, 100.0) and not b.take(5, 100.0)


def test_fetch_pool_is_fair_across_senders() -> None:
    """A sender whose fetches all hang holds at most per_sender_inflight threads."""
    release = threading.Event()
    pool = FetchPool(workers=3, per_sender_inflight=2)
    results: list[tuple[str, float]] = []

    def hang(_left: float) -> bytes:
        release.wait(10)
        raise TimeoutError("nobody serves it")

    try:
        for i in range(10):
            assert pool.submit(("bad", i), hang, timeout=30, sender="mallory",
                               done=lambda r: results.append(("bad", 0.0))) is None
        t0 = time.monotonic()
        for i in range(5):
            pool.submit(("good", i), lambda _left: b"ok", timeout=30, sender="alice",
                        done=lambda r: results.append(("good", time.monotonic() - t0)))
        deadline = time.monotonic() + 5
        while sum(1 for k, _ in results if k == "good") < 5 and time.monotonic() < deadline:
            pool.run_callbacks()
            time.sleep(0.01)
        good = [s for k, s in results if k == "good"]
        assert len(good) == 5 and max(good) < 2.0
        assert not any(k == "bad" for k, _ in results)  # still hanging: two threads only
    finally:
        release.set()
        pool.close()


def test_fetch_pool_caps_queues_and_dedupes() -> None:
    gate = threading.Event()
    pool = FetchPool(workers=1, max_queued=5, per_sender_inflight=1, per_sender_queued=3)
    try:
        def wait(_left: float) -> None:
            gate.wait(5)

        assert pool.submit("a0", wait, timeout=10, sender="a", done=lambda r: None) is None
        assert pool.submit("a0", wait, timeout=10, sender="a", done=lambda r: None) \
            == "duplicate"
        deadline = time.monotonic() + 5
        while pool.outstanding and pool._queued and time.monotonic() < deadline:
            time.sleep(0.01)  # a0 is picked up by the single thread
        refusals = [pool.submit(f"a{i}", wait, timeout=10, sender="a", done=lambda r: None)
                    for i in range(1, 6)]
        assert refusals[:3] == [None, None, None]
        assert refusals[3:] == ["sender_queue_full", "sender_queue_full"]
        assert pool.submit("b0", wait, timeout=10, sender="b", done=lambda r: None) is None
        assert pool.submit("c0", wait, timeout=10, sender="c", done=lambda r: None) is None
        assert pool.submit("d0", wait, timeout=10, sender="d", done=lambda r: None) \
            == "queue_full"
    finally:
        gate.set()
        pool.close()


def test_a_fetch_that_waited_past_its_deadline_is_not_run() -> None:
    gate = threading.Event()
    clock = Clock()
    pool = FetchPool(workers=1, per_sender_inflight=1, clock=clock)
    ran: list[str] = []
    results = []
    try:
        pool.submit("slow", lambda _l: gate.wait(5), timeout=10, sender="a",
                    done=results.append)
        pool.submit("late", lambda _l: ran.append("late"), timeout=0.05, sender="b",
                    done=results.append)
        clock.now += 1.0  # "late" has waited in the queue past its 50 ms deadline
        gate.set()
        deadline = time.monotonic() + 5
        while len(results) < 2 and time.monotonic() < deadline:
            pool.run_callbacks()
            time.sleep(0.01)
        late = next(r for r in results if r.key == "late")
        assert isinstance(late.error, TimeoutError) and ran == []
    finally:
        gate.set()
        pool.close()


def test_inline_pool_runs_at_once_in_the_callers_thread() -> None:
    pool = FetchPool(workers=0)
    seen = []
    assert pool.submit("k", lambda left: threading.current_thread().name, timeout=1,
                       done=seen.append) is None
    assert pool.run_callbacks() == 1 and seen[0].value == threading.current_thread().name


def test_outbox_never_raises_and_counts_failures() -> None:
    class Down(MemoryNetwork().broker("x").__class__):
        def publish(self, topic: str, data: bytes) -> None:
            raise ConnectionError("daemon down")

    errors: list[str] = []
    out = Outbox(Down(MemoryNetwork(), "x"), "t", inline=False, on_error=errors.append)
    try:
        assert out.publish(b"hello") is True  # queued
        assert out.flush(5)
        assert errors == ["error"]
        assert out.publish(b"x" * 2_000_000) is False and errors[-1] == "oversized"
    finally:
        out.close()
