"""Federated training in one process, with the workers' own code: the baseline and a lab.

`simulate` runs the rounds a federated job would, without a network: every part trains
with gridd.federated.local_training (the code the workers run), the strategy aggregates,
and the global model is evaluated on `validation_data` after each round. The benchmark
compares a real job with it on the same partition; a notebook can use it to try a strategy
before asking workers for their time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gridd.data import Dataset
from gridd.federated.local_training import LocalModel, evaluate_model
from gridd.strategies import Strategy, Update

Tamper = Callable[[int, list[np.ndarray]], list[np.ndarray]]  # (part index, weights) -> sent


def simulate(model: Any, parts: Sequence[tuple[np.ndarray, np.ndarray]], *, rounds: int,
             strategy: Strategy, local_epochs: int = 1, batch_size: int = 32,
             validation_data: tuple[np.ndarray, np.ndarray] | None = None,
             tamper: Tamper | None = None, seed: int | None = 0) -> dict[str, list[float]]:
    """Per-round {"val_loss", "val_accuracy", ...} of FedAvg-style rounds over all parts.

    `model` is compiled; its weights are the starting point and are left as they were.
    `tamper(i, weights)` replaces what part i sends (an attacker); None: everyone honest.
    """
    from gridd.models.keras_model import load_keras_file, save_keras_bytes

    local = LocalModel.wrap(load_keras_file(save_keras_bytes(model), compile=True,
                                            max_params=None))
    weights = [np.asarray(w) for w in model.get_weights()]
    empty = np.zeros((0,), np.int64)
    data = [Dataset(np.asarray(x, np.float32), np.asarray(y), np.asarray(x)[:0], empty)
            for x, y in parts]
    history: dict[str, list[float]] = {}
    for r in range(rounds):
        updates = []
        for i, d in enumerate(data):
            out = local.run_round(weights, d, epochs=local_epochs, batch_size=batch_size,
                                  mu=float(strategy.local_options().get("mu", 0.0)),
                                  evaluate=False,
                                  seed=None if seed is None else seed * 100_003 + r * 1_009 + i)
            assert out.weights is not None
            sent = out.weights if tamper is None else tamper(i, out.weights)
            updates.append(Update(sent, out.samples, f"part{i}"))
        weights = strategy.aggregate(weights, updates)
        if validation_data is not None:
            local.model.set_weights(weights)
            figures = evaluate_model(local.model, *validation_data)
            for k, v in figures.items():
                history.setdefault(f"val_{k}", []).append(float(v))
    return history
