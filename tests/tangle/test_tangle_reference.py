"""Reference model choice: confidence from sampled tips, scored and ranked."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tangle_testkit import build, chain, children_map, dags, parent_map, reach

from tangle import RandomWalkSelector, Tangle, confidence, rank, reference
from tangle.bench import grow


class FixedSampler:
    """Returns a preset list of tips, so confidence has one exact expected value."""

    def __init__(self, tips: list[str]) -> None:
        self.tips = tips
        self.asked: list[int] = []

    def sample(self, tangle: Tangle, n: int, rng: object = None) -> list[str]:
        self.asked.append(n)
        return [self.tips[i % len(self.tips)] for i in range(n)]


@settings(max_examples=50, deadline=None)
@given(txs=dags(), seed=st.integers(0, 2**32 - 1), window=st.integers(0, 6))
def test_confidence_and_score_match_brute_force(txs: list, seed: int, window: int) -> None:
    tangle = build(txs)
    parents = parent_map(txs)
    children = children_map(parents)
    rng = random.Random(seed)
    sampler = FixedSampler([rng.choice(tangle.tips()) for _ in range(rng.randint(1, 5))])
    ranked = rank(tangle, sampler, rounds=3, count=2, window=window)
    assert sampler.asked == [6]
    samples = sampler.sample(tangle, 6)
    depths = tangle.depths()
    members = {x for x, d in depths.items() if d <= window}
    expected_conf = {
        x: sum(tip in reach(x, children) | {x} for tip in samples) / 6 for x in members
    }
    expected_conf = {x: c for x, c in expected_conf.items() if c > 0}
    assert {c.id: c.confidence for c in ranked} == pytest.approx(expected_conf)
    approved = {x: 1 + len(reach(x, parents) & members) for x in expected_conf}
    top_conf, top_approved = max(expected_conf.values()), max(approved.values())
    for c in ranked:
        assert c.approved == approved[c.id]
        assert c.cumulative_weight == 1 + len(reach(c.id, children))
        assert c.score == pytest.approx(
            expected_conf[c.id] / top_conf * approved[c.id] / top_approved
        )
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    assert confidence(tangle, sampler, 3, 2, window=window) == pytest.approx(expected_conf)


def test_reference_on_a_chain_is_the_newest_not_the_oldest() -> None:
    """Every chain member is confirmed by every sample; the tip contains the most work.
    (Confidence times cumulative weight would pick the oldest: the reason for `approved`.)"""
    tangle, txs = chain(100)
    ranked = rank(tangle, RandomWalkSelector(seed=0))
    assert all(c.confidence == 1.0 for c in ranked)
    assert len(ranked) == 26  # the default window: depth 0..25
    assert reference(tangle, RandomWalkSelector(seed=0), top=3) == [
        txs[-1].id, txs[-2].id, txs[-3].id
    ]


def test_reference_on_a_grown_tangle_is_reproducible_and_recent() -> None:
    tangle = grow(2_000, seed=5)
    selector = RandomWalkSelector()
    first = reference(tangle, selector, rounds=35, top=4, rng=7)
    assert first == reference(tangle, selector, rounds=35, top=4, rng=7)
    assert len(first) == len(set(first)) == 4
    depths = tangle.window(25).depth
    assert all(depths[tangle.index_of(x)] <= 25 for x in first)
    ranked = rank(tangle, selector, rng=7)
    assert [c.id for c in ranked[:4]] == first
    assert all(0 < c.confidence <= 1 for c in ranked)


def test_bad_arguments() -> None:
    tangle, _ = chain(5)
    selector = RandomWalkSelector()
    with pytest.raises(ValueError):
        rank(tangle, selector, rounds=0)
    with pytest.raises(ValueError):
        rank(tangle, selector, count=0)
    with pytest.raises(ValueError):
        reference(tangle, selector, top=0)
