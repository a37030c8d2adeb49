"""One round of local work on a worker: take the global weights, evaluate, train, hand back.

The same code runs on compute workers and in the in-process simulation
(gridd.federated.simulation), so the benchmark's baseline trains exactly as the workers do.
The model is loaded once per job (its optimizer's fresh state is kept and restored at every
round, so Adam's moments never leak from one round into the next); each round only sets
weights. FedProx's proximal term is gridd's own code, never the client's: after every batch
each trainable weight w moves towards the round's starting point w0 by lr * mu * (w - w0),
the gradient step of mu/2 * ||w - w0||^2 applied after the optimizer's step (the same
decoupling as decoupled weight decay). A seeded round shuffles the same way every time.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gridd.compute.protocol import clean_logs
from gridd.data import Dataset
from gridd.models.base import WeightSpec, spec_of
from gridd.wire import encode_weights

# A compiled but never-trained model saves an unbuilt optimizer; Keras warns on every load.
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")

WEIGHTS_SLACK = 64 * 1024  # over the model's own weights blob: room for metadata, no more


class LocalError(Exception):
    """A round a worker cannot do; `reason` is the decline code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class LocalResult:
    weights: list[np.ndarray] | None  # None for an evaluation-only round
    samples: int
    metrics: dict[str, float]  # training metrics of the last local epoch
    evaluation: dict[str, float]  # the received model on the held-out rows (may be empty)
    seconds: float  # compute: evaluating and training


@dataclass
class LocalModel:
    """A job's model on this worker, loaded once; `lock` serialises rounds that use it."""

    model: Any
    spec: WeightSpec
    weights_cap: int  # most bytes a weights blob of this model may have
    optimizer_state: list[np.ndarray]
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def wrap(cls, model: Any) -> LocalModel:
        weights = model.get_weights()
        opt = model.optimizer
        opt.build(model.trainable_variables)
        state = [np.array(v.numpy()) for v in opt.variables]
        return cls(model, spec_of(weights), len(encode_weights(weights)) + WEIGHTS_SLACK, state)

    def input_shape(self) -> tuple[int, ...] | None:
        shape = getattr(self.model, "input_shape", None)
        if not isinstance(shape, tuple):
            return None
        return tuple(int(d) for d in shape[1:]) if all(d is not None for d in shape[1:]) \
            else None

    def output_units(self) -> int | None:
        shape = getattr(self.model, "output_shape", None)
        if isinstance(shape, tuple) and len(shape) == 2 and isinstance(shape[1], int):
            return shape[1]
        return None

    def check_data(self, data: Dataset, name: str) -> None:
        """LocalError('incompatible') when the dataset cannot feed this model."""
        want = self.input_shape()
        have = tuple(data.x.shape[1:])
        if want is not None and want != have:
            raise LocalError("incompatible", f"dataset {name!r} has features of shape {have}, "
                             f"the model takes {want}")
        units = self.output_units()
        top = int(max(data.y.max(initial=0), data.y_val.max(initial=0)))
        if units is not None and units > 1 and top >= units:
            raise LocalError("incompatible", f"dataset {name!r} has labels up to {top}, the "
                             f"model has {units} outputs")

    def run_round(self, weights: list[np.ndarray], data: Dataset, *, epochs: int,
                  batch_size: int, mu: float = 0.0, evaluate: bool = True,
                  should_stop: Callable[[], bool] = lambda: False,
                  seed: int | None = None) -> LocalResult:
        """Set the global weights, evaluate them on the held-out rows, train `epochs`.

        Batches go through train_on_batch rather than fit: a round is a few batches, and
        fit's per-call setup cost five times the training itself (digits MLP, 150 rows:
        67 ms vs 12 ms), which every round pays on every worker.
        """
        with self.lock:
            t0 = time.perf_counter()
            self.model.set_weights(weights)
            evaluation: dict[str, float] = {}
            if evaluate and len(data.x_val):
                evaluation = {**evaluate_model(self.model, data.x_val, data.y_val),
                              "samples": float(len(data.x_val))}
            metrics: dict[str, float] = {}
            new: list[np.ndarray] | None = None
            if epochs > 0:
                for var, value in zip(self.model.optimizer.variables, self.optimizer_state,
                                      strict=True):
                    var.assign(value)
                rng = np.random.default_rng(seed)
                try:
                    metrics = self._train(data, epochs, batch_size, mu, should_stop, rng)
                except LocalError:
                    raise
                except Exception as e:  # shapes the checks could not see, a loss mismatch
                    raise LocalError("training_error",
                                     f"training failed: {type(e).__name__}: {e}") from None
                new = [np.asarray(w, dtype=np.float32) if w.dtype.kind == "f" else w
                       for w in self.model.get_weights()]
                if not all(np.isfinite(w).all() for w in new):
                    raise LocalError("diverged", "training produced NaN or inf weights "
                                     "(learning rate too high?)")
            return LocalResult(new, len(data.x) if epochs > 0 else 0, metrics, evaluation,
                               time.perf_counter() - t0)

    def _train(self, data: Dataset, epochs: int, batch_size: int, mu: float,
               should_stop: Callable[[], bool], rng: np.random.Generator) -> dict[str, float]:
        """Shuffled mini-batches; the last epoch's metrics, averaged over its rows."""
        model = self.model
        anchor = [np.array(v.numpy()) for v in model.trainable_variables] if mu > 0 else []
        n = len(data.x)
        sums: dict[str, float] = {}
        for _ in range(epochs):
            order = rng.permutation(n)
            sums = {}
            for start in range(0, n, batch_size):
                if should_stop():
                    raise LocalError("stopped", "stopped before the round ended")
                idx = order[start:start + batch_size]
                logs = model.train_on_batch(data.x[idx], data.y[idx], return_dict=True)
                for k, v in clean_logs(logs).items():
                    sums[k] = sums.get(k, 0.0) + v * len(idx)
                if mu > 0:  # FedProx: w -= lr * mu * (w - w0), after the optimizer's step
                    step = float(np.asarray(model.optimizer.learning_rate)) * mu
                    for var, start_value in zip(model.trainable_variables, anchor,
                                                strict=True):
                        value = var.numpy()
                        var.assign(value - step * (value - start_value))
        return {k: v / n for k, v in sums.items()}


def evaluate_model(model: Any, x: np.ndarray, y: np.ndarray, chunk: int = 1024
                   ) -> dict[str, float]:
    """Loss and metrics of `model` on (x, y), row-weighted over chunks (test_on_batch: a
    tenth of evaluate's per-call cost)."""
    sums: dict[str, float] = {}
    for start in range(0, len(x), chunk):
        part = slice(start, start + chunk)
        logs = clean_logs(model.test_on_batch(x[part], y[part], return_dict=True))
        rows = len(x[part])
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v * rows
    return {k: v / len(x) for k, v in sums.items()} if len(x) else {}
