"""Vetting by what a model does to an average: specialists stay, noise and poison go."""

from __future__ import annotations

import numpy as np
import pytest
from tree_helpers import DIGITS, fast_settings, make_peer

from gridd.data import Dataset
from gridd.models import build_model
from gridd.transport import MemoryNetwork
from gridd.tree.genesis import create_genesis
from gridd.tree.vetting import extrapolate, judge
from tangle import Tangle, Transaction, UniformSelector, frontier

Models = dict[str, list[np.ndarray]]


@pytest.fixture(scope="module")
def models(digits: tuple[np.ndarray, ...]) -> tuple[Models, np.ndarray, np.ndarray]:
    """A model good on digits 0-4 (the judge's labels), a specialist of 5-9 trained from the
    same start (it scores near 0 on 0-4 by itself), random weights, and the judge's data."""
    x, y = digits[0], digits[1]
    low, high = y < 5, y >= 5
    start = build_model(DIGITS, prefer="numpy", seed=0)
    start.train(x, y, epochs=2, seed=0)  # a shared history, as in a tangle
    base = start.get_weights()

    def trained(mask: np.ndarray, seed: int, labels: np.ndarray = y) -> list[np.ndarray]:
        m = build_model(DIGITS, base, prefer="numpy")
        m.train(x[mask], labels[mask], epochs=3, seed=seed)
        return m.get_weights()

    rng = np.random.default_rng(0)
    return ({
        "mine": trained(low, 1),
        "specialist": trained(high, 2),
        "noise": [rng.normal(0, 1.0, w.shape).astype(np.float32) for w in base],
        "flipped": trained(low, 3, labels=4 - y),  # poison: 0-4 taught backwards
    }, x[low][:200], y[low][:200])


def loss_on(x: np.ndarray, y: np.ndarray):  # noqa: ANN201
    model = build_model(DIGITS, prefer="numpy")

    def loss(weights: list[np.ndarray]) -> float:
        model.set_weights(weights)
        return float(model.evaluate(x, y)["loss"])

    def accuracy(weights: list[np.ndarray]) -> float:
        model.set_weights(weights)
        return float(model.evaluate(x, y)["accuracy"])

    return loss, accuracy


def test_a_specialist_of_other_labels_is_kept_and_noise_is_not(models) -> None:  # noqa: ANN001
    m, x, y = models
    loss, accuracy = loss_on(x, y)
    # Alone, on the judge's labels, the specialist is no better than noise: accuracy cannot
    # tell them apart, which is why vetting by it kept each peer on its own kind.
    assert accuracy(m["specialist"]) < 0.3 and accuracy(m["mine"]) > 0.9
    ids = ["mine", "specialist", "noise"]
    verdict = judge(ids, [m[i] for i in ids], loss)
    assert verdict.kept == ["mine", "specialist"], verdict
    assert verdict.rejected == {"noise": "deviation"}
    assert verdict.anchor_loss == pytest.approx(loss(m["mine"]))


def test_tolerance_trades_label_skew_against_poison(models) -> None:  # noqa: ANN001
    """A model taught this peer's labels backwards hurts a mix more than a specialist does,
    but at the default VET_TOLERANCE (chosen so that extreme label skew keeps working) it
    still passes: label flipping is the attack tree mode resists least (see the bench)."""
    m, x, y = models
    loss, _ = loss_on(x, y)
    ids = ["mine", "specialist", "flipped"]
    loose = judge(ids, [m[i] for i in ids], loss, tolerance=1.0)
    assert loose.kept == ids
    assert loose.mix_loss["flipped"] > loose.mix_loss["specialist"]
    tight = judge(ids, [m[i] for i in ids], loss, tolerance=0.3)
    assert tight.kept == ["mine", "specialist"] and tight.rejected == {"flipped": "mix_loss"}


def test_a_majority_of_noise_cannot_take_the_anchor_from_a_trusted_model(models) -> None:  # noqa: ANN001
    m, x, y = models
    loss, _ = loss_on(x, y)
    rng = np.random.default_rng(1)
    noise = {f"n{k}": [rng.normal(0, 1.0, w.shape).astype(np.float32) for w in m["mine"]]
             for k in range(10)}
    ids = [*noise, "specialist"]
    verdict = judge(ids, [noise.get(i) or m[i] for i in ids], loss, trusted=m["mine"])
    assert verdict.kept == ["specialist"]
    # With nothing trusted and only noise, the least bad noise is the anchor: the caller
    # must bring a trusted model (TreePeer does: its own last model, or its consensus).
    alone = judge(list(noise), list(noise.values()), loss, trusted=m["mine"])
    assert alone.kept == []


def test_nan_weights_are_rejected_not_averaged(models) -> None:  # noqa: ANN001
    m, x, y = models
    loss, _ = loss_on(x, y)
    bad = [w.copy() for w in m["mine"]]
    bad[0][0, 0] = np.nan
    verdict = judge(["mine", "bad"], [m["mine"], bad], loss)
    assert verdict.kept == ["mine"] and "bad" in verdict.rejected


def test_only_unusable_candidates_give_nothing_to_build_on(models) -> None:  # noqa: ANN001
    m, x, y = models
    loss, _ = loss_on(x, y)
    nan = [np.full_like(w, np.nan) for w in m["mine"]]
    wrong = [w[:1] for w in m["mine"]]  # another model's shapes
    verdict = judge(["nan", "wrong"], [nan, wrong], loss)
    assert verdict.kept == [] and set(verdict.rejected) == {"nan", "wrong"}
    mixed = judge(["mine", "wrong"], [m["mine"], wrong], loss)
    assert mixed.kept == ["mine"] and mixed.rejected == {"wrong": "deviation"}


def test_extrapolate_follows_the_last_step() -> None:
    current = [np.array([1.0, 2.0], dtype=np.float32)]
    previous = [np.array([0.0, 4.0], dtype=np.float32)]
    [out] = extrapolate(current, previous, 0.5)
    assert out.dtype == np.float32 and out.tolist() == [1.5, 1.0]
    assert extrapolate(current, previous, 0.0)[0].tolist() == [1.0, 2.0]


def _tx(parents: list[str], n: int) -> Transaction:
    return Transaction.create(parents, f"bafy{n}", "peer", 1_700_000_000.0 + n)


def test_frontier_lists_distinct_tips_most_reached_first() -> None:
    genesis = Transaction.create([], "bafy", "g", 0.0)
    t = Tangle(genesis)
    tips = [_tx([genesis.id], n) for n in range(6)]
    for tx in tips:
        t.add(tx)
    found = frontier(t, UniformSelector(seed=1), draws=200, rng=3)
    assert sorted(found) == sorted(tx.id for tx in tips)
    assert frontier(t, UniformSelector(seed=1), draws=200, rng=3, limit=2) == found[:2]
    assert frontier(t, UniformSelector(seed=1), draws=200, rng=3) == found  # seeded
    with pytest.raises(ValueError):
        frontier(t, UniformSelector(), draws=0)


def test_momentum_needs_two_tips_and_the_parents_weights(shards: list[Dataset]) -> None:
    """One tip's step is one peer's update: no momentum; two tips: average + 0.9 * step."""
    net = MemoryNetwork()
    genesis_id = create_genesis(net.store(), DIGITS, init_seed=3)
    peers = [make_peer(genesis_id, net.broker(f"p{i}"), net.store(), shards[i],
                       fast_settings(momentum=0.9), seed=i) for i in range(3)]
    try:
        a, b, c = peers
        first = a.train_step().tx_id
        second = b.train_step().tx_id  # b has not heard a: both approve genesis
        assert first and second
        for p in peers:
            p.process_messages()
        one = c._start_weights([first])
        assert all(np.array_equal(x, y) for x, y in zip(one, c.weights_of(first), strict=True))
        two = c._start_weights([first, second])
        avg = c.average([first, second])
        expected = extrapolate(avg, c.average([genesis_id]), 0.9)
        assert all(np.allclose(x, y) for x, y in zip(two, expected, strict=True))
    finally:
        for p in peers:
            p.close()
