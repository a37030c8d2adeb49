"""The in-memory transport keeps the IPFS transport's semantics (it is the simulation backend)."""

from __future__ import annotations

import pytest

from gridd.ipfs import ContentTooLarge, ContentUnavailable, NoTopicPeers
from gridd.transport import MemoryNetwork, MessageTooLarge, raw_cid


def test_self_echo_and_delivery_to_current_subscribers_only() -> None:
    net = MemoryNetwork()
    a, b, c = (net.broker(p) for p in "abc")
    ia, ib = a.subscribe("t"), b.subscribe("t")
    a.publish("t", b"1")
    ic = c.subscribe("t")  # late joiner: does not see the past (best-effort pubsub)
    assert ia.get(0.1).data == b"1" and ib.get(0.1).sender == "a"
    assert ic.get(0.05) is None
    ib.close()
    a.publish("t", b"2")
    assert ib.get(0.05) is None and ic.get(0.1).data == b"2"


def test_size_cap_and_peers() -> None:
    net = MemoryNetwork(max_message_size=10)
    a, b = net.broker("a"), net.broker("b")
    with pytest.raises(MessageTooLarge):
        a.publish("t", b"x" * 11)
    with pytest.raises(NoTopicPeers):
        a.wait_for_peers("t", timeout=0.05)
    b.subscribe("t")
    assert a.wait_for_peers("t") == ["b"]


def test_store_by_cid() -> None:
    store = MemoryNetwork().store()
    cid = store.put(b"abc")
    assert cid == raw_cid(b"abc") and store.get(cid) == b"abc"
    with pytest.raises(ContentTooLarge):
        store.get(cid, max_size=2)
    with pytest.raises(ContentUnavailable):
        store.get(raw_cid(b"other"))
