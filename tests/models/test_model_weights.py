"""The weight contract: check_weights / set_weights refusals and average_weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from gridd.models import NumpyModel, Recipe, WeightsError, average_weights, check_weights

RECIPE = Recipe("digits_mlp", (64,), 10)


def _bad_weights(kind: str) -> tuple[list[np.ndarray], str]:
    """A corrupted copy of valid digits_mlp weights and the message it must produce."""
    ws = NumpyModel(RECIPE, seed=1).get_weights()
    if kind == "count":
        return ws[:-1], r"expected 4 arrays, got 3"
    if kind == "shape":
        ws[2] = ws[2].T.copy()
        return ws, r"weights\[2\]: expected shape \(32, 10\), got \(10, 32\)"
    if kind == "dtype":
        ws[1] = ws[1].astype(np.float64)
        return ws, r"weights\[1\]: expected dtype float32, got float64"
    if kind == "nan":
        ws[0][3, 4] = np.nan
        return ws, r"weights\[0\]: 1 non-finite value"
    if kind == "inf":
        ws[3][0] = -np.inf
        return ws, r"weights\[3\]: 1 non-finite value"
    if kind == "not-array":
        ws[3] = ws[3].tolist()
        return ws, r"weights\[3\]: expected a numpy array"
    raise AssertionError(kind)


KINDS = ["count", "shape", "dtype", "nan", "inf", "not-array"]


@pytest.mark.parametrize("kind", KINDS)
def test_numpy_set_weights_rejects_and_keeps_old_weights(kind: str) -> None:
    model = NumpyModel(RECIPE, seed=0)
    before = model.get_weights()
    bad, message = _bad_weights(kind)
    with pytest.raises(WeightsError, match=message):
        model.set_weights(bad)
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_weights_error_is_a_value_error_and_single_array_is_refused() -> None:
    assert issubclass(WeightsError, ValueError)
    spec = NumpyModel(RECIPE).weight_spec()
    with pytest.raises(WeightsError, match="expected a list of arrays"):
        check_weights(spec, np.zeros((64, 32), np.float32))


def test_spec_and_layout_are_keras_dense_order() -> None:
    model = NumpyModel(RECIPE)
    assert model.weight_spec() == [
        ((64, 32), "float32"),
        ((32,), "float32"),
        ((32, 10), "float32"),
        ((10,), "float32"),
    ]
    ws = model.get_weights()
    assert [w.dtype for w in ws] == [np.float32] * 4
    assert not ws[1].any() and not ws[3].any(), "biases start at zero"
    limit = np.sqrt(6 / (64 + 32))
    assert np.abs(ws[0]).max() <= limit and ws[0].std() > limit / 3, "glorot-uniform kernel"


def test_get_weights_returns_copies_and_set_weights_copies_input() -> None:
    model = NumpyModel(RECIPE)
    ws = model.get_weights()
    ws[0][:] = 5.0
    assert not (model.get_weights()[0] == 5.0).any()
    model.set_weights(ws)
    ws[0][:] = 7.0
    assert (model.get_weights()[0] == 5.0).all()


def _random_lists(n: int, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)]
        for _ in range(n)
    ]


def test_average_weights_is_the_elementwise_mean() -> None:
    lists = _random_lists(3, seed=0)
    avg = average_weights(lists)
    for i in range(2):
        expected = (lists[0][i].astype(np.float64) + lists[1][i] + lists[2][i]) / 3
        np.testing.assert_allclose(avg[i], expected, rtol=1e-6)
        assert avg[i].dtype == np.float32


def test_weighted_average_and_one_hot_weights() -> None:
    lists = _random_lists(2, seed=1)
    avg = average_weights(lists, weights=[3, 1])
    np.testing.assert_allclose(avg[0], 0.75 * lists[0][0] + 0.25 * lists[1][0], rtol=1e-6)
    picked = average_weights(lists, weights=[0.0, 2.0])
    np.testing.assert_array_equal(picked[1], lists[1][1])


def test_average_weights_accepts_float64_and_returns_float32() -> None:
    lists = [[w.astype(np.float64) for w in ws] for ws in _random_lists(2, seed=2)]
    assert [a.dtype for a in average_weights(lists)] == [np.float32, np.float32]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ls: ls[1].pop(), r"entry 1: weights: expected 2 arrays, got 1"),
        (
            lambda ls: ls[2].__setitem__(0, ls[2][0].T.copy()),
            r"entry 2: weights\[0\]: expected shape",
        ),
        (
            lambda ls: ls[1].__setitem__(1, ls[1][1].astype(np.float16)),
            r"entry 1: weights\[1\]: expected dtype",
        ),
        (lambda ls: ls[0][1].__setitem__(0, np.nan), r"entry 0: weights\[1\]: 1 non-finite"),
    ],
)
def test_average_weights_rejects_mismatched_specs(mutate: Callable, message: str) -> None:
    lists = _random_lists(3, seed=3)
    mutate(lists)
    with pytest.raises(WeightsError, match=message):
        average_weights(lists)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0], "1 coefficients for 2"),
        ([1.0, -1.0], ">= 0"),
        ([0, 0], "not all 0"),
        ([1, np.nan], "finite"),
    ],
)
def test_average_weights_rejects_bad_coefficients(weights: list[float], message: str) -> None:
    with pytest.raises(WeightsError, match=message):
        average_weights(_random_lists(2, seed=4), weights=weights)


def test_average_weights_rejects_empty_and_integer_arrays() -> None:
    with pytest.raises(WeightsError, match="at least one"):
        average_weights([])
    with pytest.raises(WeightsError, match="floating dtype"):
        average_weights([[np.zeros(3, np.int32)]])
