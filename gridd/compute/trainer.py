"""Training a job with Keras: fetch, refuse anything unsafe, fit, save.

The model is loaded only through gridd.models.keras_model.load_keras_file (config inspected
and sized against this worker's max_params, then safe_mode=True), and arrays only with
np.load(allow_pickle=False): a job is CIDs from the network and must never be able to run
code on the worker or make it allocate what it declares rather than what it is allowed.
"""

from __future__ import annotations

import io
import time
import warnings
from typing import Any

import numpy as np

from gridd.compute.jobs import JobContext, JobError, TrainResult
from gridd.compute.protocol import check_fit_args, clean_logs
from gridd.models.keras_budget import DEFAULT_MAX_PARAMS

# A compiled but never-trained model saves an unbuilt optimizer; Keras warns on every load.
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")

PROGRESS_EVERY = 0.25  # seconds between progress messages (epochs are batched in between)
PROGRESS_MAX_EPOCHS = 100  # epochs per progress message, so it stays under the message cap


def load_npy(data: bytes, what: str) -> np.ndarray:
    """One .npy array, never unpickling; JobError('bad_data') if it is anything else."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise JobError("bad_data", f"{what} is not a plain .npy array: {e}", refused=True) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise JobError("bad_data", f"{what} must be a numeric array, got {arr.dtype}", refused=True)
    return arr


def _callback(ctx: JobContext, epochs: int) -> Any:
    import keras

    class Reporter(keras.callbacks.Callback):
        """Streams per-epoch logs (batched) and stops at a batch boundary when asked."""

        # Only reads a flag per batch: safe to run off the training thread, which keeps
        # Keras' asynchronous batch dispatch (a batch hook otherwise syncs every step).
        async_safe = True

        def __init__(self) -> None:
            super().__init__()
            self.buffer: list[dict[str, float]] = []
            self.first = 0
            self.last_sent = time.monotonic()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if ctx.should_stop():
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if not self.buffer:
                self.first = epoch
            self.buffer.append(clean_logs(logs))
            if (time.monotonic() - self.last_sent >= PROGRESS_EVERY or epoch + 1 == epochs
                    or len(self.buffer) >= PROGRESS_MAX_EPOCHS):
                self.flush()
            if ctx.should_stop():
                self.model.stop_training = True

        def flush(self) -> None:
            if self.buffer:
                ctx.report("compute.progress",
                           {"first": self.first, "logs": self.buffer, "epochs": epochs})
                self.buffer = []
                self.last_sent = time.monotonic()

        def on_train_end(self, logs: Any = None) -> None:
            self.flush()

    return Reporter()


class KerasTrainer:
    """The worker's trainer: one job per call, any number of calls in parallel threads.

    `max_params`: models declaring more parameters are refused (too_many_params) before
    Keras builds anything; None disables the limit (the model is still sized).
    """

    def __init__(self, max_params: int | None = DEFAULT_MAX_PARAMS) -> None:
        self.max_params = max_params

    def run(self, ctx: JobContext) -> TrainResult:
        from gridd.models.keras_model import (
            ModelTooLargeError,
            UnsafeModelError,
            load_keras_file,
            save_keras_bytes,
        )

        spec = ctx.spec
        try:
            fit = check_fit_args(spec.fit, max_epochs=10**9)
        except ValueError as e:
            raise JobError("bad_fit_args", str(e), refused=True) from None
        model_bytes = ctx.fetch(spec.model, "the model")
        try:
            model = load_keras_file(model_bytes, compile=True, max_params=self.max_params)
        except ModelTooLargeError as e:
            raise JobError("too_many_params", str(e), refused=True) from None
        except UnsafeModelError as e:
            raise JobError("unsafe_model", str(e), refused=True) from None
        except Exception as e:  # Keras raises many types for a broken file
            raise JobError("bad_model", f"the model does not load: {type(e).__name__}: {e}",
                           refused=True) from None
        if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
            raise JobError("not_compiled", "the model is not compiled: call model.compile(...) "
                           "before sending it", refused=True)
        arrays = {k: load_npy(ctx.fetch(cid, f"data {k!r}"), f"data {k!r}")
                  for k, cid in spec.data.items()}
        ctx.check_stop()
        x, y = arrays["x"], arrays["y"]
        if len(x) != len(y):
            raise JobError("bad_data", f"x has {len(x)} rows but y has {len(y)}", refused=True)
        if ("val_x" in arrays) != ("val_y" in arrays):
            raise JobError("bad_data", "validation data needs both val_x and val_y", refused=True)
        if "val_x" in arrays:
            fit["validation_data"] = (arrays["val_x"], arrays["val_y"])
        ctx.set_state("training")
        reporter = _callback(ctx, fit["epochs"])
        try:
            history = model.fit(x, y, verbose=0, callbacks=[reporter], **fit)
        except Exception as e:  # a shape mismatch etc.: the client's mistake, explained
            ctx.check_stop()
            raise JobError("training_error", f"model.fit failed: {type(e).__name__}: {e}") \
                from None
        ctx.check_stop()
        ctx.set_state("uploading")
        hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        return TrainResult(save_keras_bytes(model), hist)
