"""Bounded storage on the in-memory network: named pins, the retention policy, log
compaction and restarts. Real IPFS versions are in test_retention_kubo.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tree_helpers import fast_settings, make_peer, sync

from gridd import pins
from gridd.data import Dataset
from gridd.ipfs import ContentUnavailable
from gridd.transport import MemoryNetwork
from gridd.tree.peer import TreePeer
from gridd.tree.retention import ALL, Policy, keep_weights, to_unpin
from gridd.tree.state import LOG_FILE
from tangle import Tangle, TangleLog, Transaction

Factory = Callable[..., TreePeer]


def weights_pins(peer: TreePeer) -> dict[str, str]:
    names = {pins.tree(peer.genesis_id, "weights"), pins.own(peer.genesis_id, peer.peer_id)}
    return {c: n for c, n in peer.store.pins().items() if n in names}


def pinned_bytes(peer: TreePeer, cids: dict[str, str]) -> int:
    return sum(peer.store.size(c) for c in cids)


def rounds(peers: list[TreePeer], n: int, prune_every: int = 1) -> list[str]:
    """n rounds in which every peer trains once; returns the step outcomes."""
    reasons = []
    for r in range(n):
        for p in peers:
            p.process_messages()
            reasons.append(p.train_step().reason)
            if r % prune_every == 0:
                p.prune_storage()
    sync(peers)
    return reasons


# -- the policy, pure --------------------------------------------------------------------------


def chain_with_issuers(length: int) -> tuple[Tangle, list[Transaction]]:
    txs = [Transaction.genesis("w-genesis")]
    for i in range(1, length):
        txs.append(Transaction.create((txs[-1].id,), f"w-{i}", "me" if i % 3 == 0 else "them",
                                      float(i)))
    tangle = Tangle(txs[0])
    for tx in txs[1:]:
        tangle.add(tx)
    return tangle, txs


def test_policy_keeps_the_window_the_newest_own_and_the_genesis() -> None:
    tangle, txs = chain_with_issuers(60)
    own = [tx.id for tx in txs if tx.issuer == "me"]
    keep = keep_weights(tangle, own, Policy(window=5, own=4))
    window = {f"w-{i}" for i in range(54, 60)}  # a chain: depth d is the (d+1)-th newest
    assert keep == window | {"w-genesis", "w-51", "w-48"}  # own: 57, 54 (window), 51, 48
    assert keep_weights(tangle, own, Policy(window=5, own=0)) == window | {"w-genesis"}
    everything = {tx.weights_cid for tx in txs}
    assert keep_weights(tangle, own, Policy(window=0)) == everything  # off
    mine = {tangle[i].weights_cid for i in own}
    assert keep_weights(tangle, own, Policy(window=5, own=ALL)) == window | mine | {"w-genesis"}
    pinned = {"w-1": "a:weights", "w-57": "a:weights", "w-3": "a:own", "x": "a:record"}
    assert to_unpin(pinned, keep, {"a:weights", "a:own"}) == ["w-1", "w-3"]
    assert Policy(window=10).log_depth == 50 and not Policy(window=0).enabled


def test_memory_store_names_pins_like_kubo(memnet: MemoryNetwork) -> None:
    store = memnet.store()
    cid = store.put(b"blob", name="gridd:tree:abc:own")
    assert store.pins() == {cid: "gridd:tree:abc:own"}
    store.pin(cid, name="gridd:tree:abc:weights")  # pinning again renames
    assert store.pins("gridd:tree:abc:") == {cid: "gridd:tree:abc:weights"}
    store.pin(cid, name="gridd:tree:abc:record", rename=False)  # pinned already: kept as is
    assert store.pins() == {cid: "gridd:tree:abc:weights"}
    store.pin(cid)  # without a name: Kubo clears the name
    assert store.pins() == {} and cid in store.pinned
    named = pins.NamedPins(store, "gridd:tree:abc:record")
    assert named.put(b"rec") in named.pins() and named.size(cid) == 4
    store.unpin(cid)
    assert cid not in store.pinned and store.get(cid) == b"blob"  # others may still serve it
    assert pins.kind_of("gridd:tree:abcdefabcdef:own") == "tree:abcdefabcdef:own"
    name = pins.compute_result("job-1", "12D3KooWxyz" * 3, 1_700_000_000.7)
    assert pins.result_expiry(name) == 1_700_000_000 and pins.kind_of(name) == "compute:result"
    assert len(pins.compute_result("j" * 64, "p" * 60, 1e12)) <= pins.MAX_NAME


# -- peers ---------------------------------------------------------------------------------------


def test_pinned_weights_stay_bounded_and_training_never_stalls(peers_factory: Factory) -> None:
    settings = fast_settings(retention_window=4, retention_own=2)
    peers = [peers_factory(i, settings=settings) for i in range(4)]
    counts: list[int] = []
    reasons: list[str] = []
    for _ in range(8):
        reasons += rounds(peers, 12)
        peers[0].prune_storage()
        held = weights_pins(peers[0])
        bound = len(peers[0].tangle.window(4)) + 2
        assert len(held) <= bound, (len(held), bound)
        counts.append(len(held))
    size = len(peers[0].tangle)
    assert size > 150
    assert max(counts) < size / 5, counts  # flat: it does not follow the tangle's growth
    assert max(counts[4:]) <= max(counts[:4]) + 6, counts
    assert "weights_unavailable" not in reasons
    assert sum(r == "published" for r in reasons[-48:]) >= 5  # still learning at the end
    held = weights_pins(peers[0])
    blob = peers[0].store.size(peers[0].tangle.genesis.weights_cid)
    assert pinned_bytes(peers[0], held) <= (len(peers[0].tangle.window(4)) + 2) * blob * 1.1
    report = peers[0].keeper.last
    assert report is not None and report.kept == len(held)


def test_weights_nobody_serves_any_more_are_skipped_not_waited_for(
    memnet: MemoryNetwork, peers_factory: Factory
) -> None:
    settings = fast_settings(retention_window=2, retention_own=0)
    peers = [peers_factory(i, settings=settings) for i in range(3)]
    rounds(peers, 15)
    # Garbage-collect the whole network: a blob nobody pins is gone for everyone.
    stores = [p.store for p in peers]
    held = set().union(*(s.pinned for s in stores))
    gone = [c for c in list(memnet._blobs) if c not in held]
    for c in gone:
        del memnet._blobs[c]
    assert gone
    p = peers[0]
    lost = next(tx.id for tx in p.tangle.transactions() if tx.weights_cid in gone)
    tip = p.tangle.tips()[0]
    p.bank._cache.clear()  # as if the peer had restarted: nothing in memory
    with pytest.raises(ContentUnavailable):
        p.weights_of(lost)
    averaged = p.average([lost, tip])  # the lost candidate is skipped, not fatal
    assert all((x == y).all() for x, y in zip(averaged, p.weights_of(tip), strict=True))
    reasons = rounds(peers, 8, prune_every=100)
    assert reasons.count("published") >= 2
    assert all(r in ("published", "not_better", "weights_unavailable") for r in reasons)
    assert reasons[-6:].count("weights_unavailable") < 6  # it recovers, never stalls


def test_restart_after_compaction_loses_nothing_this_peer_issued(
    memnet: MemoryNetwork, genesis_id: str, shards: list[Dataset], tmp_path: Path
) -> None:
    settings = fast_settings(retention_window=3, log_compact_bytes=30_000)
    state = tmp_path / "a"
    a = make_peer(genesis_id, memnet.broker("peer-a"), memnet.store(), shards[0], settings,
                  seed=1, state_dir=state)
    others = [make_peer(genesis_id, memnet.broker(f"peer-{i}"), memnet.store(), shards[i],
                        fast_settings(), seed=i) for i in (1, 2, 3)]
    everyone = [a, *others]
    sizes = []
    for _ in range(10):
        rounds(everyone, 10)
        sizes.append((state / LOG_FILE).stat().st_size)
    assert a.keeper.compactions >= 2, (sizes, len(a.published), len(a.tangle))
    # bounded, not growing with the tangle: the threshold over a snapshot of the recent
    # window (~40 KB: records approve up to 8 parents); 285 transactions by the end
    assert max(sizes[2:]) < 2 * 30_000 + 40_000, (sizes, len(a.tangle))
    mine = list(a.published)
    assert len(mine) >= 10
    full = len(others[0].tangle)
    assert a.keeper.maybe_compact(a.tangle, force=True)  # so the bound below is exact
    recent = len(a.tangle.window(a.keeper.policy.log_depth))
    a.close()
    log = TangleLog(state / LOG_FILE)
    logged = {tx.id for tx in log.load()}
    assert set(mine) <= logged and log.horizon is not None
    # It comes back with more data (its own and peer 1's shard): a converged network only
    # takes transactions that beat the model they start from, which new data can.
    more = Dataset(*(np.concatenate([getattr(shards[0], f), getattr(shards[1], f)])
                     for f in ("x", "y", "x_val", "y_val")))
    back = make_peer(genesis_id, memnet.broker("peer-a"), memnet.store(), more, settings,
                     seed=1, state_dir=state)
    try:
        assert set(mine) <= {tx.id for tx in back.tangle.transactions()}
        assert back.published == mine and back.tangle.pending_count == 0
        # the recent part and its own work, not the whole history
        assert len(back.tangle) <= recent + len(mine) + 1 and len(back.tangle) < full - 20
        assert set(back.tangle.tips()) <= {tx.id for tx in others[0].tangle.transactions()}
        published = []
        for _ in range(12):
            rounds([back, *others], 1)
            published += [i for i in back.published if i not in mine]
            if published:
                break
        assert published, "the restarted peer never published again"
        sync([back, *others])
        assert published[0] in others[0].tangle  # and the others accept its new work
    finally:
        back.close()


@pytest.mark.parametrize("window", ["off", "0"])
def test_retention_off_keeps_every_weights_blob(peers_factory: Factory, window: str) -> None:
    from gridd.tree.settings import load_tree_settings

    settings = load_tree_settings(env={"RETENTION_WINDOW": window, "MODEL": "no_tf",
                                       "TRAINING_INTERVAL": "0", "NUM_OF_SAMPLING_ROUND": "8"})
    assert settings.retention_window == 0
    peers = [peers_factory(i, settings=settings) for i in range(2)]
    rounds(peers, 10)
    held = weights_pins(peers[0])
    others = {tx.weights_cid for tx in peers[0].tangle.transactions() if tx.parents}
    assert others <= set(held)
    assert peers[0].keeper.last is None  # nothing was even listed


def test_the_daemon_loop_applies_the_policy_on_its_own(peers_factory: Factory) -> None:
    settings = fast_settings(training_interval=0.01, retention_window=2, retention_own=0,
                             retention_interval=0.05)
    peer = peers_factory(0, settings=settings)
    stop = threading.Event()
    loop = threading.Thread(target=peer.run, args=(stop,))
    loop.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            report = peer.keeper.last
            if report is not None and report.unpinned > 0:
                break
            time.sleep(0.02)
    finally:
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    report = peer.keeper.last
    assert report is not None and report.unpinned > 0  # the tick listed, decided, unpinned


def test_peers_sharing_a_daemon_keep_each_others_own_weights(
    memnet: MemoryNetwork, genesis_id: str, shards: list[Dataset]
) -> None:
    shared = memnet.store()  # one daemon, two identities of one tangle
    a = make_peer(genesis_id, memnet.broker("peer-a"), shared, shards[0],
                  fast_settings(retention_window=1, retention_own=0), seed=1)
    b = make_peer(genesis_id, memnet.broker("peer-b"), shared, shards[1],
                  fast_settings(retention_window=1, retention_own=50), seed=2)
    try:
        rounds([a, b], 12, prune_every=100)
        a.prune_storage()
        mine = {b.tangle[i].weights_cid for i in b.published}
        assert len(mine) >= 3
        assert mine <= set(shared.pins())  # a never judged b's own weights
        b.prune_storage()
        assert mine <= set(shared.pins())  # and b keeps them (RETENTION_OWN 50)
        deep = {tx.weights_cid for tx in a.tangle.transactions() if tx.issuer == a.peer_id}
        assert not deep <= set(shared.pins())  # while a let its own go (RETENTION_OWN 0)
    finally:
        a.close()
        b.close()
