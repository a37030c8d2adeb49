"""The small contract every model adapter keeps, and the weight checks they share.

Weights are a list of arrays, one [kernel (in, out), bias (out,)] pair per Dense layer,
float32, in Keras order. Keeping numpy and Keras peers on that one layout is what lets
weights travel between them; check_weights guards it at every set_weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from gridd.models.recipe import Recipe

#: (shape, dtype name) per weight array, e.g. [((64, 32), "float32"), ((32,), "float32"), ...]
WeightSpec = list[tuple[tuple[int, ...], str]]


class WeightsError(ValueError):
    """Weights that do not fit a model: wrong count, shape, dtype, or non-finite values."""


@runtime_checkable
class ModelAdapter(Protocol):
    """What tree and compute mode need from a model, whichever library runs it."""

    recipe: Recipe

    def weight_spec(self) -> WeightSpec: ...

    def get_weights(self) -> list[np.ndarray]: ...

    def set_weights(self, weights: Sequence[np.ndarray]) -> None: ...

    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int | None = None,
        batch_size: int | None = None,
        seed: int | None = None,
    ) -> dict[str, float]: ...

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


def spec_of(weights: Sequence[np.ndarray]) -> WeightSpec:
    """The (shape, dtype) spec of a list of arrays."""
    return [(tuple(int(d) for d in w.shape), np.dtype(w.dtype).name) for w in weights]


def check_weights(spec: WeightSpec, weights: Sequence[np.ndarray]) -> None:
    """Raise WeightsError unless `weights` match `spec` exactly and hold only finite values.

    No silent casting: a float64 array or a transposed kernel from a peer is a bug or an
    attack, and either way it must not reach the model.
    """
    if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
        raise WeightsError(f"weights: expected a list of arrays, got {type(weights).__name__}")
    if len(weights) != len(spec):
        raise WeightsError(f"weights: expected {len(spec)} arrays, got {len(weights)}")
    for i, (w, (shape, dtype)) in enumerate(zip(weights, spec, strict=True)):
        if not isinstance(w, np.ndarray):
            raise WeightsError(f"weights[{i}]: expected a numpy array, got {type(w).__name__}")
        if w.dtype != np.dtype(dtype):
            raise WeightsError(f"weights[{i}]: expected dtype {dtype}, got {w.dtype}")
        if tuple(w.shape) != tuple(shape):
            raise WeightsError(f"weights[{i}]: expected shape {tuple(shape)}, got {tuple(w.shape)}")
        if not np.isfinite(w).all():
            bad = int(np.size(w) - np.count_nonzero(np.isfinite(w)))
            raise WeightsError(f"weights[{i}]: {bad} non-finite value(s) (NaN or inf)")


def average_weights(
    weight_lists: Sequence[Sequence[np.ndarray]], weights: Sequence[float] | None = None
) -> list[np.ndarray]:
    """Element-wise (weighted) mean of several models' weights, as float32.

    All lists must share one spec of floating arrays; the mean is taken in float64 so the
    order of the inputs does not change the result beyond float32 rounding.
    """
    if len(weight_lists) == 0:
        raise WeightsError("average_weights: need at least one weight list")
    first = weight_lists[0]
    if isinstance(first, np.ndarray) or not isinstance(first, Sequence):
        raise WeightsError(
            f"average_weights: entry 0 is not a list of arrays ({type(first).__name__})"
        )
    spec = spec_of(first)
    for i, (_, dtype) in enumerate(spec):
        if np.dtype(dtype).kind != "f":
            raise WeightsError(f"weights[{i}]: expected a floating dtype, got {dtype}")
    for n, ws in enumerate(weight_lists):
        try:
            check_weights(spec, ws)
        except WeightsError as e:
            raise WeightsError(f"average_weights: entry {n}: {e}") from None
    if weights is None:
        coef = np.full(len(weight_lists), 1.0 / len(weight_lists))
    else:
        coef = np.asarray(weights, dtype=np.float64)
        if coef.shape != (len(weight_lists),):
            raise WeightsError(
                f"average_weights: {coef.size} coefficients for {len(weight_lists)} weight lists"
            )
        if not np.isfinite(coef).all() or (coef < 0).any() or coef.sum() <= 0:
            raise WeightsError("average_weights: coefficients must be finite, >= 0 and not all 0")
        coef = coef / coef.sum()
    out = []
    for i in range(len(spec)):
        acc = np.zeros(spec[i][0], dtype=np.float64)
        for c, ws in zip(coef, weight_lists, strict=True):
            acc += c * ws[i].astype(np.float64)
        out.append(acc.astype(np.float32))
    return out


def check_xy(
    recipe: Recipe, x: np.ndarray, y: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate features (and labels) against the recipe; return float32 x and int64 y.

    Both adapters call this so a bad array fails with the same message on every peer,
    instead of an opaque broadcasting or TF shape error deep inside training.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"x: expected a numeric array, got dtype {x.dtype}")
    if x.ndim < 1 or tuple(x.shape[1:]) != tuple(recipe.input_shape):
        raise ValueError(
            f"x: expected shape (n, {', '.join(map(str, recipe.input_shape))}), got {x.shape}"
        )
    if len(x) == 0:
        raise ValueError("x: no samples")
    x = x.astype(np.float32, copy=False)
    if y is None:
        return x, None
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"y: expected shape ({len(x)},), got {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"y: expected integer class labels, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= recipe.classes:
        raise ValueError(
            f"y: labels must be in [0, {recipe.classes}), got range [{y.min()}, {y.max()}]"
        )
    return x, y.astype(np.int64, copy=False)


def resolve_fit_args(recipe: Recipe, epochs: int | None, batch_size: int | None) -> tuple[int, int]:
    """Fill epochs/batch size from the recipe and refuse nonsense overrides."""
    epochs = recipe.local_epochs if epochs is None else epochs
    batch_size = recipe.batch_size if batch_size is None else batch_size
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return int(epochs), int(batch_size)
