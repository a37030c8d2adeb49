"""Three `start_worker --tree` processes, each on its own Kubo daemon; one daemon (not its
worker) is killed with SIGKILL and restarted on the same repo and API port. Nobody runs
`swarm connect`: the worker must get its peers back by itself, and the tangles converge."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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

from gridd.ipfs.cluster import LocalCluster
from gridd.transport import IpfsStore
from gridd.tree.genesis import create_genesis

pytestmark = [pytest.mark.faults, pytest.mark.kubo, pytest.mark.slow]


@pytest.fixture
def workers(kubo_cluster: Callable[[int], LocalCluster], tmp_path: Path
            ) -> Iterator[tuple[LocalCluster, list[Worker]]]:
    cluster = kubo_cluster(3)
    genesis_id = create_genesis(IpfsStore(cluster.clients[0]), DIGITS, init_seed=7)
    shards = digits_shards(3)
    made: list[Worker] = []
    try:
        for i in range(3):
            made.append(Worker(f"peer{i}", genesis_id, cluster.daemons[i].api_address() or "",
                               shards[i], tmp_path, seed=i, training_interval=0.5))
        yield cluster, made
    finally:
        for w in made:
            w.stop()


def test_kubo_kill9_and_restart_the_worker_reconnects_and_converges(
        workers: tuple[LocalCluster, list[Worker]]) -> None:
    cluster, peers = workers
    victim, others = peers[2], peers[:2]

    def alive() -> None:
        for w in peers:
            w.check_alive()

    # connected as usual: everybody publishes, knows its topic peers, sees everything
    wait_for(lambda: all(len(w.published()) >= 2 for w in peers), 90,
             "every worker to publish", check=alive)
    wait_for(lambda: knows_topic_peers(peers, 2), 30,
             "every worker to report 2 topic peers (gridd_topic_peers, from Broker.maintain)",
             check=alive)
    before = union(peers)
    wait_for(lambda: all_have(peers, before), 60, "the tangles to converge before the fault",
             check=alive)

    cluster.daemons[2].kill()
    cluster.daemons[2].start().close()  # same repo and API port; no swarm connect anywhere
    mine = set(victim.published())
    theirs = {tx for w in others for tx in w.published()}
    # both sides keep training while (on today's code: for good) apart
    wait_for(lambda: set(victim.published()) - mine
             and {tx for w in others for tx in w.published()} - theirs,
             90, "both sides to publish after the restart", check=alive)
    after = union(peers)
    took = wait_for(lambda: all_have(peers, after), 90,
                    "the restarted peer's and the others' new transactions to reach everyone",
                    check=alive, explain=lambda: missing_report(peers, after))
    print(f"\nconverged {took:.1f}s after both sides had published since the restart")
