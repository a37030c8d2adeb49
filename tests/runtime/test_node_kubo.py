"""The node runtime on real Kubo daemons: the reader watchdog, a byte-bounded inbox under a
flood of maximum-size messages, and a loop that keeps handling messages while fetches hang."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest

from gridd.ipfs.cluster import LocalCluster
from gridd.metrics import RuntimeMetrics
from gridd.runtime import InboxLimits, Node
from gridd.transport import IpfsBroker, IpfsStore, Message, raw_cid

pytestmark = pytest.mark.kubo
MiB = 1024 * 1024


@pytest.fixture
def node_on(kubo3: LocalCluster) -> Iterator:
    made: list[Node] = []

    def make(handler, **kw) -> Node:
        topic = f"gridd-runtime-{uuid.uuid4().hex[:8]}"
        node = Node(IpfsBroker(kubo3.clients[0]), topic, handler, metrics=RuntimeMetrics(),
                    **kw).start()
        made.append(node)
        IpfsBroker(kubo3.clients[1]).wait_for_peers(topic, 1, timeout=15)
        return node

    yield make
    for n in made:
        n.close()


def step_until(node: Node, cond, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        node.step(timeout=0.1)
    assert cond()


def test_watchdog_restarts_a_dead_reader(kubo3: LocalCluster, node_on) -> None:
    got: list[bytes] = []
    node = node_on(lambda m: got.append(m.data))
    sender = kubo3.clients[1]
    real_check = node.inbox._refusal
    calls = {"n": 0}

    def check_then_die(m: Message, size: int, lim: InboxLimits) -> str | None:
        calls["n"] += 1  # a bug in the reader's path, once
        if calls["n"] == 1:
            raise RuntimeError("injected reader crash")
        return real_check(m, size, lim)

    node.inbox._refusal = check_then_die  # type: ignore[method-assign]
    sub = node._subscription
    assert sub is not None
    sender.pubsub_pub(node.topic, b"kills the reader")
    deadline = time.monotonic() + 10
    while node.metrics.reader_restarts._value.get() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.metrics.reader_restarts._value.get() == 1
    # the restarted reader re-subscribes; pubsub is best-effort, so resend until it arrives
    deadline = time.monotonic() + 15
    while b"after" not in got and time.monotonic() < deadline:
        sender.pubsub_pub(node.topic, b"after")
        node.step(timeout=0.5)
    assert b"after" in got


def test_a_flood_of_maximum_size_messages_stays_within_the_byte_bound(
        kubo3: LocalCluster, node_on) -> None:
    limits = InboxLimits(max_message_bytes=1 * MiB, max_bytes=16 * MiB, sender_share=1.0,
                         sender_bytes_rate=1e12, sender_bytes_burst=1e12, sender_rate=1e6,
                         sender_burst=1e6)
    node = node_on(lambda m: None, limits=limits)
    proc = psutil.Process(os.getpid())
    rss0 = proc.memory_info().rss
    blob = os.urandom(900 * 1024)
    sender = kubo3.clients[1]
    peak = 0
    for _ in range(200):  # 180 MB while the loop is not reading (as during a training)
        sender.pubsub_pub(node.topic, blob)
        peak = max(peak, node.inbox.bytes)
    def dropped() -> int:
        return sum(node.inbox.dropped.values())

    deadline = time.monotonic() + 10
    while dropped() < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.inbox.bytes <= 16 * MiB and peak <= 16 * MiB
    assert dropped() >= 150
    assert proc.memory_info().rss - rss0 < 100 * MiB
    assert node.step() <= 18  # what was queued is bounded, and it drains


def test_the_loop_keeps_handling_messages_while_fetches_hang(kubo3: LocalCluster,
                                                            node_on) -> None:
    got: list[bytes] = []
    node = node_on(lambda m: got.append(m.data))
    store = IpfsStore(kubo3.clients[0])
    nobody = raw_cid(uuid.uuid4().bytes)
    done = threading.Event()
    for i in range(8):  # more hanging fetches than the pool has threads
        node.fetch(("x", i), lambda left: store.get(nobody, timeout=left), timeout=20,
                   sender=f"mallory-{i}", done=lambda r: done.set())
    t0 = time.monotonic()
    sender = kubo3.clients[1]
    deadline = time.monotonic() + 10
    while b"hello" not in got and time.monotonic() < deadline:
        sender.pubsub_pub(node.topic, b"hello")
        node.step(timeout=0.2)
    assert b"hello" in got and time.monotonic() - t0 < 5.0
    assert not done.is_set()  # the fetches are still hanging, off the loop
