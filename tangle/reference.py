"""Choosing the reference (consensus) model: which recent transactions do the tips agree on?

Sample `rounds * count` tips with a selector. For a transaction x of the recent window:

    confidence(x) = share of the samples that approve x directly or indirectly (or are x)
    approved(x)   = 1 + number of window transactions x approves directly or indirectly
    score(x)      = confidence(x) / max confidence  *  approved(x) / max approved

This is the "weighted confidence" of osmhpi/learning-tangle, whose second factor counted
the transactions a candidate approves (how much of the others' work it already contains).
Using cumulative weight (1 + |future cone|) there instead would be degenerate: confidence
and cumulative weight both grow towards genesis, so their product always prefers the oldest
model. Confidence alone ties at 1.0 for everything old enough; the approved factor breaks
the tie towards the newest transaction nearly every tip already builds on. Counting only
inside the window keeps the cost independent of the size of the tangle, and everything
below the window is, in a healthy tangle, approved by all candidates alike.

Candidates are the members of `tangle.window(window)`; deeper transactions are not scored.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tangle.graph import Tangle
from tangle.selection import RandomSource, Sampler

DEFAULT_ROUNDS = 35
DEFAULT_WINDOW = 25


@dataclass(frozen=True, slots=True)
class Candidate:
    """One scored transaction, with the parts of its score (for metrics and plots)."""

    id: str
    confidence: float
    approved: int
    cumulative_weight: int
    score: float


def rank(
    tangle: Tangle,
    selector: Sampler,
    rounds: int = DEFAULT_ROUNDS,
    count: int = 2,
    rng: RandomSource = None,
    window: int = DEFAULT_WINDOW,
) -> list[Candidate]:
    """All window transactions with confidence > 0, best score first.

    Ties go to higher confidence, then more approved, then the later arrival.
    """
    if rounds < 1 or count < 1:
        raise ValueError("rounds and count must be >= 1")
    samples = selector.sample(tangle, rounds * count, rng)
    marks = Counter(tangle.index_of(tip) for tip in samples)
    members = tangle.window(window)
    confirmed = members.confirmations(marks)
    approved = members.past_sizes()
    weights = members.cumulative_weights()
    total = len(samples)
    nodes = [node for node, hits in confirmed.items() if hits]
    if not nodes:
        return []
    top_hits = max(confirmed[node] for node in nodes)
    top_approved = max(approved[node] for node in nodes)

    def score(node: int) -> float:
        return (confirmed[node] / top_hits) * (approved[node] / top_approved)

    nodes.sort(key=lambda n: (score(n), confirmed[n], approved[n], n), reverse=True)
    return [
        Candidate(
            id=tangle.id_of(node),
            confidence=confirmed[node] / total,
            approved=approved[node],
            cumulative_weight=weights[node],
            score=score(node),
        )
        for node in nodes
    ]


def confidence(
    tangle: Tangle,
    selector: Sampler,
    rounds: int = DEFAULT_ROUNDS,
    count: int = 2,
    rng: RandomSource = None,
    window: int = DEFAULT_WINDOW,
) -> dict[str, float]:
    """Share of sampled tips confirming each window transaction (only those above 0)."""
    return {c.id: c.confidence for c in rank(tangle, selector, rounds, count, rng, window)}


def reference(
    tangle: Tangle,
    selector: Sampler,
    rounds: int = DEFAULT_ROUNDS,
    top: int = 1,
    rng: RandomSource = None,
    count: int = 2,
    window: int = DEFAULT_WINDOW,
) -> list[str]:
    """Ids of the `top` best-scored transactions; the caller averages their weights."""
    if top < 1:
        raise ValueError("top must be >= 1")
    return [c.id for c in rank(tangle, selector, rounds, count, rng, window)[:top]]


def frontier(
    tangle: Tangle,
    selector: Sampler,
    draws: int,
    rng: RandomSource = None,
    limit: int | None = None,
) -> list[str]:
    """The distinct tips `draws` walks reach, the most reached first (ties: later arrival).

    When many peers train at once, the tangle's newest layer holds many concurrent tips,
    one per peer; averaging all the acceptable ones is what FedAvg does with a round, while
    averaging a fixed few leaves each peer with a biased sample of the network's work.
    """
    if draws < 1:
        raise ValueError("draws must be >= 1")
    hits = Counter(tangle.index_of(tip) for tip in selector.sample(tangle, draws, rng))
    order = sorted(hits, key=lambda node: (hits[node], node), reverse=True)
    return [tangle.id_of(node) for node in order[:limit]]
