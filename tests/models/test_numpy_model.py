"""The numpy adapter really learns, deterministically, and validates its inputs."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gridd.models import ModelAdapter, NumpyModel, Recipe, build_model


def test_numpy_mlp_learns_digits(digits: tuple) -> None:
    x_train, y_train, x_test, y_test = digits
    model = NumpyModel(Recipe("digits_mlp", (64,), 10), seed=0)
    before = model.evaluate(x_test, y_test)["accuracy"]
    start = time.perf_counter()
    last = model.train(x_train, y_train, epochs=20)
    seconds = time.perf_counter() - start
    after = model.evaluate(x_test, y_test)
    assert before < 0.3, "an untrained model should be near chance"
    assert after["accuracy"] >= 0.93, after
    assert after["loss"] < 0.3 and last["loss"] < 0.3
    assert seconds < 5, f"20 epochs took {seconds:.2f}s; training should be vectorised"


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe("softmax", (64,), 10),
        Recipe("mlp", (8, 8), 10, optimizer="adam", learning_rate=0.005, hidden=(24, 16)),
    ],
    ids=["softmax-sgd", "mlp-adam-2d-input"],
)
def test_other_architectures_and_adam_learn(digits: tuple, recipe: Recipe) -> None:
    x_train, y_train, x_test, y_test = digits
    shape = (-1, *recipe.input_shape)
    model = NumpyModel(recipe, seed=0)
    model.train(x_train.reshape(shape), y_train, epochs=10)
    assert model.evaluate(x_test.reshape(shape), y_test)["accuracy"] >= 0.9


def test_training_is_deterministic_per_seed(digits: tuple) -> None:
    x_train, y_train, _, _ = digits
    recipe = Recipe("digits_mlp", (64,), 10)
    runs = []
    for train_seed in (7, 7, 8):
        model = NumpyModel(recipe, seed=3)
        model.train(x_train, y_train, epochs=1, seed=train_seed)
        runs.append(model.get_weights())
    for a, b in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0], runs[2][0]), "a different shuffle gives other weights"


def test_recipe_defaults_drive_training(digits: tuple) -> None:
    x_train, y_train, _, _ = digits
    recipe = Recipe("softmax", (64,), 10, local_epochs=2, batch_size=len(x_train))
    a, b = NumpyModel(recipe), NumpyModel(recipe)
    a.train(x_train, y_train, seed=0)
    b.train(x_train, y_train, epochs=2, batch_size=len(x_train), seed=0)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    c = NumpyModel(recipe)
    c.train(x_train, y_train, epochs=1, seed=0)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_predict_returns_probabilities_and_weights_stay_float32(digits: tuple) -> None:
    x_train, y_train, x_test, _ = digits
    model = NumpyModel(Recipe("digits_mlp", (64,), 10, optimizer="adam", learning_rate=0.01))
    model.train(x_train[:100], y_train[:100])
    probs = model.predict(x_test)
    assert probs.shape == (len(x_test), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert [w.dtype for w in model.get_weights()] == [np.float32] * 4


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((4, 63)), np.zeros(4, int), r"x: expected shape \(n, 64\)"),
        (np.zeros((4, 64)), np.zeros(3, int), r"y: expected shape \(4,\)"),
        (np.zeros((4, 64)), np.zeros(4), "y: expected integer class labels"),
        (np.zeros((4, 64)), np.array([0, 1, 2, 10]), r"labels must be in \[0, 10\)"),
        (np.zeros((4, 64)), np.array([0, -1, 2, 3]), r"labels must be in \[0, 10\)"),
        (np.zeros((0, 64)), np.zeros(0, int), "no samples"),
        (np.array([["a"] * 64]), np.zeros(1, int), "numeric array"),
    ],
)
def test_bad_inputs_are_refused(x: np.ndarray, y: np.ndarray, message: str) -> None:
    model = NumpyModel(Recipe("digits_mlp", (64,), 10))
    with pytest.raises(ValueError, match=message):
        model.train(x, y)
    with pytest.raises(ValueError, match=message):
        model.evaluate(x, y)


def test_bad_fit_overrides_are_refused() -> None:
    model = NumpyModel(Recipe("softmax", (2,), 2))
    x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="epochs"):
        model.train(x, y, epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.train(x, y, batch_size=2.5)  # type: ignore[arg-type]


def test_numpy_model_refuses_keras_architecture() -> None:
    with pytest.raises(ValueError, match="recipe.architecture"):
        NumpyModel(Recipe("keras", (4,), 2))


def test_no_tf_env_forces_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL", "no_tf")
    model = build_model(Recipe("softmax", (4,), 2), prefer="keras")
    assert isinstance(model, NumpyModel) and isinstance(model, ModelAdapter)
    with pytest.raises(ValueError, match="need TensorFlow"):
        build_model(Recipe("keras", (4,), 2), keras_model=b"not used")
    with pytest.raises(ValueError, match="prefer"):
        build_model(Recipe("softmax", (4,), 2), prefer="torch")


def test_build_model_passes_weights_and_seed() -> None:
    recipe = Recipe("softmax", (4,), 3)
    a = build_model(recipe, prefer="numpy", seed=5)
    b = build_model(recipe, weights=a.get_weights(), prefer="numpy", seed=6)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    assert not np.array_equal(a.get_weights()[0], NumpyModel(recipe, seed=6).get_weights()[0])
