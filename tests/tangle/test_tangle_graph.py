"""Tangle: insertion rules, the pending set, and graph invariants against brute force."""

from __future__ import annotations

import random
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tangle_testkit import (
    build,
    chain,
    children_map,
    dags,
    genesis,
    longest,
    make_tx,
    parent_map,
    random_dag,
    reach,
)

from tangle import (
    DuplicateTransaction,
    InvalidTransaction,
    RandomWalkSelector,
    Tangle,
    TangleError,
    UnknownTransaction,
    export_graph,
    reference,
)
from tangle import window as window_module


# ---------------------------------------------------------------- insertion rules
def test_add_returns_what_entered_and_updates_tips() -> None:
    g = genesis()
    tangle = Tangle(g)
    a, b = make_tx([g.id], 1), make_tx([g.id], 2)
    assert tangle.add(a) == [a]
    assert tangle.add(b) == [b]
    assert set(tangle.tips()) == {a.id, b.id}
    c = make_tx([a.id, b.id], 3)
    tangle.add(c)
    assert tangle.tips() == [c.id]
    assert set(tangle.approvers(g.id)) == {a.id, b.id}
    assert tangle.approvers(a.id) == [c.id]
    assert tangle.parents(c.id) == tuple(sorted((a.id, b.id)))
    assert tangle.height(c.id) == 2 and tangle.depth(g.id) == 2 and tangle.depth(c.id) == 0
    assert len(tangle) == 4 and a.id in tangle and tangle[a.id] is a
    assert tangle.version == 4


def test_genesis_must_be_parentless_transaction() -> None:
    g = genesis()
    with pytest.raises(InvalidTransaction):
        Tangle(make_tx([g.id], 1))
    with pytest.raises(InvalidTransaction):
        Tangle("genesis")  # type: ignore[arg-type]


def test_rejects_duplicates_present_and_pending() -> None:
    g = genesis()
    tangle = Tangle(g)
    a = make_tx([g.id], 1)
    tangle.add(a)
    with pytest.raises(DuplicateTransaction):
        tangle.add(a)
    with pytest.raises(DuplicateTransaction):
        tangle.add(g)
    orphan = make_tx(["f" * 64], 2)
    assert tangle.add(orphan) == []
    with pytest.raises(DuplicateTransaction):
        tangle.add(orphan)


def test_rejects_second_root_and_non_transactions() -> None:
    tangle = Tangle(genesis())
    with pytest.raises(InvalidTransaction, match="no parents"):
        tangle.add(make_tx([], 1))
    with pytest.raises(InvalidTransaction):
        tangle.add({"parents": []})  # type: ignore[arg-type]


def test_rejects_self_loop() -> None:
    # A real hash cannot name itself; force the id to exercise the guard regardless.
    g = genesis()
    tangle = Tangle(g)
    loop = make_tx([g.id, "e" * 64], 1)
    object.__setattr__(loop, "_id", "e" * 64)
    with pytest.raises(InvalidTransaction, match="approves itself"):
        tangle.add(loop)
    assert len(tangle) == 1 and tangle.pending_count == 0


def test_unknown_ids_raise_a_key_error_family() -> None:
    tangle = Tangle(genesis())
    for query in (tangle.height, tangle.depth, tangle.approvers, tangle.past_cone,
                  tangle.future_cone, tangle.cumulative_weight, tangle.__getitem__):
        with pytest.raises(UnknownTransaction):
            query("a" * 64)
    with pytest.raises(KeyError):
        tangle.index_of("nope")
    assert tangle.get("a" * 64) is None
    assert issubclass(UnknownTransaction, TangleError)


# -------------------------------------------------------------------- pending set
def test_pending_releases_a_reversed_chain_in_order() -> None:
    _, txs = chain(6)
    tangle = Tangle(txs[0])
    for tx in reversed(txs[2:]):
        assert tangle.add(tx) == []
    assert tangle.pending_count == 4 and len(tangle) == 1
    assert tangle.missing_parents() == {txs[1].id}
    assert tangle.is_pending(txs[3].id)
    assert tangle.add(txs[1]) == txs[1:]
    assert tangle.pending_count == 0 and tangle.missing_parents() == set()
    assert tangle.tips() == [txs[-1].id]


def test_pending_waits_for_every_missing_parent() -> None:
    g = genesis()
    a, b = make_tx([g.id], 1), make_tx([g.id], 2)
    child = make_tx([a.id, b.id], 3)
    tangle = Tangle(g)
    assert tangle.add(child) == []
    assert tangle.missing_parents() == {a.id, b.id}
    assert tangle.add(a) == [a]
    assert tangle.is_pending(child.id) and tangle.missing_parents() == {b.id}
    assert tangle.add(b) == [b, child]


def test_pending_set_is_bounded_oldest_evicted() -> None:
    g = genesis()
    parents = [make_tx([g.id], i) for i in range(1, 4)]
    children = [make_tx([p.id], 10 + i) for i, p in enumerate(parents)]
    tangle = Tangle(g, max_pending=2)
    for child in children:
        tangle.add(child)
    assert tangle.pending_count == 2 and tangle.evicted_count == 1
    assert not tangle.is_pending(children[0].id)
    assert tangle.missing_parents() == {parents[1].id, parents[2].id}
    assert tangle.add(parents[0]) == [parents[0]]  # its child was evicted: nothing released
    assert tangle.add(parents[1]) == [parents[1], children[1]]
    dropper = Tangle(g, max_pending=0)
    assert dropper.add(children[0]) == [] and dropper.pending_count == 0
    assert dropper.evicted_count == 1
    with pytest.raises(ValueError):
        Tangle(g, max_pending=-1)


# ------------------------------------------------------------- property tests
@settings(max_examples=60, deadline=None)
@given(txs=dags(), order_seed=st.integers(0, 2**32 - 1))
def test_random_growth_in_any_arrival_order_keeps_invariants(
    txs: list, order_seed: int
) -> None:
    """Whatever order transactions arrive in, exactly those whose whole past arrived are in,
    parents always before children, and tips are exactly the unapproved."""
    parents = parent_map(txs)
    ancestors = {tx.id: reach(tx.id, parents) for tx in txs}
    arrivals = txs[1:]
    random.Random(order_seed).shuffle(arrivals)
    tangle = Tangle(txs[0], max_pending=len(txs))
    delivered = {txs[0].id}
    for tx in arrivals:
        entered = tangle.add(tx)
        delivered.add(tx.id)
        complete = {x for x in delivered if ancestors[x] <= delivered}
        assert {t.id for t in tangle.transactions()} == complete
        assert tx.id in {t.id for t in entered} or tangle.is_pending(tx.id)
        seen: set[str] = set()
        for t in tangle.topological():
            assert set(t.parents) <= seen
            seen.add(t.id)
        approved = {p for t in tangle.transactions() for p in t.parents}
        assert set(tangle.tips()) == complete - approved
    assert tangle.pending_count == 0 and len(tangle) == len(txs)


@settings(max_examples=60, deadline=None)
@given(txs=dags(), max_depth=st.integers(0, 8))
def test_cones_weights_heights_depths_match_brute_force(txs: list, max_depth: int) -> None:
    tangle = build(txs)
    parents = parent_map(txs)
    children = children_map(parents)
    weights = tangle.cumulative_weights()
    depths = tangle.depths()
    window = tangle.window(max_depth)
    window_weights = window.cumulative_weights()
    for tx in txs:
        x = tx.id
        future, past = reach(x, children), reach(x, parents)
        assert tangle.future_cone(x) == future
        assert tangle.past_cone(x) == past
        assert tangle.cumulative_weight(x) == weights[x] == 1 + len(future)
        assert sorted(tangle.approvers(x)) == sorted(children[x])
        assert tangle.height(x) == longest(x, parents)
        assert tangle.depth(x) == depths[x] == longest(x, children)
        node = tangle.index_of(x)
        assert (node in window) == (depths[x] <= max_depth)
        if node in window:
            assert window.depth[node] == depths[x]
            assert window_weights[node] == 1 + len(future)  # future cone lies in the window
    assert len(window) == sum(d <= max_depth for d in depths.values())


@settings(max_examples=40, deadline=None)
@given(txs=dags(), mark_seed=st.integers(0, 2**32 - 1), max_depth=st.integers(0, 8))
def test_window_confirmations_and_past_sizes_match_brute_force(
    txs: list, mark_seed: int, max_depth: int
) -> None:
    tangle = build(txs)
    parents = parent_map(txs)
    children = children_map(parents)
    window = tangle.window(max_depth)
    members = {tangle.id_of(node) for node in window.order}
    rng = random.Random(mark_seed)
    marks = {tangle.index_of(x): rng.randint(1, 3) for x in members if rng.random() < 0.4}
    confirmed = window.confirmations(marks)
    past_sizes = window.past_sizes()
    for x in members:
        node = tangle.index_of(x)
        expected = sum(w for m, w in marks.items() if tangle.id_of(m) in reach(x, children) | {x})
        assert confirmed[node] == expected
        assert past_sizes[node] == 1 + len(reach(x, parents) & members)


@settings(max_examples=40, deadline=None)
@given(txs=dags(), chunk=st.integers(1, 7), mark_seed=st.integers(0, 2**32 - 1))
def test_bitset_chunking_does_not_change_counts(txs: list, chunk: int, mark_seed: int) -> None:
    """Real tangles span many CHUNK_BITS passes; tiny chunks make small DAGs do the same."""
    rng = random.Random(mark_seed)
    marks = {node: rng.randint(1, 3) for node in range(len(txs)) if rng.random() < 0.5}
    one_pass = build(txs).window(None)
    expected = (one_pass.cumulative_weights(), one_pass.confirmations(marks),
                one_pass.past_sizes())
    with mock.patch.object(window_module, "CHUNK_BITS", chunk):
        chunked = build(txs).window(None)
        found = (chunked.cumulative_weights(), chunked.confirmations(marks),
                 chunked.past_sizes())
    assert found == expected


def test_window_order_puts_approvers_first_and_caches_per_version() -> None:
    txs = random_dag(random.Random(7), 60)
    tangle = build(txs)
    window = tangle.window(5)
    position = {node: i for i, node in enumerate(window.order)}
    for node in window.order:
        for approver in window.approvers(node):
            assert position[approver] < position[node]
    assert tangle.window(5) is window
    tangle.add(make_tx(tangle.tips()[:1], 999))
    assert tangle.window(5) is not window
    with pytest.raises(ValueError):
        tangle.window(-1)


# -------------------------------------------------------------- no recursion limit
def test_50k_deep_chain_needs_no_recursion() -> None:
    """Every query, a reversed-arrival pending release, walks from genesis, reference and
    export all run on a 50,000-deep chain (recursion would fail near 1,000)."""
    n = 50_000
    tangle, txs = chain(n)
    g, tip = txs[0].id, txs[-1].id
    assert tangle.height(tip) == n - 1 and tangle.depth(g) == n - 1
    assert tangle.cumulative_weight(g) == n
    assert len(tangle.past_cone(tip)) == n - 1 and len(tangle.future_cone(g)) == n - 1
    assert tangle.depths()[g] == n - 1
    assert tangle.window(None).cumulative_weights()[0] == n
    deep = RandomWalkSelector(particle_depth=(n - 1, n - 1), seed=1)
    assert deep.select(tangle, 2) == [tip, tip]  # walked all 50k steps from genesis
    assert reference(tangle, RandomWalkSelector(seed=2), top=1) == [tip]
    assert len(export_graph(tangle)["edges"]) == n - 1

    reversed_arrival = Tangle(txs[0], max_pending=n)
    for tx in reversed(txs[2:]):
        reversed_arrival.add(tx)
    assert len(reversed_arrival.add(txs[1])) == n - 1
    assert reversed_arrival.tips() == [tip]
