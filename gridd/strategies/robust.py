"""Aggregation rules that a few bad updates cannot drag far: coordinate-wise median and
trimmed mean (Yin et al. 2018) and Krum / Multi-Krum (Blanchard et al. 2017).

They ignore `samples` (except Multi-Krum with weighted=True among the updates it keeps):
a sample count is only a claim, and a robust rule that trusts claims is not robust.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gridd.models.base import average_weights
from gridd.strategies.averaging import FedAvg
from gridd.strategies.base import Strategy, StrategyError, Update, Weights, count, real, stacked


class FedMedian(Strategy):
    """Coordinate-wise median of the updates (unweighted; the mean of the two middle values
    when their number is even)."""

    name = "fedmedian"

    def aggregate(self, current: Weights, updates: Sequence[Update]) -> Weights:
        return [np.median(stacked(updates, i), axis=0) for i in range(len(current))]


class TrimmedMean(Strategy):
    """Coordinate-wise trimmed mean: per coordinate drop the k largest and k smallest values
    and average the rest (unweighted).

    k is `trim` when given (then a round needs 2k + 1 updates), else floor(beta·n) for the
    n updates of the round (beta in [0, 0.5), so something always remains). Default beta
    0.1: with 10 workers that trims one value each side; to resist 2 attackers of 10 use
    beta=0.2 or trim=2.
    """

    name = "trimmed_mean"

    def __init__(self, beta: float | None = None, trim: int | None = None) -> None:
        if beta is not None and trim is not None:
            raise StrategyError("trimmed_mean: give beta or trim, not both")
        self.trim = None if trim is None else count("trimmed_mean trim", trim, 0)
        self.beta = None if trim is not None else real(
            "trimmed_mean beta", 0.1 if beta is None else beta, 0.0, 0.5, open_high=True
        )

    def min_updates(self) -> int:
        return 1 if self.trim is None else 2 * self.trim + 1

    def cut(self, n: int) -> int:
        """How many values are dropped at each end of a coordinate for n updates."""
        return self.trim if self.trim is not None else int(np.floor(self.beta * n + 1e-9))

    def aggregate(self, current: Weights, updates: Sequence[Update]) -> Weights:
        n = len(updates)
        k = self.cut(n)  # n >= 2k + 1: min_updates() (trim) or beta < 0.5 guarantees it
        out = []
        for i in range(len(current)):
            s = np.sort(stacked(updates, i), axis=0)
            out.append(s[k : n - k].mean(axis=0))
        return out

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "beta": self.beta, "trim": self.trim}


class Krum(Strategy):
    """Krum (m=1) and Multi-Krum (m>1): keep the update(s) closest to their neighbours.

    Each update's score is the sum of squared L2 distances to its n - f - 2 nearest other
    updates; the m lowest scores win (ties go to the earlier update). m=1 returns that update;
    m>1 averages the winners, plainly by default or by samples with weighted=True.
    Krum's guarantee needs n >= 2f + 3 updates for f attackers.

    f=None (default) assumes the most attackers the round's n tolerates, f = floor((n-3)/2),
    so a job needs only 3 updates and the rule adapts to how many arrived (4 updates: f=0,
    scores over 2 neighbours, which still isolates one far outlier; 10 updates: f=3). Give f
    to fix it; then `min_updates()` is 2f + 3 (and at least f + m).

    After each aggregate, `last_selected` lists the kept updates' senders best first
    (`last_selected_indices` their positions, `last_scores` every update's score) so the
    coordinator can log them.
    """

    name = "krum"

    def __init__(self, f: int | None = None, m: int = 1, weighted: bool = False) -> None:
        self.f = None if f is None else count("krum f", f, 0)
        self.m = count("krum m", m, 1)
        if not isinstance(weighted, bool):
            raise StrategyError(f"krum weighted: expected a bool, got {type(weighted).__name__}")
        self.weighted = weighted
        self.last_selected: list[str] = []
        self.last_selected_indices: list[int] = []
        self.last_scores: list[float] = []

    def attackers(self, n: int) -> int:
        """The f Krum assumes for a round of n updates."""
        return self.f if self.f is not None else max(0, (n - 3) // 2)

    def min_updates(self) -> int:
        if self.f is not None:
            return max(2 * self.f + 3, self.f + self.m)
        n = 3
        while n - self.attackers(n) < self.m:
            n += 1
        return n

    def aggregate(self, current: Weights, updates: Sequence[Update]) -> Weights:
        n = len(updates)
        f = self.attackers(n)
        if n < 2 * f + 3 or n - f < self.m:
            raise StrategyError(
                f"krum: f={f}, m={self.m} needs at least {max(2 * f + 3, f + self.m)} updates, "
                f"got {n}"
            )
        dist = np.zeros((n, n))
        for i in range(len(current)):
            s = stacked(updates, i).reshape(n, -1)
            for a in range(n - 1):
                diff = s[a + 1 :] - s[a]
                sq = np.einsum("ij,ij->i", diff, diff)
                dist[a, a + 1 :] += sq
                dist[a + 1 :, a] += sq
        np.fill_diagonal(dist, np.inf)
        scores = np.sort(dist, axis=1)[:, : n - f - 2].sum(axis=1)
        best = [int(j) for j in np.argsort(scores, kind="stable")[: self.m]]
        kept = [updates[j] for j in best]
        if self.weighted:
            result = FedAvg().aggregate(current, kept)
        else:
            result = average_weights([u.weights for u in kept])
        self.last_selected = [u.sender for u in kept]
        self.last_selected_indices = best
        self.last_scores = [float(x) for x in scores]
        return result

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "f": self.f, "m": self.m, "weighted": self.weighted}
