"""Snapshots and compacted logs: a restored tangle is the recent part of the original."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tangle_testkit import genesis, make_tx

from tangle import (
    Horizon,
    RandomWalkSelector,
    Tangle,
    TangleLog,
    Transaction,
    UniformSelector,
    rebuild,
    reference,
    take_snapshot,
)


def recent_dag(rng: random.Random, size: int, width: int = 6) -> list[Transaction]:
    """Tangle-like: each transaction approves 1..3 of the `width` most recent ones."""
    txs = [genesis()]
    for i in range(1, size):
        recent = [tx.id for tx in txs[-width:]]
        txs.append(make_tx(rng.sample(recent, rng.randint(1, min(3, len(recent)))), i))
    return txs


def build(txs: list[Transaction]) -> Tangle:
    tangle = Tangle(txs[0])
    for tx in txs[1:]:
        tangle.add(tx)
    return tangle


def window_ids(tangle: Tangle, depth: int) -> dict[str, int]:
    w = tangle.window(depth)
    return {tangle.id_of(n): w.depth[n] for n in w.order}


def compacted(tmp_path: Path, tangle: Tangle, depth: int, keep: list[str]) -> TangleLog:
    horizon, txs = take_snapshot(tangle, depth, keep)
    log = TangleLog(tmp_path / "tangle.log")
    log.compact(horizon, txs)
    return log


@pytest.mark.parametrize("seed", range(6))
def test_restored_tangle_has_the_same_recent_window(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    txs = recent_dag(rng, 400)
    original = build(txs)
    own = [txs[i].id for i in (3, 50, 120)]  # old transactions "this peer" issued
    log = compacted(tmp_path, original, 12, own)
    loaded = TangleLog(log.path).load()  # type: ignore[arg-type]
    reader = TangleLog(log.path)  # type: ignore[arg-type]
    reader.load()
    assert reader.horizon is not None and reader.horizon.depth == 12
    restored = rebuild(txs[0], loaded, horizon=reader.horizon)
    assert restored.pending_count == 0
    assert len(restored) < len(original) / 3
    assert set(restored.tips()) == set(original.tips())
    for depth in range(13):
        assert window_ids(restored, depth) == window_ids(original, depth)
    for tx_id in own:
        assert tx_id in restored
        if original.depth(tx_id) > 12:  # (a never approved one is a tip, so in the window)
            assert tx_id not in restored.tips() and restored.depth(tx_id) > 12
    assert txs[0].id in restored.sealed  # the genesis is no tip either


def test_new_transactions_approving_the_boundary_enter_at_once(tmp_path: Path) -> None:
    txs = recent_dag(random.Random(7), 200)
    original = build(txs)
    log = compacted(tmp_path, original, 5, [])
    restored = rebuild(txs[0], TangleLog(log.path).load(), horizon=log.horizon)  # type: ignore[arg-type]
    boundary = sorted(log.horizon.below)[0]  # type: ignore[union-attr]
    late = make_tx((boundary, restored.tips()[0]), 10_001)
    assert restored.add(late) == [late]  # a slow peer approving something old: no waiting
    fresh = make_tx(tuple(restored.tips()[:2]), 10_002)
    assert restored.add(fresh) == [fresh]
    with pytest.raises(Exception, match="already known"):
        restored.add(next(tx for tx in txs if tx.id == boundary))  # below the horizon


def test_appends_after_compaction_survive_a_restart_and_compaction_repeats(
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    txs = recent_dag(rng, 300)
    tangle = build(txs[:200])
    own = [txs[10].id]
    log = compacted(tmp_path, tangle, 6, own)
    for tx in txs[200:]:
        tangle.add(tx)
        log.append(tx, sync=True)
    log.close()
    reader = TangleLog(tmp_path / "tangle.log")
    restored = rebuild(txs[0], reader.load(), horizon=reader.horizon)
    assert set(restored.tips()) == set(tangle.tips())
    assert all(tx.id in restored for tx in txs[200:]) and own[0] in restored
    for depth in range(7):
        assert window_ids(restored, depth) == window_ids(tangle, depth)
    # compacting the restored tangle again keeps what it kept, floors included
    again = compacted(tmp_path, restored, 6, own)
    second = rebuild(txs[0], TangleLog(again.path).load(), horizon=again.horizon)  # type: ignore[arg-type]
    assert own[0] in second and own[0] not in second.tips()
    assert set(second.tips()) == set(tangle.tips())
    assert window_ids(second, 6) == window_ids(tangle, 6)


def test_walks_and_reference_run_on_a_restored_tangle(tmp_path: Path) -> None:
    txs = recent_dag(random.Random(5), 300)
    original = build(txs)
    log = compacted(tmp_path, original, 8, [txs[1].id])
    restored = rebuild(txs[0], TangleLog(log.path).load(), horizon=log.horizon)  # type: ignore[arg-type]
    tips = set(restored.tips())
    walk = RandomWalkSelector(alpha=0.01, particle_depth=(3, 6), seed=1)
    assert set(walk.select(restored, 3)) <= tips
    assert set(UniformSelector(seed=1).select(restored, 2)) <= tips
    ids = reference(restored, walk, rounds=5, top=3, rng=2, window=8)
    assert ids and all(restored.depth(i) <= 8 for i in ids)
    assert len(restored.cumulative_weights()) == len(restored)  # every node has a depth
    assert len(restored.depths()) == len(restored)


def test_a_log_without_a_snapshot_and_bad_headers(tmp_path: Path) -> None:
    txs = recent_dag(random.Random(2), 30)
    log = TangleLog(tmp_path / "plain.log")
    for tx in txs:
        log.append(tx)
    log.close()
    reader = TangleLog(tmp_path / "plain.log")
    assert reader.load() == txs and reader.horizon is None
    for junk in ({"tangle.snapshot": {"version": 2}}, {"tangle.snapshot": 1, "x": 2},
                 {"tangle.snapshot": {"version": 1, "depth": 3, "below": [1], "sealed": {}}}):
        with pytest.raises(ValueError):
            Horizon.from_dict(junk)
    h = Horizon(4, frozenset({"a"}), {"b": 5})
    assert Horizon.from_dict(h.to_dict()) == h
    with pytest.raises(ValueError):
        take_snapshot(build(txs), 0)


def test_torn_tail_after_compaction_is_cut_and_appends_stay_readable(tmp_path: Path) -> None:
    txs = recent_dag(random.Random(4), 120)
    tangle = build(txs[:100])
    log = compacted(tmp_path, tangle, 5, [])
    log.append(txs[100], sync=True)
    log.close()
    path = tmp_path / "tangle.log"
    path.write_bytes(path.read_bytes()[:-7])  # a crash in the middle of the last append
    again = TangleLog(path)
    kept = again.load()
    assert txs[100] not in kept and again.horizon is not None
    again.append(txs[101], sync=True)
    again.close()
    final = TangleLog(path)
    assert final.load()[-1] == txs[101] and final.horizon is not None
    assert not list(tmp_path.glob(".tangle-compact.*"))  # no temp file left behind
