"""What the client checks before it uploads anything: the inputs against the model, and the
job against the limits the live workers advertise.

A mistake found on a worker costs an upload, a round trip and memory on both sides, and
comes back as Keras's raw message; found here it costs nothing and says how to fix it
(issue 11: 63 features for a 64-input model, one-hot labels with a sparse loss, a 317 MB
data set uploaded, pinned and then refused by every worker).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

# -- sizes ------------------------------------------------------------------------------------


def numeric(a: Any, what: str) -> np.ndarray:
    """`a` as an array; object and string arrays are refused (they would need pickle)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what}: numeric arrays only, got dtype {arr.dtype}")
    return arr


def npy_size(arr: np.ndarray) -> int:
    """Bytes np.save(arr) would write, computed without copying the data."""
    header = npy_format.header_data_from_array_1_0(arr)
    buf = io.BytesIO()
    try:
        npy_format.write_array_header_1_0(buf, header)
    except ValueError:  # a header over 64 KiB: np.save switches to format 2.0 too
        npy_format.write_array_header_2_0(buf, header)
    return buf.tell() + arr.nbytes


def fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# -- inputs against the model -----------------------------------------------------------------

SPARSE = "sparse_categorical_crossentropy"
CATEGORICAL = "categorical_crossentropy"
BINARY = "binary_crossentropy"


def loss_name(loss: Any) -> str | None:
    """The compiled loss as a snake_case name (a string, a Loss object or a function);
    None for what cannot be named (several losses, a custom callable without a name)."""
    if isinstance(loss, str):
        name = loss
    elif getattr(loss, "name", None) and isinstance(loss.name, str):
        name = loss.name
    elif callable(loss) and isinstance(getattr(loss, "__name__", None), str):
        name = loss.__name__
    else:
        return None
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _single_shape(model: Any, attr: str, what: str) -> tuple[int | None, ...] | None:
    """model.input_shape / output_shape of a one-input, one-output model (None if unbuilt)."""
    try:
        shape = getattr(model, attr)
    except (AttributeError, ValueError):
        return None
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ValueError(
                f"the model has {len(shape)} {what}s; grid.fit sends one x and one y array, "
                f"so remote training needs a model with a single {what}")
        shape = shape[0]
    return tuple(shape) if isinstance(shape, tuple) else None


def check_x(x: np.ndarray, input_shape: tuple[int | None, ...], what: str = "x") -> None:
    """x must hold samples of the model's input shape (unknown dimensions match anything)."""
    want, got = input_shape[1:], x.shape[1:]
    same = len(got) == len(want) and all(w is None or w == g
                                         for w, g in zip(want, got, strict=True))
    # Keras accepts samples without the trailing 1 of an input such as (None, 1).
    squeezed = (len(got) + 1 == len(want) and want[-1] == 1
                and all(w is None or w == g for w, g in zip(want[:-1], got, strict=True)))
    if x.ndim == 0 or not (same or squeezed):
        shown = tuple("any" if w is None else w for w in want)
        if len(want) == 1 and len(got) == 1:
            fix = (f"give {what} {want[0]} features per sample, or build the model with "
                   f"keras.Input(shape=({got[0]},))")
        else:
            fix = (f"reshape {what} to (samples, {', '.join(map(str, shown))}), or build the "
                   f"model with keras.Input(shape={tuple(got)})")
        raise ValueError(
            f"{what} has shape {x.shape}: samples of shape {tuple(got)}, but the model "
            f"expects samples of shape {shown} (model.input_shape = {input_shape}). "
            f"Fix: {fix}.")


def check_y(y: np.ndarray, loss: str | None, units: int | None, what: str = "y") -> None:
    """y must be what the compiled loss reads, for a model with `units` outputs."""
    if loss == SPARSE and units is not None and units > 1:
        if y.ndim == 2 and y.shape[1] == units:
            raise ValueError(
                f"{what} looks one-hot (shape {y.shape}), but the loss is {SPARSE}, which "
                f"wants integer class indices in [0, {units}), shape (samples,). Fix: pass "
                f"{what}.argmax(axis=1), or compile with loss='{CATEGORICAL}'.")
        if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
            raise ValueError(
                f"{what} has shape {y.shape}, but {SPARSE} wants one integer class index "
                f"per sample, shape (samples,). Fix: give {what} as class indices in "
                f"[0, {units}).")
        if y.size == 0:
            return
        if y.dtype.kind == "f" and not bool(np.all(np.isfinite(y) & (y == np.round(y)))):
            raise ValueError(
                f"{what} holds non-integer values, but {SPARSE} wants integer class "
                f"indices in [0, {units}). Fix: {what}.astype(int) if they are class "
                f"indices; for real-valued targets use a regression loss such as 'mse'.")
        low, high = int(np.min(y)), int(np.max(y))
        if low < 0 or high >= units:
            raise ValueError(
                f"{what} holds class {high if high >= units else low}, but the model has "
                f"{units} output units, so {SPARSE} wants classes 0..{units - 1}. Fix: "
                f"re-map the labels to 0..{units - 1}, or give the last layer "
                f"{max(high + 1, units)} units.")
    elif loss == CATEGORICAL and units is not None:
        if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and units > 1):
            raise ValueError(
                f"{what} holds class indices (shape {y.shape}), but the loss is "
                f"{CATEGORICAL}, which wants one-hot rows of width {units}, shape "
                f"(samples, {units}). Fix: pass keras.utils.to_categorical({what}, {units}), "
                f"or compile with loss='{SPARSE}'.")
        if y.ndim != 2 or y.shape[1] != units:
            raise ValueError(
                f"{what} has shape {y.shape}, but {CATEGORICAL} with {units} output units "
                f"wants one-hot rows of shape (samples, {units}). Fix: one-hot encode "
                f"{what} with {units} columns, or give the last layer {y.shape[-1]} units.")
    elif loss == BINARY and y.size and (float(np.min(y)) < 0 or float(np.max(y)) > 1):
        raise ValueError(
            f"{what} holds values outside [0, 1], but {BINARY} wants 0/1 labels (or "
            f"probabilities). Fix: map the labels to 0 and 1, or for several classes use "
            f"'{SPARSE}' with one output unit per class.")


def check_compiled(model: Any) -> None:
    """A model must be compiled to be trained remotely (the worker needs its loss)."""
    if getattr(model, "optimizer", None) is None:
        raise ValueError("model is not compiled: call model.compile(optimizer=..., loss=..., "
                         "metrics=[...]) before grid.fit, as you would before model.fit")


def check_inputs(
    model: Any, x: np.ndarray, y: np.ndarray, *,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    validation_split: float | None = None, epochs: int = 1, batch_size: int | None = None,
) -> None:
    """Everything grid.fit can tell about a job before sending it; ValueError says what was
    expected, what was given and how to fix it."""
    check_compiled(model)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if validation_split is not None and not 0.0 <= float(validation_split) < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    input_shape = _single_shape(model, "input_shape", "input")
    output_shape = _single_shape(model, "output_shape", "output")
    units = output_shape[-1] if output_shape else None
    loss = loss_name(getattr(model, "loss", None))
    pairs = [("x", "y", x, y)]
    if validation_data is not None:
        pairs.append(("validation_data x", "validation_data y", *validation_data))
    for xname, yname, xs, ys in pairs:
        if xs.ndim == 0 or len(xs) == 0:
            raise ValueError(f"{xname} is empty: give at least one sample")
        if ys.ndim == 0 or len(ys) != len(xs):
            raise ValueError(f"{xname} has {len(xs)} samples but {yname} has "
                             f"{len(ys) if ys.ndim else 'none'}: they must match row for row")
        if input_shape is not None:
            check_x(xs, input_shape, xname)
        check_y(ys, loss, units if isinstance(units, int) else None, yname)


# -- the job against the workers' limits ------------------------------------------------------


@dataclass(frozen=True)
class JobSize:
    """What a worker's limits are checked against, known before anything is uploaded."""

    model_bytes: int
    data_bytes: int
    epochs: int
    params: int

    @property
    def bytes(self) -> int:
        return self.model_bytes + self.data_bytes


# (advertised limit, what it bounds, the worker flag that raises it)
LIMITS: tuple[tuple[str, str, str], ...] = (
    ("max_job_bytes", "bytes", "--max-job-bytes"),
    ("max_epochs", "epochs", "--max-epochs"),
    ("max_params", "params", "--max-params"),
)


def refusals(size: JobSize, ad: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(limit, needed, allowed) of each advertised limit the job is over; [] = it fits
    (limits a worker does not advertise, as older ones, are taken as fitting)."""
    out = []
    for limit, attr, _ in LIMITS:
        allowed = ad.get(limit)
        needed = getattr(size, attr)
        if isinstance(allowed, (int, float)) and needed > allowed:
            out.append((limit, needed, int(allowed)))
    return out


class WorkerLimitError(ValueError):
    """No live worker would take the job: raised before anything was uploaded.
    `limit` names the (first) advertised limit, `needed` the job's value, `allowed` the
    largest value among the live workers."""

    def __init__(self, message: str, limit: str, needed: int, allowed: int) -> None:
        super().__init__(message)
        self.limit, self.needed, self.allowed = limit, needed, allowed


def _describe(limit: str, size: JobSize, allowed: int) -> str:
    if limit == "max_job_bytes":
        return (f"its model and data are {fmt_bytes(size.bytes)} ({size.bytes} bytes: model "
                f"{fmt_bytes(size.model_bytes)} + data {fmt_bytes(size.data_bytes)}), over "
                f"the largest max_job_bytes among them, {fmt_bytes(allowed)} ({allowed} bytes)")
    if limit == "max_epochs":
        return f"it asks for {size.epochs} epochs, over the largest max_epochs among them, " \
            f"{allowed}"
    return f"its model has {size.params:,} parameters, over the largest max_params among " \
        f"them, {allowed:,}"


FIXES = {
    "max_job_bytes": "send less data (a sample of the rows, float32 rather than float64)",
    "max_epochs": "ask for fewer epochs (continue training the returned model in a "
                  "second job)",
    "max_params": "make the model smaller",
}


def check_limits(size: JobSize, ads: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise WorkerLimitError when every live worker in `ads` ({peer id: ad body}) is too
    small for the job; nothing when one may take it, or when there is no ad to judge by."""
    if not ads or any(not refusals(size, ad) for ad in ads.values()):
        return
    n = len(ads)
    whom = "the live worker" if n == 1 else f"any of the {n} live workers"
    over_all = []
    for limit, attr, flag in LIMITS:
        known = [int(ad[limit]) for ad in ads.values()
                 if isinstance(ad.get(limit), (int, float))]
        if known and len(known) == n and getattr(size, attr) > max(known):
            over_all.append((limit, getattr(size, attr), max(known), flag))
    if over_all:
        limit, needed, allowed, _ = over_all[0]
        why = "; ".join(_describe(lim, size, allowed) for lim, _, allowed, _ in over_all)
        fixes = "; or ".join(f"{FIXES[lim]}, or use workers started with a higher {flag}"
                             for lim, _, _, flag in over_all)
        raise WorkerLimitError(
            f"this job cannot run on {whom}: {why}. Nothing was uploaded. Fix: {fixes}.",
            limit, needed, allowed)
    # Each worker refuses it for a different reason.
    per = [(peer, refusals(size, ad)) for peer, ad in sorted(ads.items())]
    why = "; ".join(f"{w[:16]}: " + ", ".join(f"{lim} {allowed} < {needed}"
                                              for lim, needed, allowed in r)
                    for w, r in per)
    limit, needed, allowed = per[0][1][0]
    raise WorkerLimitError(
        f"this job cannot run on {whom}: each is over one of its limits ({why}). Nothing "
        "was uploaded.", limit, needed, allowed)


def settle_seconds(ads: Mapping[str, Mapping[str, Any]]) -> float:
    """Listening this long has heard every live worker's ad at least once (each advertises
    every `interval` s), so a job none of them can take may be refused; inf with no ad."""
    intervals = [float(ad["interval"]) for ad in ads.values()
                 if isinstance(ad.get("interval"), (int, float))]
    return 2.0 * max(intervals) + 0.25 if intervals else math.inf
