"""Local training and evaluation for a tree peer: one model adapter, reused for every step.

Building a Keras model costs seconds, so a peer builds its adapter once and loads weight
lists into it (set_weights checks them) for each evaluation or training. Evaluation is on
the peer's own validation split, which is what "better" and "acceptable" mean here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gridd.data import Dataset
from gridd.models import ModelAdapter, build_model
from gridd.tree.genesis import Genesis


@dataclass(frozen=True)
class Scores:
    accuracy: float
    loss: float

    def beats(self, other: Scores, margin: float = 0.0) -> bool:
        """Higher accuracy by more than margin; on an exact tie, lower loss."""
        if self.accuracy > other.accuracy + margin:
            return True
        return margin == 0.0 and self.accuracy == other.accuracy and self.loss < other.loss


class LocalTrainer:
    """Trains and evaluates weight lists on one peer's dataset."""

    def __init__(self, genesis: Genesis, dataset: Dataset, prefer: str = "auto",
                 seed: int = 0) -> None:
        self.recipe = genesis.recipe
        self.dataset = dataset
        self.model: ModelAdapter = build_model(
            genesis.recipe, genesis.weights, prefer, keras_model=genesis.keras_bytes, seed=seed
        )
        self.metric = genesis.recipe.metric
        self.samples = len(dataset.x)

    def evaluate(self, weights: Sequence[np.ndarray]) -> Scores:
        self.model.set_weights(weights)
        result = self.model.evaluate(self.dataset.x_val, self.dataset.y_val)
        return Scores(float(result[self.metric]), float(result["loss"]))

    def train(self, weights: Sequence[np.ndarray], seed: int | None = None
              ) -> tuple[list[np.ndarray], float]:
        """Train from `weights` for the recipe's local epochs; (new weights, seconds)."""
        self.model.set_weights(weights)
        start = time.perf_counter()
        self.model.train(self.dataset.x, self.dataset.y, seed=seed)
        return self.model.get_weights(), time.perf_counter() - start
