"""TopicPeering against real Kubo daemons: kill -9 a daemon, restart it, and the topic's
peers find each other again without anyone running `swarm connect`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from faults_kit import wait_for

from gridd.ipfs import IPFSError, KuboClient, Subscription, TopicPeering
from gridd.ipfs.cluster import LocalCluster
from gridd.localports import free_port

pytestmark = [pytest.mark.faults, pytest.mark.kubo]


@pytest.fixture
def subscribed(kubo_cluster: Callable[[int], LocalCluster], topic: str
               ) -> Iterator[tuple[LocalCluster, list[Subscription]]]:
    """Two connected daemons, both subscribed to `topic` (the subscriptions outlive restarts)."""
    cluster = kubo_cluster(2)
    subs = [Subscription(c, topic) for c in cluster.clients]
    try:
        assert all(s.wait_ready() for s in subs)
        cluster.wait_topic_mesh(topic)
        yield cluster, subs
    finally:
        for s in subs:
            s.close()


def delivered(sender: KuboClient, receiver: Subscription, topic: str, timeout: float = 10.0
              ) -> bool:
    """Publish a marker until the receiver gets it (pubsub is best-effort while meshing)."""
    marker = f"after-restart-{time.monotonic_ns()}".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sender.pubsub_pub(topic, marker)
        except IPFSError:
            pass
        resend_at = time.monotonic() + 1.0
        while time.monotonic() < min(resend_at, deadline):
            msg = receiver.get(timeout=0.2)
            if msg is not None and msg.data == marker:
                return True
    return False


def test_a_daemon_down_is_a_status_not_an_exception() -> None:
    peering = TopicPeering(KuboClient(f"/ip4/127.0.0.1/tcp/{free_port()}", timeout=2.0))
    status = peering.check(["nobody-listens"])
    assert not status.reachable
    assert (status.topic_peers, status.redialed) == (0, 0)
    assert status.error


def test_kill9_and_restart_reconnects_with_no_manual_connect(
        subscribed: tuple[LocalCluster, list[Subscription]], topic: str) -> None:
    cluster, (sub_a, sub_b) = subscribed
    a, b = cluster.clients
    id_a, id_b = a.id().peer_id, b.id().peer_id
    peer_a, peer_b = TopicPeering(a), TopicPeering(b)
    first = peer_a.check([topic])
    assert (first.reachable, first.topic_peers, first.redialed) == (True, 1, 0)
    assert peer_b.check([topic]).topic_peers == 1
    assert id_b in peer_a.remembered() and id_a in peer_b.remembered()
    assert all("/tcp/" in addr for addr in peer_b.remembered()[id_a])

    cluster.daemons[1].kill()
    wait_for(lambda: peer_a.check([topic]).topic_peers == 0, 10, "a to notice b is gone")
    down = peer_b.check([topic])  # its daemon is dead: a status, no exception
    assert not down.reachable and down.remembered == 1

    cluster.daemons[1].start().close()  # same repo and API port, a new swarm port
    assert b.swarm_peers() == []  # nothing reconnects by itself ...
    statuses = []

    def reconnected() -> bool:
        statuses.append((peer_a.check([topic]), peer_b.check([topic])))
        return statuses[-1][0].topic_peers == 1 and statuses[-1][1].topic_peers == 1

    took = wait_for(reconnected, 30, "a and b to be topic peers again", every=0.5)
    # ... b re-dialled a from what it remembered (a cannot: b's old port is gone)
    assert sum(sb.reconnected for _, sb in statuses) >= 1, statuses
    assert took < 30
    assert delivered(b, sub_a, topic), "a does not receive b's messages after the restart"
    assert delivered(a, sub_b, topic), "b does not receive a's messages after the restart"


def test_the_survivor_redials_a_restarted_peer_on_its_old_address(
        subscribed: tuple[LocalCluster, list[Subscription]], topic: str) -> None:
    """Real nodes keep their swarm port: then the side that stayed up re-dials, with backoff,
    and the restarted side needs no peering of its own."""
    cluster, (sub_a, _) = subscribed
    a, b = cluster.clients
    peer_a = TopicPeering(a)
    assert peer_a.check([topic]).topic_peers == 1
    port = int(b.swarm_addrs_local()[0].split("/tcp/")[1].split("/")[0])
    cluster.daemons[1].kill()
    failed = []

    def b_missing() -> bool:
        status = peer_a.check([topic])
        failed.append(status)
        return status.topic_peers == 0 and status.redialed == 1 and status.reconnected == 0

    wait_for(b_missing, 10, "a's first failing re-dial of b")
    cluster.daemons[1].swarm_port = port
    cluster.daemons[1].start().close()
    wait_for(lambda: peer_a.check([topic]).topic_peers == 1, 30,
             "a to re-dial b on its old address", every=0.5)
    assert delivered(b, sub_a, topic)


def test_what_it_remembers_is_bounded(kubo3: LocalCluster, topic: str) -> None:
    subs = [Subscription(c, topic) for c in kubo3.clients]
    try:
        assert all(s.wait_ready() for s in subs)
        kubo3.wait_topic_mesh(topic)
        peering = TopicPeering(kubo3.clients[0], max_peers=1, max_addrs=1)
        status = peering.check([topic])
        assert status.topic_peers == 2 and status.remembered == 1
        (addrs,) = peering.remembered().values()
        assert len(addrs) == 1
    finally:
        for s in subs:
            s.close()
