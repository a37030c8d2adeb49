"""Datasets for peers and the lab: the digits split, Dirichlet label partitions, .npz files.

A peer's .npz is loaded with allow_pickle=False and checked against the recipe up front, so
a wrong file fails at start with a sentence instead of minutes later inside training.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import IO

import numpy as np

NPZ_KEYS = ("x", "y", "x_val", "y_val")
VAL_FRACTION = 0.2


class DataError(ValueError):
    """A dataset file or array that cannot be used as training data."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training arrays and a validation split: x float32 (n, *input_shape), y int64 (n,)."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def load_digits_split(
    test_size: float = 0.2, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's bundled digits, features / 16 as float32, stratified split: the benchmark setup.

    Returns (x_train, y_train, x_test, y_test).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=random_state
    )
    return x_train, y_train, x_test, y_test


def dirichlet_partition(y: np.ndarray, n_parts: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Split sample indices into `n_parts` non-IID parts with Dirichlet(alpha) label skew.

    For each class (in sorted order) one rng = default_rng(seed) shuffles that class's indices
    and draws the parts' shares from Dirichlet(alpha). A part left empty then takes one sample
    from the currently largest part, so every part has at least one sample. Returns sorted
    index arrays that together cover every index exactly once.
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(
            f"y: expected a 1-D integer label array, got dtype {y.dtype} shape {y.shape}"
        )
    if isinstance(n_parts, bool) or not isinstance(n_parts, (int, np.integer)) or n_parts < 1:
        raise ValueError(f"n_parts: expected an int >= 1, got {n_parts!r}")
    if n_parts > len(y):
        raise ValueError(f"n_parts: {n_parts} parts need at least as many samples, got {len(y)}")
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha: expected a finite number > 0, got {alpha!r}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(n_parts)]
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        shares = rng.dirichlet(np.full(n_parts, float(alpha)))
        cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(np.int64)
        for part, chunk in zip(parts, np.split(idx, cuts), strict=True):
            part.append(chunk)
    result = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
    for i in range(n_parts):
        if len(result[i]) == 0:
            donor = max(range(n_parts), key=lambda j: (len(result[j]), -j))
            result[i] = result[donor][-1:]
            result[donor] = result[donor][:-1]
    return result


def _check_x(name: str, x: np.ndarray, input_shape: tuple[int, ...] | None) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{name}: features must be numeric, got dtype {x.dtype}")
    if x.ndim < 1 or len(x) == 0:
        raise DataError(f"{name}: expected at least one sample, got shape {x.shape}")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(
            f"{name}: feature shape {tuple(x.shape[1:])} does not match the recipe's input shape "
            f"{tuple(input_shape)}"
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{name}: features contain NaN or inf")
    return x


def _check_y(name: str, y: np.ndarray, rows: int, x_name: str, classes: int | None) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{name}: labels must be a 1-D array of class indices, got shape {y.shape}")
    if len(y) != rows:
        raise DataError(f"{name}: {len(y)} labels for {rows} rows of {x_name}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError(f"{name}: labels must be integers, got non-integer {y.dtype} values")
    elif y.dtype.kind not in "iu":
        raise DataError(f"{name}: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or (classes is not None and y.max() >= classes):
        upper = classes if classes is not None else "classes"
        raise DataError(f"{name}: labels must be in [0, {upper}), got range [{y.min()}, {y.max()}]")
    return y


def load_npz(
    path: str | os.PathLike[str] | IO[bytes],
    input_shape: tuple[int, ...] | None = None,
    classes: int | None = None,
    *,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
) -> Dataset:
    """Load and check a peer's dataset (keys x, y and optionally x_val, y_val).

    Without a validation split, a seeded random `val_fraction` of the rows is held out;
    val_fraction 0 holds out nothing (the validation arrays are then empty).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            unknown = sorted(keys - set(NPZ_KEYS))
            if unknown:
                raise DataError(
                    f"{path}: unknown array(s) {unknown}; expected keys {list(NPZ_KEYS)}"
                )
            missing = [k for k in ("x", "y") if k not in keys]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {missing}; expected keys {list(NPZ_KEYS)}"
                )
            if ("x_val" in keys) != ("y_val" in keys):
                raise DataError(f"{path}: x_val and y_val must be given together")
            arrays = {k: npz[k] for k in keys}
    except DataError:
        raise
    except ValueError as e:  # numpy refuses object arrays with allow_pickle=False
        raise DataError(
            f"{path}: cannot load without pickle (object arrays are refused): {e}"
        ) from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file: {e}") from None
    x = _check_x("x", arrays["x"], input_shape)
    y = _check_y("y", arrays["y"], len(x), "x", classes)
    if "x_val" in arrays:
        x_val = _check_x("x_val", arrays["x_val"], tuple(x.shape[1:]))
        y_val = _check_y("y_val", arrays["y_val"], len(x_val), "x_val", classes)
        return Dataset(x, y, x_val, y_val)
    if val_fraction == 0:
        return Dataset(x, y, x[:0], y[:0])
    try:
        return holdout(x, y, val_fraction, seed)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def holdout(
    x: np.ndarray, y: np.ndarray, val_fraction: float = VAL_FRACTION, seed: int = 0
) -> Dataset:
    """Split off a seeded random `val_fraction` of the rows (at least one) for validation."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}")
    if len(x) < 2:
        raise DataError(f"need at least 2 samples to hold out a validation split, got {len(x)}")
    n_val = min(len(x) - 1, max(1, round(len(x) * val_fraction)))
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return Dataset(x[train], y[train], x[val], y[val])


def save_npz(path: str | os.PathLike[str] | IO[bytes], dataset: Dataset) -> None:
    """Write a dataset that load_npz reads back unchanged (no '.npz' suffix is appended)."""
    arrays = {"x": dataset.x, "y": dataset.y, "x_val": dataset.x_val, "y_val": dataset.y_val}
    if isinstance(path, (str, os.PathLike)):
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    else:
        np.savez(path, **arrays)
