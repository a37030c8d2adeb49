"""Bounded storage on real Kubo: named pins, retention, GC, log compaction, `gridd storage`.

Three daemons of their own (garbage collection must not touch other tests' content); peers
are TreePeer objects stepped from the test, as in test_peer_kubo.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tree_helpers import DIGITS, fast_settings, make_peer, tx_ids

from gridd import pins
from gridd.cli import main
from gridd.data import Dataset
from gridd.ipfs.cluster import LocalCluster
from gridd.transport import IpfsBroker, IpfsStore
from gridd.tree.genesis import create_genesis
from gridd.tree.peer import TreePeer
from gridd.tree.settings import TreeSettings
from gridd.tree.state import LOG_FILE
from tangle import TangleLog

pytestmark = pytest.mark.kubo

WINDOW = 3


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(3) as c:
        yield c


@pytest.fixture
def peers(cluster: LocalCluster, shards: list[Dataset]) -> Iterator[Callable[..., TreePeer]]:
    made: list[TreePeer] = []

    def make(genesis_id: str, node: int, settings: TreeSettings,
             state_dir: Path | None = None) -> TreePeer:
        client = cluster.clients[node]
        peer = make_peer(genesis_id, IpfsBroker(client), IpfsStore(client), shards[node],
                         settings=settings, seed=node, state_dir=state_dir)
        made.append(peer)
        return peer

    yield make
    for p in made:
        p.close()


def settings(**kw: object) -> TreeSettings:
    return fast_settings(retention_window=WINDOW, retention_own=1, log_compact_bytes=20_000,
                         **kw)


def quiet(group: list[TreePeer], timeout: float = 30.0) -> None:
    """Handle messages until no fetch, pin or unpin is left in any peer's pool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in group:
            p.process_messages(timeout=0.02)
        if all(p.node.fetcher.outstanding == 0 and p.builder.outstanding == 0 for p in group):
            return
    raise AssertionError("peers did not settle")


def train(group: list[TreePeer], rounds: int, prune_every: int | None = 4) -> list[str]:
    reasons = []
    for r in range(rounds):
        for p in group:
            p.process_messages(timeout=0.05)
            started = time.monotonic()
            reasons.append(p.train_step().reason)
            assert time.monotonic() - started < 20, "a training step stalled"
        if prune_every and r % prune_every == prune_every - 1:
            for p in group:
                p.prune_storage()
    quiet(group)
    return reasons


def held(peer: TreePeer) -> dict[str, str]:
    names = {pins.tree(peer.genesis_id, "weights"), pins.own(peer.genesis_id, peer.peer_id)}
    return {c: n for c, n in peer.store.pins(pins.tree_prefix(peer.genesis_id)).items()
            if n in names}


def test_pins_stay_bounded_gc_frees_and_training_goes_on(
    cluster: LocalCluster, peers: Callable[..., TreePeer], tmp_path: Path
) -> None:
    genesis_id = create_genesis(IpfsStore(cluster.clients[0]), DIGITS, init_seed=21)
    state = tmp_path / "peer0"
    group = [peers(genesis_id, 0, settings(), state_dir=state),
             *(peers(genesis_id, i, settings()) for i in (1, 2))]
    for p in group:
        p.broker.wait_for_peers(p.topic, 2, timeout=15)
    counts, bounds = [], []
    first = group[0]
    for _ in range(4):
        train(group, 8)
        first.prune_storage()
        quiet(group)
        counts.append(len(held(first)))
        bounds.append(len(first.tangle.window(WINDOW)) + 1 + 4)  # window, own, arrivals
    size = len(first.tangle)
    assert size >= 40, size
    bound = max(bounds)
    assert all(c <= b for c, b in zip(counts, bounds, strict=True)), (counts, bounds)
    assert max(counts) < size / 3, (counts, size)
    blob = first.store.size(first.tangle.genesis.weights_cid)
    assert sum(first.store.size(c) for c in held(first)) <= bound * (blob + 1024)

    # GC on peer 0's daemon: what it unpinned goes; what it needs again it fetches again
    kubo = cluster.clients[0]
    before = kubo.repo_stat(count_objects=False).size
    kubo.repo_gc()
    after = kubo.repo_stat(count_objects=False).size
    unpinned = size - 1 - len(held(first))
    assert before - after >= unpinned * blob * 0.5, (before, after, unpinned, blob)
    trained = first.client_epochs
    reasons = train(group, 6)
    # every step trained (peers this far in may find nothing that beats its start, so
    # "not_better" is a training too); none lacked the weights GC took
    assert set(reasons) <= {"published", "not_better"}, reasons
    assert first.client_epochs == trained + 6
    assert len({frozenset(tx_ids(p)) for p in group}) == 1  # still one tangle

    # `gridd storage`: status figures, and --prune unpinning what the peer has not yet
    train(group, 4, prune_every=None)
    extra = len(held(first))
    runner = CliRunner()
    env = {"GRIDD_TREE_STATE": str(tmp_path), "RETENTION_WINDOW": str(WINDOW),
           "RETENTION_OWN": "1"}
    api = kubo.address.multiaddr
    out = runner.invoke(main, ["storage", "--api", api, "--prune"], env=env)
    assert out.exit_code == 0, out.output
    text = out.output
    assert f"tangle {genesis_id[:12]}: unpinned" in text
    assert len(held(first)) < extra
    assert "Kubo repo:" in text and "StorageMax" in text
    kind = f"tree:{genesis_id[:12]}:"
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()
            if line.strip().startswith(kind)}
    assert int(rows[kind + "record"][0]) >= size - 1  # records stay pinned
    assert int(rows[kind + "weights"][0]) + int(rows.get(kind + "own", ["0"])[0]) \
        == len(held(first))
    assert int(rows[kind + "genesis"][0]) == 3
    assert str(state / LOG_FILE) in text and "transactions" in text
    status = runner.invoke(main, ["storage", "--api", api, "--state-dir", str(state)], env=env)
    assert status.exit_code == 0 and "unpinned" not in status.output


def test_restart_after_compaction_loses_nothing_and_trains_on(
    cluster: LocalCluster, peers: Callable[..., TreePeer], tmp_path: Path
) -> None:
    genesis_id = create_genesis(IpfsStore(cluster.clients[0]), DIGITS, init_seed=22)
    state = tmp_path / "a"
    a = peers(genesis_id, 0, settings(), state_dir=state)
    others = [peers(genesis_id, i, settings()) for i in (1, 2)]
    group = [a, *others]
    for p in group:
        p.broker.wait_for_peers(p.topic, 2, timeout=15)
    train(group, 24)
    assert a.keeper.maybe_compact(a.tangle, force=True)
    mine = a.published
    assert len(mine) >= 3
    a.close()
    log = TangleLog(state / LOG_FILE)
    assert set(mine) <= {tx.id for tx in log.load()} and log.horizon is not None
    back = peers(genesis_id, 0, settings(), state_dir=state)
    assert set(mine) <= tx_ids(back) and back.published == mine
    assert back.tangle.pending_count == 0
    group = [back, *others]
    new: list[str] = []
    for _ in range(10):
        train(group, 1, prune_every=None)
        new = [i for i in back.published if i not in mine]
        if new:
            break
    assert new, "the restarted peer never published again"
    quiet(group)
    deadline = time.monotonic() + 20
    while new[0] not in others[0].tangle and time.monotonic() < deadline:
        back.announce()
        quiet(group)
    assert new[0] in others[0].tangle
