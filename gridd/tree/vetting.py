"""Which models may a peer average? Judged by what they do to an average, not on their own.

Under strong label skew every honest model is a specialist: scored alone on another peer's
validation data it can look as bad as noise (0 % on labels it never saw), so judging
candidates by their own accuracy throws away most of the network's work and leaves each
peer averaging its own kind. What separates a specialist from poison is what happens when
it is averaged in: half of a specialist mixed with a good model keeps most of that model's
skill; half of random weights, or of a model far from every honest one, destroys it.

So a candidate is kept when both hold, measured on the peer's own validation data:
- the loss of the half-half mix of candidate and *anchor* is at most the anchor's loss plus
  VET_TOLERANCE (nats);
- its distance from the anchor is at most MAX_DEVIATION times the anchor's norm (a model
  further from ours than ours is from zero is not an update of it).
The anchor is the lowest-loss model among the candidates and the peer's trusted model (its
own last trained one, or an observer's last consensus): an attacker cannot become the anchor
without doing better on the peer's data than everything the peer trusts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Weights = Sequence[np.ndarray]
LossOf = Callable[[Weights], float]


@dataclass(frozen=True)
class Verdict:
    """Kept ids (in the order given) and, for each rejected one, why."""

    kept: list[str]
    anchor_loss: float
    mix_loss: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # id -> "deviation" | "mix_loss"



def norm(weights: Weights) -> float:
    return math.sqrt(sum(float(np.sum(np.square(w, dtype=np.float64))) for w in weights))


def distance(a: Weights, b: Weights) -> float:
    return math.sqrt(sum(float(np.sum(np.square(x.astype(np.float64) - y)))
                         for x, y in zip(a, b, strict=True)))


def judge(
    ids: Sequence[str],
    weights: Sequence[Weights],
    loss_of: LossOf,
    *,
    trusted: Weights | None = None,
    tolerance: float = 1.0,
    max_deviation: float = 1.0,
    own_loss: Callable[[str, Weights], float] | None = None,
) -> Verdict:
    """Vet `weights` (one list per id) against an anchor; see the module docstring.

    `loss_of(weights)` is the loss on the judge's validation data; `own_loss(id, weights)`
    may serve a cached loss of a candidate alone. A loss that raises or is not finite
    counts as +inf, so such a candidate is never the anchor and never kept.
    """
    if not ids:
        return Verdict([], math.inf)
    loss_of = _safe(loss_of)
    alone = [_safe(own_loss)(i, w) if own_loss else loss_of(w)
             for i, w in zip(ids, weights, strict=True)]
    pool = [(loss, n) for n, loss in enumerate(alone)]
    if trusted is not None:
        pool.append((loss_of(trusted), -1))
    anchor_loss, at = min(pool, key=lambda p: (_finite(p[0]), p[1] == -1))
    anchor = trusted if at == -1 else weights[at]
    if anchor is None or not math.isfinite(anchor_loss):  # nothing usable to judge by
        return Verdict([], anchor_loss, {}, dict.fromkeys(ids, "mix_loss"))
    scale = norm(anchor)
    kept: list[str] = []
    mixes: dict[str, float] = {}
    rejected: dict[str, str] = {}
    for i, w in zip(ids, weights, strict=True):
        try:
            far = not distance(anchor, w) <= max_deviation * scale  # NaN counts as far
            mix = [0.5 * a + 0.5 * b for a, b in zip(anchor, w, strict=True)]
        except ValueError:  # another model's shapes
            far = True
        if far:
            rejected[i] = "deviation"
            continue
        loss = mixes[i] = loss_of(mix)
        if not loss <= anchor_loss + tolerance:  # NaN and inf fail too
            rejected[i] = "mix_loss"
            continue
        kept.append(i)
    return Verdict(kept, anchor_loss, mixes, rejected)


def _safe(fn: Callable[..., float]) -> Callable[..., float]:
    """A loss that raises (weights the model refuses: wrong shapes, NaN) is +inf."""

    def call(*args: object) -> float:
        try:
            value = float(fn(*args))
        except Exception:
            return math.inf
        return value if math.isfinite(value) else math.inf

    return call


def _finite(loss: float) -> float:
    return loss if math.isfinite(loss) else math.inf


def extrapolate(current: Weights, previous: Weights, momentum: float) -> list[np.ndarray]:
    """current + momentum * (current - previous): heavy-ball momentum without a server.

    In a tangle the average of the tips a peer builds on, minus the average of *their*
    parents, is the network's last step (FedAvg's pseudo-gradient); following it further is
    what FedAvgM's server momentum does, here done by every peer for itself.
    """
    return [(c + momentum * (c - p)).astype(c.dtype, copy=False)
            for c, p in zip(current, previous, strict=True)]
