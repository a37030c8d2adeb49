"""Datasets: the benchmark split, Dirichlet partitions, and .npz loading with clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from gridd.data import (
    DataError,
    Dataset,
    dirichlet_partition,
    load_digits_split,
    load_npz,
    save_npz,
)


def test_digits_split_is_the_benchmark_setup() -> None:
    x_train, y_train, x_test, y_test = load_digits_split()
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)
    assert x_train.dtype == np.float32 and x_train.min() == 0.0 and x_train.max() == 1.0
    scaled = x_train * 16
    np.testing.assert_array_equal(scaled, np.round(scaled), "features are pixel counts / 16")
    # stratified: every class keeps its share of the test set
    counts = np.bincount(y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    again = load_digits_split()
    np.testing.assert_array_equal(again[1], y_train)


def test_dirichlet_partition_covers_each_index_once_and_is_deterministic() -> None:
    _, y, _, _ = load_digits_split()
    parts = dirichlet_partition(y, n_parts=10, alpha=0.5, seed=0)
    assert len(parts) == 10 and all(len(p) >= 1 for p in parts)
    joined = np.concatenate(parts)
    np.testing.assert_array_equal(np.sort(joined), np.arange(len(y)))
    same = dirichlet_partition(y, n_parts=10, alpha=0.5, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, same, strict=True))
    other = dirichlet_partition(y, n_parts=10, alpha=0.5, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_small_alpha_skews_labels_and_large_alpha_does_not() -> None:
    _, y, _, _ = load_digits_split()

    def mean_dominant_share(alpha: float) -> float:
        parts = dirichlet_partition(y, n_parts=10, alpha=alpha, seed=0)
        return float(np.mean([np.bincount(y[p], minlength=10).max() / len(p) for p in parts]))

    assert mean_dominant_share(0.1) > 0.5
    assert mean_dominant_share(1000.0) < 0.2


def test_every_part_gets_a_sample_even_when_the_draw_leaves_one_empty() -> None:
    y = np.repeat(np.arange(3), 4)  # 12 samples, 12 parts, tiny alpha: many empty draws
    parts = dirichlet_partition(y, n_parts=12, alpha=0.01, seed=3)
    assert sorted(len(p) for p in parts) == [1] * 12
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(12))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_parts": 0}, "n_parts"),
        ({"n_parts": 13}, "at least as many samples"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"y": np.zeros(12)}, "integer label"),
    ],
)
def test_dirichlet_partition_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"y": np.repeat(np.arange(3), 4), "n_parts": 3, "alpha": 0.5, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        dirichlet_partition(**args)


def _write(path: Path, **arrays: np.ndarray) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _xy(n: int = 20, features: int = 4, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, features)), rng.integers(0, classes, n)


def test_load_npz_holds_out_a_seeded_validation_split(tmp_path: Path) -> None:
    x, y = _xy(20)
    ds = load_npz(_write(tmp_path / "d.npz", x=x, y=y), input_shape=(4,), classes=3)
    assert (len(ds.x), len(ds.x_val)) == (16, 4)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    # the split partitions the rows: every original row appears exactly once
    rows = np.concatenate([ds.x, ds.x_val])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, x.astype(np.float32)))
    again = load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(again.x_val, ds.x_val)
    other = load_npz(tmp_path / "d.npz", seed=1)
    assert not np.array_equal(other.x_val, ds.x_val)


def test_load_npz_keeps_a_given_validation_split_and_round_trips(tmp_path: Path) -> None:
    x, y = _xy(20)
    path = _write(tmp_path / "d.npz", x=x, y=y, x_val=x[:5], y_val=y[:5].astype(np.float64))
    ds = load_npz(path, input_shape=(4,), classes=3)
    assert len(ds.x) == 20 and len(ds.x_val) == 5 and ds.y_val.dtype == np.int64
    out = tmp_path / "saved"  # no suffix: save_npz must not append ".npz"
    save_npz(out, ds)
    back = load_npz(out)
    for name in ("x", "y", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ds, name))
    buf = io.BytesIO()
    save_npz(buf, Dataset(ds.x, ds.y, ds.x_val, ds.y_val))
    buf.seek(0)
    assert len(load_npz(buf).x) == 20


def test_column_labels_are_flattened(tmp_path: Path) -> None:
    x, y = _xy(10)
    ds = load_npz(_write(tmp_path / "d.npz", x=x, y=y[:, None]), classes=3)
    assert ds.y.ndim == 1


def _bad_cases() -> list:
    x, y = _xy(20)
    nan_x = x.copy()
    nan_x[3, 1] = np.nan
    cases = [
        ("missing-y", {"x": x}, {}, r"missing array\(s\) \['y'\]"),
        ("missing-x", {"y": y}, {}, r"missing array\(s\) \['x'\]"),
        ("unknown-key", {"x": x, "y": y, "xval": x}, {}, r"unknown array\(s\) \['xval'\]"),
        ("half-val", {"x": x, "y": y, "x_val": x}, {}, "x_val and y_val must be given together"),
        ("rows", {"x": x, "y": y[:19]}, {}, "y: 19 labels for 20 rows of x"),
        ("val-rows", {"x": x, "y": y, "x_val": x[:5], "y_val": y[:4]}, {}, "4 labels for 5 rows"),
        ("feature-shape", {"x": x, "y": y}, {"input_shape": (64,)}, r"feature shape \(4,\)"),
        ("val-shape", {"x": x, "y": y, "x_val": x[:, :3], "y_val": y}, {}, r"x_val: feature shape"),
        ("label-range", {"x": x, "y": y + 1}, {"classes": 3}, r"labels must be in \[0, 3\)"),
        ("negative", {"x": x, "y": y - 1}, {}, r"labels must be in \[0, classes\)"),
        ("float-labels", {"x": x, "y": y + 0.5}, {}, "labels must be integers"),
        ("string-labels", {"x": x, "y": y.astype(str)}, {}, "labels must be integers"),
        ("2d-labels", {"x": x, "y": np.stack([y, y], 1)}, {}, "1-D array"),
        ("nan", {"x": nan_x, "y": y}, {}, "NaN or inf"),
        ("string-x", {"x": x.astype(str), "y": y}, {}, "features must be numeric"),
        ("empty", {"x": x[:0], "y": y[:0]}, {}, "at least one sample"),
        ("one-row", {"x": x[:1], "y": y[:1]}, {}, "at least 2 samples"),
        (
            "object",
            {"x": np.array([1, "a"], dtype=object), "y": y},
            {},
            "object arrays are refused",
        ),
    ]
    return [pytest.param(*case, id=case[0]) for case in cases]


@pytest.mark.parametrize(("case", "arrays", "kwargs", "message"), _bad_cases())
def test_load_npz_errors(
    tmp_path: Path, case: str, arrays: dict, kwargs: dict, message: str
) -> None:
    path = tmp_path / f"{case}.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # savez may pickle object arrays; load_npz must not unpickle
    with pytest.raises(DataError, match=message):
        load_npz(path, **kwargs)


def test_unreadable_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not a zip file at all")
    with pytest.raises(DataError):
        load_npz(path)
    with pytest.raises(DataError, match="not a readable"):
        load_npz(tmp_path / "absent.npz")
