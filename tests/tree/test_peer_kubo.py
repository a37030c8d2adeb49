"""Tree peers on real Kubo daemons: convergence, late joiners, pinning, the notebook view.

Peers are TreePeer objects stepped from the test (no threads of their own) so each test
is deterministic about *what* happens and only waits for the network to deliver it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from tree_helpers import DIGITS, fast_settings, make_peer, tx_ids

from gridd.data import Dataset
from gridd.ipfs.cluster import LocalCluster
from gridd.transport import IpfsBroker, IpfsStore
from gridd.tree.genesis import create_genesis
from gridd.tree.messages import record_cid
from gridd.tree.notebook import open_tangle
from gridd.tree.peer import TreePeer

pytestmark = pytest.mark.kubo


@pytest.fixture
def kubo_peers(kubo3: LocalCluster, shards: list[Dataset]
               ) -> Iterator[Callable[..., TreePeer]]:
    made: list[TreePeer] = []

    def make(genesis_id: str, node: int, dataset: Dataset | None | str = "shard",
             seed: int | None = None) -> TreePeer:
        client = kubo3.clients[node]
        data = shards[node] if dataset == "shard" else dataset
        peer = make_peer(genesis_id, IpfsBroker(client), IpfsStore(client), data,
                         settings=fast_settings(), seed=node if seed is None else seed)
        made.append(peer)
        return peer

    yield make
    for p in made:
        p.close()


def settle(peers: list[TreePeer], until: Callable[[], bool], timeout: float = 20.0) -> None:
    """Process messages (re-announcing now and then) until `until()` or the timeout."""
    deadline = time.monotonic() + timeout
    last_announce = 0.0
    while time.monotonic() < deadline:
        if until():
            return
        if time.monotonic() - last_announce > 1.0:
            last_announce = time.monotonic()
            for p in peers:
                p.announce()
        for p in peers:
            p.process_messages(timeout=0.05)
    assert until(), [len(p.tangle) for p in peers]


def wait_mesh(peers: list[TreePeer], timeout: float = 15.0) -> None:
    for p in peers:
        p.broker.wait_for_peers(p.topic, len(peers) - 1, timeout)


@pytest.mark.parametrize("n", [2, 3])
def test_real_peers_converge_and_pin_what_they_use(kubo3: LocalCluster, kubo_peers: Callable,
                                                   n: int) -> None:
    genesis_id = create_genesis(IpfsStore(kubo3.clients[0]), DIGITS, init_seed=n)
    peers = [kubo_peers(genesis_id, i) for i in range(n)]
    wait_mesh(peers)
    published = 0
    for _ in range(3):
        for p in peers:
            p.process_messages(timeout=0.1)
            published += p.train_step().published
    settle(peers, lambda: len({frozenset(tx_ids(p)) for p in peers}) == 1
           and len(peers[0].tangle) == published + 1)
    assert published >= n
    issuers = {tx.issuer for tx in peers[0].tangle.transactions() if tx.parents}
    assert len(issuers) >= 2  # the tangle really mixes peers' work
    # pinning runs in each peer's fetch pool, after insertion
    settle(peers, lambda: all(p.node.fetcher.outstanding == 0 for p in peers))
    for i, p in enumerate(peers):
        pins = kubo3.clients[i].pin_ls()
        for tx in p.tangle.transactions():
            assert tx.weights_cid in pins and record_cid(tx.id) in pins


def test_late_joiner_and_notebook_catch_up_from_ipfs(kubo3: LocalCluster,
                                                     kubo_peers: Callable) -> None:
    genesis_id = create_genesis(IpfsStore(kubo3.clients[0]), DIGITS, init_seed=11)
    early = [kubo_peers(genesis_id, 0), kubo_peers(genesis_id, 1)]
    wait_mesh(early)
    for _ in range(4):
        for p in early:
            p.process_messages(timeout=0.1)
            p.train_step()
    settle(early, lambda: tx_ids(early[0]) == tx_ids(early[1]))
    history = tx_ids(early[0])
    assert len(history) >= 5
    late = kubo_peers(genesis_id, 2)  # its daemon never saw this tangle
    assert len(late.tangle) == 1
    settle([*early, late], lambda: tx_ids(late) == history)
    assert late.tangle.pending_count == 0
    # a notebook on the same daemon (same peer id) catches up the same way
    client = SimpleNamespace(kubo=kubo3.clients[2], broker=IpfsBroker(kubo3.clients[2]),
                             store=IpfsStore(kubo3.clients[2]),
                             peer_id=kubo3.clients[2].id().peer_id)
    view = open_tangle(client, genesis_id, wait=0, settings=fast_settings())
    try:
        settle([*early, view.peer], lambda: view.transaction_count == len(history))
        assert {early[0].peer_id, early[1].peer_id} <= set(view.peers)
        acc = view.consensus_accuracy
        assert acc is not None and 0.5 < acc <= 1.0
        assert "transactions" in repr(view)
    finally:
        view.close()
