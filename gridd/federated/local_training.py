"""One round of local work on a worker: take the global weights, evaluate, train, hand back.

The same code runs on compute workers and in the in-process simulation
(gridd.federated.simulation), so the benchmark's baseline trains exactly as the workers do.
The model is loaded once per job (its optimizer's fresh state is kept and restored at every
round, so Adam's moments never leak from one round into the next); each round only sets
weights. FedProx's proximal term is gridd's own code, never the client's: after every batch
each trainable weight w moves towards the round's starting point w0 by lr * mu * (w - w0),
the gradient step of mu/2 * ||w - w0||^2 applied after the optimizer's step (the same
decoupling as decoupled weight decay).
"""

from __future__ import annotations

import functools
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
        """Set the global weights, evaluate them on the held-out rows, train `epochs`."""
        with self.lock:
            t0 = time.perf_counter()
            self.model.set_weights(weights)
            evaluation: dict[str, float] = {}
            if evaluate and len(data.x_val):
                out = self.model.evaluate(data.x_val, data.y_val, batch_size=max(batch_size, 256),
                                          verbose=0, return_dict=True)
                evaluation = {**clean_logs(out), "samples": float(len(data.x_val))}
            metrics: dict[str, float] = {}
            new: list[np.ndarray] | None = None
            if epochs > 0:
                for var, value in zip(self.model.optimizer.variables, self.optimizer_state,
                                      strict=True):
                    var.assign(value)
                if seed is not None:
                    import keras

                    keras.utils.set_random_seed(seed)
                stopper, proximal = _callbacks()
                callbacks = [stopper(should_stop)]
                if mu > 0:
                    callbacks.append(proximal(mu))
                try:
                    history = self.model.fit(data.x, data.y, epochs=epochs,
                                             batch_size=batch_size, verbose=0, shuffle=True,
                                             callbacks=callbacks)
                except Exception as e:  # shapes the checks could not see, a loss mismatch
                    raise LocalError("training_error",
                                     f"model.fit failed: {type(e).__name__}: {e}") from None
                if should_stop():
                    raise LocalError("stopped", "stopped before the round ended")
                metrics = clean_logs({k: v[-1] for k, v in history.history.items() if v})
                new = [np.asarray(w, dtype=np.float32) if w.dtype.kind == "f" else w
                       for w in self.model.get_weights()]
                if not all(np.isfinite(w).all() for w in new):
                    raise LocalError("diverged", "training produced NaN or inf weights "
                                     "(learning rate too high?)")
            return LocalResult(new, len(data.x) if epochs > 0 else 0, metrics, evaluation,
                               time.perf_counter() - t0)


@functools.cache
def _callbacks() -> tuple[type, type]:
    """The Keras callback classes, built on first use (importing Keras is slow)."""
    import keras

    class Stopper(keras.callbacks.Callback):
        """Ends training at a batch boundary when the round was superseded or cancelled."""

        async_safe = True  # only reads a flag: Keras keeps dispatching batches ahead

        def __init__(self, should_stop: Callable[[], bool]) -> None:
            super().__init__()
            self.should_stop = should_stop

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if self.should_stop():
                self.model.stop_training = True

    class Proximal(keras.callbacks.Callback):
        """FedProx: pull the weights towards the round's start after every batch."""

        def __init__(self, mu: float) -> None:
            super().__init__()
            self.mu = mu
            self.anchor: list[Any] = []

        def on_train_begin(self, logs: Any = None) -> None:
            self.anchor = [keras.ops.copy(v.value) for v in self.model.trainable_variables]

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            step = lr * self.mu
            for var, start in zip(self.model.trainable_variables, self.anchor, strict=True):
                var.assign(var.value - step * (var.value - start))

    return Stopper, Proximal
