"""Keras adapter: same layout and numbers as the numpy model; safe .keras round trips."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from gridd.models import (
    KerasModel,
    ModelAdapter,
    NumpyModel,
    Recipe,
    UnsafeModelError,
    WeightsError,
    build_model,
    load_keras_file,
    save_keras_bytes,
)

pytestmark = pytest.mark.tf

DIGITS = Recipe("digits_mlp", (64,), 10)


@pytest.fixture(scope="module")
def keras() -> ModuleType:
    return pytest.importorskip("keras")


def test_same_weights_same_predictions_and_loss(keras: ModuleType, digits: tuple) -> None:
    _, _, x_test, y_test = digits
    numpy_model = NumpyModel(DIGITS, seed=11)
    keras_model = KerasModel(DIGITS)
    assert keras_model.weight_spec() == numpy_model.weight_spec()
    keras_model.set_weights(numpy_model.get_weights())
    np.testing.assert_allclose(keras_model.predict(x_test), numpy_model.predict(x_test), atol=1e-5)
    k, n = keras_model.evaluate(x_test, y_test), numpy_model.evaluate(x_test, y_test)
    assert abs(k["loss"] - n["loss"]) < 1e-4 and k["accuracy"] == pytest.approx(n["accuracy"])
    # The contract also runs the other way: weights a Keras peer trained load into numpy.
    for a, b in zip(keras_model.get_weights(), numpy_model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.5), ("adam", 0.01)])
def test_full_batch_training_steps_match_keras(
    keras: ModuleType, digits: tuple, optimizer: str, lr: float
) -> None:
    # One batch per epoch makes shuffling irrelevant, so both adapters must take the same
    # optimizer steps: this pins gradients, SGD and Adam to Keras' own implementation.
    x_train, y_train, _, _ = digits
    recipe = Recipe("digits_mlp", (64,), 10, optimizer=optimizer, learning_rate=lr)
    numpy_model, keras_model = NumpyModel(recipe, seed=2), KerasModel(recipe, seed=2)
    n = numpy_model.train(x_train, y_train, epochs=3, batch_size=len(x_train))
    k = keras_model.train(x_train, y_train, epochs=3, batch_size=len(x_train))
    assert abs(n["loss"] - k["loss"]) < 1e-4
    for a, b in zip(keras_model.get_weights(), numpy_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(
        numpy_model.get_weights()[0], NumpyModel(recipe, seed=2).get_weights()[0]
    )


def test_keras_minibatch_training_learns(keras: ModuleType, digits: tuple) -> None:
    x_train, y_train, x_test, y_test = digits
    model = build_model(DIGITS, prefer="keras", seed=0)
    assert isinstance(model, KerasModel) and isinstance(model, ModelAdapter)
    out = model.train(x_train, y_train, epochs=5, seed=0)
    assert set(out) == {"loss", "accuracy"} and out["loss"] < 0.5
    assert model.evaluate(x_test, y_test)["accuracy"] >= 0.9


def test_keras_set_weights_rejects_nan_and_wrong_shape(keras: ModuleType) -> None:
    model = KerasModel(DIGITS)
    ws = model.get_weights()
    ws[0] = ws[0].copy()
    ws[0][0, 0] = np.nan
    with pytest.raises(WeightsError, match=r"weights\[0\]: 1 non-finite"):
        model.set_weights(ws)
    with pytest.raises(WeightsError, match=r"weights\[3\]: expected shape \(10,\), got \(11,\)"):
        model.set_weights([*model.get_weights()[:3], np.zeros(11, np.float32)])


def test_save_and_load_round_trip(keras: ModuleType, digits: tuple, tmp_path: Path) -> None:
    _, _, x_test, _ = digits
    original = KerasModel(DIGITS, seed=4)
    data = save_keras_bytes(original.model)
    assert data[:2] == b"PK"
    path = tmp_path / "model.bin"  # loading must not depend on the file's suffix
    path.write_bytes(data)
    for source in (data, path):
        loaded = KerasModel(DIGITS, load_keras_file(source))
        np.testing.assert_allclose(loaded.predict(x_test), original.predict(x_test), atol=1e-6)
    via_factory = build_model(Recipe("keras", (64,), 10), keras_model=data)
    assert via_factory.weight_spec() == original.weight_spec()


def test_lambda_model_is_refused(keras: ModuleType) -> None:
    inputs = keras.Input((4,))
    hidden = keras.layers.Lambda(lambda t: t * 2.0, name="doubler")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    data = save_keras_bytes(model)
    with pytest.raises(UnsafeModelError, match="Lambda layer 'doubler'; gridd refuses to run code"):
        load_keras_file(data)


def test_registered_custom_layer_is_refused(keras: ModuleType) -> None:
    @keras.saving.register_keras_serializable(package="gridd_test_evil")
    class Doubler(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return x * 2.0

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Doubler(name="dbl")(inputs)))
    with pytest.raises(UnsafeModelError, match="gridd_test_evil>Doubler"):
        load_keras_file(save_keras_bytes(model))


def test_wrapped_model_must_match_recipe(keras: ModuleType) -> None:
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    with pytest.raises(ValueError, match="recipe.input_shape"):
        KerasModel(Recipe("keras", (4,), 3), model)
    with pytest.raises(ValueError, match="recipe.classes"):
        KerasModel(Recipe("keras", (5,), 4), model)
    wrapped = KerasModel(Recipe("keras", (5,), 3), model)
    assert wrapped.weight_spec() == [((5, 3), "float32"), ((3,), "float32")]
