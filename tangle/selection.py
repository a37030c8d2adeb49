"""Tip selection: IOTA-style weighted random walks, an accuracy-biased walk, uniform tips.

Walks start at "particles": transactions whose depth (longest path up to a tip) lies in a
window such as 15..25, instead of at genesis, so a walk costs O(window) whatever the size of
the tangle. Every selector is reproducible: pass an int seed or a `random.Random` (a numpy
Generator also works) per call, or give the selector a seed once.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, MutableMapping, Sequence
from itertools import accumulate
from typing import Any, Protocol

from tangle.graph import Tangle
from tangle.transaction import Transaction
from tangle.window import RecentWindow

RandomSource = random.Random | int | Any | None
"""random.Random, an int seed, a numpy Generator, or None (use the selector's own stream)."""

DEFAULT_PARTICLE_DEPTH = (15, 25)
DRAWS_PER_TIP = 4
"""select() makes at most count * DRAWS_PER_TIP draws while looking for distinct tips."""


def as_random(rng: RandomSource, default: random.Random) -> random.Random:
    """Turn any accepted randomness source into a random.Random."""
    if rng is None:
        return default
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return random.Random(rng)
    integers = getattr(rng, "integers", None)  # numpy.random.Generator, without importing numpy
    if callable(integers):
        return random.Random(int(integers(0, 2**63 - 1)))
    raise TypeError(f"rng: expected random.Random, int seed or numpy Generator, got {rng!r}")


class Sampler(Protocol):
    """What `reference` needs: independent tip draws."""

    def sample(self, tangle: Tangle, n: int, rng: RandomSource = None) -> list[str]: ...


class TipSelector(ABC):
    """Base class: one `_draw` per independent tip draw; sampling and selection on top."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    @abstractmethod
    def _drawer(self, tangle: Tangle, rng: random.Random) -> Callable[[], int]:
        """Return a function that draws one tip (as a node index) per call."""

    def sample(self, tangle: Tangle, n: int, rng: RandomSource = None) -> list[str]:
        """n independent draws; tips repeat as often as the selector picks them."""
        draw = self._drawer(tangle, as_random(rng, self.rng))
        return [tangle.id_of(draw()) for _ in range(n)]

    def select(self, tangle: Tangle, count: int = 2, rng: RandomSource = None) -> list[str]:
        """Exactly `count` tip ids to approve, distinct whenever possible.

        Draws until `count` distinct tips are found or count * DRAWS_PER_TIP draws were
        made; if fewer distinct tips turned up (a tangle with one tip, or a walk that is
        nearly deterministic), the found ones are repeated in order to fill `count`.
        """
        if count < 1:
            raise ValueError("count must be >= 1")
        draw = self._drawer(tangle, as_random(rng, self.rng))
        found: dict[int, None] = {}
        for _ in range(count * DRAWS_PER_TIP):
            found[draw()] = None
            if len(found) == count:
                break
        chosen = list(found)
        while len(chosen) < count:
            chosen.append(chosen[len(chosen) % len(found)])
        return [tangle.id_of(node) for node in chosen]


class UniformSelector(TipSelector):
    """Every current tip equally likely: the baseline."""

    def _drawer(self, tangle: Tangle, rng: random.Random) -> Callable[[], int]:
        tips = tangle.tip_nodes()
        return lambda: rng.choice(tips)

    def select(self, tangle: Tangle, count: int = 2, rng: RandomSource = None) -> list[str]:
        """`count` distinct tips drawn uniformly (repeats only if there are fewer tips)."""
        if count < 1:
            raise ValueError("count must be >= 1")
        tips = tangle.tip_nodes()
        chosen = as_random(rng, self.rng).sample(tips, min(count, len(tips)))
        while len(chosen) < count:
            chosen.append(chosen[len(chosen) % len(tips)])
        return [tangle.id_of(node) for node in chosen]


Step = tuple[Sequence[int], list[float] | None]
"""A node's approvers and their cumulative transition weights (None: 0 or 1 approver)."""


def _walk(
    start: int,
    steps: dict[int, Step],
    make_step: Callable[[int], Step],
    rand: Callable[[], float],
) -> int:
    """Move to a weighted-random approver until reaching a tip (no recursion)."""
    node = start
    while True:
        step = steps.get(node)
        if step is None:
            step = steps[node] = make_step(node)
        choices, cumulative = step
        if cumulative is None:
            if not choices:
                return node
            node = choices[0]
            continue
        i = bisect_right(cumulative, rand() * cumulative[-1])
        node = choices[i if i < len(choices) else -1]


def _transition(choices: Sequence[int], ratings: Sequence[float], alpha: float) -> Step:
    """IOTA weights exp(alpha * (r - r_max)), as a cumulative list for bisection."""
    if len(choices) < 2:
        return choices, None
    top = max(ratings)
    if top == -math.inf or alpha == 0.0:  # alpha 0: unbiased, even among unscorable (-inf)
        weights = [1.0] * len(ratings)
    else:
        weights = [math.exp(alpha * (r - top)) for r in ratings]
    return choices, list(accumulate(weights))


class _WalkSelector(TipSelector):
    def __init__(
        self,
        alpha: float,
        particle_depth: tuple[int, int] = DEFAULT_PARTICLE_DEPTH,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        shallowest, deepest = particle_depth
        if not 0 <= shallowest <= deepest:
            raise ValueError(
                f"particle_depth must be (lo, hi) with 0 <= lo <= hi, got {particle_depth}"
            )
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha must be finite and >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.particle_depth = (int(shallowest), int(deepest))

    def _drawer(self, tangle: Tangle, rng: random.Random) -> Callable[[], int]:
        window = tangle.window(self.particle_depth[1])
        particles = window.particles(*self.particle_depth)
        steps, make_step = self._steps(tangle, window)
        choice, rand = rng.choice, rng.random
        return lambda: _walk(choice(particles), steps, make_step, rand)

    @abstractmethod
    def _steps(
        self, tangle: Tangle, window: RecentWindow
    ) -> tuple[dict[int, Step], Callable[[int], Step]]:
        """The transition-table cache for one selection and how to fill it."""


class RandomWalkSelector(_WalkSelector):
    """IOTA random walk: rating = exact cumulative weight, weight exp(alpha·(r − r_max)).

    alpha = 0 is an unbiased walk; larger alpha follows the heaviest branch more closely.
    Ratings and transition tables are cached with the window, i.e. until the next insertion.
    """

    def __init__(
        self,
        alpha: float = 0.001,
        particle_depth: tuple[int, int] = DEFAULT_PARTICLE_DEPTH,
        seed: int | None = None,
    ) -> None:
        super().__init__(alpha, particle_depth, seed)

    def _steps(
        self, tangle: Tangle, window: RecentWindow
    ) -> tuple[dict[int, Step], Callable[[int], Step]]:
        steps: dict[int, Step] = window.memo.setdefault(("walk", self.alpha), {})
        weights = window.cumulative_weights()
        alpha = self.alpha

        def make_step(node: int) -> Step:
            choices = window.approvers(node)
            return _transition(choices, [weights[c] for c in choices], alpha)

        return steps, make_step


class AccuracyWalkSelector(_WalkSelector):
    """Walk biased by a caller-supplied score (e.g. accuracy on local validation data).

    Weight of an approver = exp(alpha·(score − best score among siblings)); with scores in
    [0, 1] an alpha of 10 makes a 0.1 accuracy gap a factor e. Each candidate is scored at
    most once per select()/sample() call; pass `cache` (any mutable mapping from id to score)
    to keep scores across calls and clear it when the local data changes. Scores that are
    not finite count as the worst possible.
    """

    def __init__(
        self,
        score: Callable[[Transaction], float],
        alpha: float = 10.0,
        particle_depth: tuple[int, int] = DEFAULT_PARTICLE_DEPTH,
        seed: int | None = None,
        cache: MutableMapping[str, float] | None = None,
    ) -> None:
        super().__init__(alpha, particle_depth, seed)
        self.score = score
        self.cache = cache

    def _steps(
        self, tangle: Tangle, window: RecentWindow
    ) -> tuple[dict[int, Step], Callable[[int], Step]]:
        per_call: dict[int, float] = {}
        shared = self.cache
        score, alpha = self.score, self.alpha

        def rating(node: int) -> float:
            value = per_call.get(node)
            if value is None:
                tx = tangle.tx_at(node)
                if shared is not None and tx.id in shared:
                    value = shared[tx.id]
                else:
                    value = float(score(tx))
                    if not math.isfinite(value):
                        value = -math.inf
                    if shared is not None:
                        shared[tx.id] = value
                per_call[node] = value
            return value

        def make_step(node: int) -> Step:
            choices = window.approvers(node)
            if len(choices) < 2:
                return choices, None
            return _transition(choices, [rating(c) for c in choices], alpha)

        return {}, make_step
