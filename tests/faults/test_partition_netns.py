"""A network partition between two hosts (network namespaces), two tree peers on each.

Every peer is a `start_worker --tree` process with its own Kubo daemon; the daemons of a host
listen on that host's address of the link between the hosts. The link is cut for 30 s, then
for 3 minutes (longer than the ~40 s of silence after which a yamux session gives up), while
both sides keep training. After the link comes back, with nobody running `swarm connect`,
every transaction either side made must reach every peer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from faults_kit import wait_for
from faults_workers import (
    DIGITS,
    Worker,
    all_have,
    digits_shards,
    knows_topic_peers,
    missing_report,
    union,
)
from netns_kit import Host, TwoHosts, ensure_iproute2

from gridd.ipfs import KuboClient, KuboDaemon
from gridd.transport import IpfsStore
from gridd.tree.genesis import create_genesis

pytestmark = [pytest.mark.faults, pytest.mark.kubo]


@dataclass
class Grid:
    hosts: TwoHosts
    daemons: list[KuboDaemon]  # a0, a1, b0, b1
    clients: list[KuboClient]
    workers: list[Worker]
    b_ids: set[str] = field(default_factory=set)

    @property
    def sides(self) -> tuple[list[Worker], list[Worker]]:
        return self.workers[:2], self.workers[2:]

    def alive(self) -> None:
        for w in self.workers:
            w.check_alive()
        for d in self.daemons:
            assert d.running, f"a Kubo daemon died:\n{d.tail_log()}"

    def cross_links(self) -> int:
        """Connections from host a's daemons to host b's."""
        if not self.b_ids:
            self.b_ids = {c.id().peer_id for c in self.clients[2:]}
        return sum(1 for c in self.clients[:2] for p, _ in c.swarm_peers() if p in self.b_ids)


@pytest.fixture(scope="module")
def grid() -> Iterator[Grid]:
    if os.geteuid() != 0:
        pytest.fail("the partition tests create network namespaces: run them as root")
    ensure_iproute2()
    root = Path(tempfile.mkdtemp(prefix="gridd-netns-"))
    hosts = TwoHosts()
    daemons: list[KuboDaemon] = []
    workers: list[Worker] = []
    try:
        hosts.setup()
        placement: list[tuple[Host, int]] = [(hosts.a, 0), (hosts.a, 1), (hosts.b, 0),
                                             (hosts.b, 1)]
        for host, i in placement:
            daemons.append(KuboDaemon(root / f"{host.netns}-{i}", local_only=True,
                                      api_host=host.mgmt_ip, api_port=5001 + i,
                                      swarm_host=host.data_ip, swarm_port=4001 + i,
                                      prefix=host.prefix))
        clients = [d.start() for d in daemons]
        addrs = [c.swarm_addrs_local()[0] for c in clients]
        assert all(f"/ip4/{h.data_ip}/" in a for (h, _), a in zip(placement, addrs, strict=True))
        for i, c in enumerate(clients):  # how peers first meet: the configured bootstrap
            for j in range(i + 1, len(clients)):
                c.swarm_connect(addrs[j])
        genesis_id = create_genesis(IpfsStore(clients[0]), DIGITS, init_seed=5)
        shards = digits_shards(4, seed=1)
        for k, ((host, i), d) in enumerate(zip(placement, daemons, strict=True)):
            workers.append(Worker(f"{host.netns[-1]}{i}", genesis_id, d.api_address() or "",
                                  shards[k], root, seed=k))
        g = Grid(hosts, daemons, clients, workers)
        yield g
    finally:
        for w in workers:
            w.stop()
        for d in daemons:
            d.stop()
        hosts.teardown()
        shutil.rmtree(root, ignore_errors=True)


def converge(grid: Grid, timeout: float) -> float:
    """Wait until what anyone has seen now has reached everyone; returns the seconds."""
    wanted = union(grid.workers)
    return wait_for(lambda: all_have(grid.workers, wanted), timeout,
                    "every peer to have every transaction", check=grid.alive,
                    explain=lambda: missing_report(grid.workers, wanted))


def partition(grid: Grid, seconds: float, heal_timeout: float) -> None:
    side_a, side_b = grid.sides
    wait_for(lambda: all(w.published() for w in grid.workers), 120,
             "every worker to publish", check=grid.alive)
    wait_for(lambda: knows_topic_peers(grid.workers, 3), 30,
             "every worker to report 3 topic peers (gridd_topic_peers, from Broker.maintain)",
             check=grid.alive)
    converge(grid, 60)
    assert grid.cross_links() > 0
    published_a = {tx for w in side_a for tx in w.published()}
    published_b = {tx for w in side_b for tx in w.published()}

    grid.hosts.cut()
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # the fault lasts this long; both sides keep training
            grid.alive()
            time.sleep(1.0)
        seen_a, seen_b = union(side_a), union(side_b)
    finally:
        grid.hosts.heal()
    healed = time.monotonic()
    new_a = {tx for w in side_a for tx in w.published()} - published_a
    new_b = {tx for w in side_b for tx in w.published()} - published_b
    assert new_a and new_b, f"both sides must train while apart ({len(new_a)}, {len(new_b)})"
    assert not new_a <= seen_b and not new_b <= seen_a, "the cut did not separate the hosts"
    everything = seen_a | seen_b
    linked: list[float] = []

    def converged() -> bool:
        if not linked and grid.cross_links():
            linked.append(time.monotonic() - healed)
        return all_have(grid.workers, everything)

    took = wait_for(converged, heal_timeout, "both sides' transactions to reach every peer",
                    check=grid.alive, every=0.5,
                    explain=lambda: missing_report(grid.workers, everything)
                    + f"; cross-host connections: {grid.cross_links()}")
    print(f"\n{seconds:.0f}s cut: {len(new_a)} + {len(new_b)} transactions made apart; "
          f"hosts linked {linked[0] if linked else float('nan'):.1f}s and converged "
          f"{took:.1f}s after the heal")


def test_a_30s_partition_heals(grid: Grid) -> None:
    partition(grid, 30, heal_timeout=75)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_3min_partition_heals(grid: Grid) -> None:
    partition(grid, 180, heal_timeout=120)
