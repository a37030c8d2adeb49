"""The Kubo client and IPFS transport against real daemons on 127.0.0.1."""

from __future__ import annotations

import os
import threading
import time

import pytest

from gridd.ipfs import ContentTooLarge, ContentUnavailable, KuboClient, NoTopicPeers
from gridd.ipfs.cluster import LocalCluster
from gridd.transport import IpfsBroker, IpfsStore, MessageTooLarge, raw_cid

pytestmark = pytest.mark.kubo


def _subscribe_all(cluster: LocalCluster, topic: str) -> list:
    inboxes = [IpfsBroker(c).subscribe(topic) for c in cluster.clients]
    for inbox in inboxes:
        assert inbox.wait_ready()
    cluster.wait_topic_mesh(topic)
    return inboxes


def test_message_on_a_reaches_b_and_c_with_verified_sender(kubo3: LocalCluster, topic: str) -> None:
    inboxes = _subscribe_all(kubo3, topic)
    a = IpfsBroker(kubo3.clients[0])
    a.publish(topic, b"hello grid")
    for inbox in inboxes:  # includes A itself: Kubo echoes own messages
        msg = inbox.get(timeout=10)
        assert msg is not None and msg.data == b"hello grid"
        assert msg.sender == a.peer_id
    for inbox in inboxes:
        inbox.close()


def test_concurrent_publishers_on_one_daemon_lose_nothing(kubo3: LocalCluster, topic: str) -> None:
    inboxes = _subscribe_all(kubo3, topic)
    a = IpfsBroker(kubo3.clients[0])

    def burst(k: int) -> None:
        for i in range(40):
            a.publish(topic, f"{k}:{i}".encode())

    threads = [threading.Thread(target=burst, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = set()
    deadline = time.monotonic() + 20
    while len(got) < 120 and time.monotonic() < deadline:
        msg = inboxes[1].get(timeout=1)
        if msg:
            got.add(msg.data)
    assert got == {f"{k}:{i}".encode() for k in range(3) for i in range(40)}
    for inbox in inboxes:
        inbox.close()


def test_bytes_added_on_a_are_read_on_c(kubo3: LocalCluster) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    cid = IpfsStore(kubo3.clients[0]).put(data)
    assert IpfsStore(kubo3.clients[2]).get(cid, timeout=30) == data


def test_small_blob_cid_matches_memory_store(kubo3: LocalCluster) -> None:
    data = b"weights, but small"
    assert IpfsStore(kubo3.clients[0]).put(data) == raw_cid(data)


def test_cat_refuses_content_over_the_cap(kubo3: LocalCluster) -> None:
    cid = IpfsStore(kubo3.clients[0]).put(b"x" * 10_000)
    with pytest.raises(ContentTooLarge):
        IpfsStore(kubo3.clients[1]).get(cid, max_size=9_999)
    assert len(IpfsStore(kubo3.clients[1]).get(cid, max_size=10_000)) == 10_000


def test_cat_of_unknown_cid_times_out_with_clear_error(kubo3: LocalCluster) -> None:
    missing = raw_cid(os.urandom(32))  # valid CID that nobody has
    with pytest.raises(ContentUnavailable, match=missing):
        IpfsStore(kubo3.clients[0]).get(missing, timeout=1)


def test_pin_add_and_rm(kubo3: LocalCluster) -> None:
    c = kubo3.clients[1]
    cid = IpfsStore(kubo3.clients[0]).put(os.urandom(1000))
    c.pin_add(cid)
    assert cid in c.pin_ls()
    c.pin_rm(cid)
    assert cid not in c.pin_ls()


def test_oversized_publish_is_refused_before_sending(kubo3: LocalCluster, topic: str) -> None:
    inboxes = _subscribe_all(kubo3, topic)
    a = IpfsBroker(kubo3.clients[0])
    with pytest.raises(MessageTooLarge, match="send its CID"):
        a.publish(topic, b"x" * (a.max_message_size + 1))
    a.publish(topic, b"after")
    msg = inboxes[1].get(timeout=10)
    assert msg is not None and msg.data == b"after"  # the oversized one never went out
    for inbox in inboxes:
        inbox.close()


def test_pubsub_ls_and_peers_use_plain_topic_names(kubo3: LocalCluster, topic: str) -> None:
    inboxes = _subscribe_all(kubo3, topic)
    assert topic in kubo3.clients[0].pubsub_ls()
    ids = {c.id().peer_id for c in kubo3.clients[1:]}
    assert ids <= set(kubo3.clients[0].pubsub_peers(topic))
    for inbox in inboxes:
        inbox.close()


def test_wait_for_peers_explains_how_to_connect(kubo3: LocalCluster, topic: str) -> None:
    with pytest.raises(NoTopicPeers, match="gridd peers connect"):
        IpfsBroker(kubo3.clients[0]).wait_for_peers(topic, timeout=0.3)


def test_subscription_reconnects_after_daemon_restart(kubo_cluster, topic: str) -> None:
    cluster = kubo_cluster(2)
    inboxes = _subscribe_all(cluster, topic)
    cluster.restart(1)
    inbox_b = inboxes[1]
    assert inbox_b.wait_ready(timeout=20), "subscription did not come back after restart"
    cluster.wait_topic_mesh(topic, timeout=20)
    IpfsBroker(cluster.clients[0]).publish(topic, b"after restart")
    msg = inbox_b.get(timeout=10)
    assert msg is not None and msg.data == b"after restart"
    assert inbox_b.subscription.reconnects >= 1
    for inbox in inboxes:
        inbox.close()


def test_subscription_close_is_prompt(kubo3: LocalCluster, topic: str) -> None:
    inbox = IpfsBroker(kubo3.clients[0]).subscribe(topic)
    assert inbox.wait_ready()
    t = time.monotonic()
    inbox.close()
    assert time.monotonic() - t < 2


def test_unreachable_daemon_says_what_to_do() -> None:
    client = KuboClient("/ip4/127.0.0.1/tcp/1")
    with pytest.raises(Exception) as err:
        client.id()
    text = str(err.value)
    assert "could not connect to IPFS" in text
    assert "127.0.0.1 on port 1" in text
    assert "start_ipfs" in text
