"""recipe_from_model: a compiled Keras model's training settings become the tangle recipe,
and settings a recipe cannot carry are refused in a sentence, never silently replaced
(issue 11: a model compiled with Adam(0.003) became a recipe with SGD 0.1)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from gridd.models import Recipe, build_model

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def keras() -> ModuleType:
    return pytest.importorskip("keras")


def _model(keras: ModuleType, **compile_args: Any) -> Any:
    inputs = keras.Input(shape=(8, 8))
    hidden = keras.layers.Dense(12, activation="relu")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(hidden))
    if compile_args:
        model.compile(**compile_args)
    return model


SCCE = "sparse_categorical_crossentropy"


@pytest.mark.parametrize("compile_args, optimizer, lr", [
    (lambda k: dict(optimizer=k.optimizers.Adam(0.003), loss=SCCE, metrics=["accuracy"]),
     "adam", 0.003),
    (lambda k: dict(optimizer="sgd", loss=k.losses.SparseCategoricalCrossentropy(),
                    metrics=[k.metrics.SparseCategoricalAccuracy()]), "sgd", 0.01),
    (lambda k: dict(optimizer=k.optimizers.SGD(learning_rate=0.25),
                    loss=k.losses.sparse_categorical_crossentropy, metrics=["acc"]), "sgd", 0.25),
    (lambda k: dict(optimizer="adam", loss="SparseCategoricalCrossentropy"), "adam", 0.001),
])
def test_compile_settings_become_the_recipe(keras: ModuleType,
                                            compile_args: Callable[[ModuleType], dict],
                                            optimizer: str, lr: float) -> None:
    from gridd.models.keras_model import recipe_from_model

    recipe = recipe_from_model(_model(keras, **compile_args(keras)))
    assert recipe == Recipe("keras", (8, 8), 5, optimizer=optimizer, learning_rate=lr,
                            loss=SCCE, metric="accuracy")
    assert (recipe.batch_size, recipe.local_epochs) == (16, 1)  # Recipe's defaults
    assert Recipe.from_dict(recipe.to_dict()) == recipe  # what travels in the genesis


def test_peers_rebuild_the_same_optimizer(keras: ModuleType) -> None:
    from gridd.models.keras_model import recipe_from_model

    model = _model(keras, optimizer=keras.optimizers.Adam(0.003), loss=SCCE)
    recipe = recipe_from_model(model, batch_size=64, local_epochs=3)
    assert (recipe.batch_size, recipe.local_epochs) == (64, 3)
    peer = build_model(recipe, keras_model=_model(keras))  # what a peer builds
    rebuilt = peer.model.optimizer  # type: ignore[attr-defined]
    assert type(rebuilt) is keras.optimizers.Adam
    assert rebuilt.get_config() | {"name": "x"} == model.optimizer.get_config() | {"name": "x"}


@pytest.mark.parametrize("compile_args, message", [
    (lambda k: {}, r"not compiled.*model\.compile\(.*or pass recipe="),
    (lambda k: dict(optimizer="rmsprop", loss=SCCE),
     r"optimizer RMSprop; a tangle recipe carries only SGD or Adam"),
    (lambda k: dict(optimizer=k.optimizers.SGD(0.01, momentum=0.9), loss=SCCE),
     r"SGD sets momentum=0\.9; .*peers would train with SGD's defaults"),
    (lambda k: dict(optimizer=k.optimizers.Adam(beta_1=0.8, clipnorm=1.0), loss=SCCE),
     r"Adam sets beta_1=0\.8, clipnorm=1\.0"),
    (lambda k: dict(optimizer=k.optimizers.Adam(
        k.optimizers.schedules.ExponentialDecay(0.1, 100, 0.9)), loss=SCCE),
     r"learning-rate schedule \(ExponentialDecay\)"),
    (lambda k: dict(optimizer=k.mixed_precision.LossScaleOptimizer(k.optimizers.Adam()),
                    loss=SCCE), r"optimizer LossScaleOptimizer"),
    (lambda k: dict(optimizer="adam", loss="categorical_crossentropy"),
     r"loss 'categorical_crossentropy'; a tangle recipe carries only "
     r"'sparse_categorical_crossentropy'"),
    (lambda k: dict(optimizer="adam", loss=lambda y, p: p),
     r"loss '<lambda>'.*custom losses cannot travel"),
    (lambda k: dict(optimizer="adam",
                    loss=k.losses.SparseCategoricalCrossentropy(from_logits=True)),
     r"loss sets from_logits=True.*end the model with a softmax"),
    (lambda k: dict(optimizer="adam", loss=SCCE, metrics=["accuracy", "mse"]),
     r"metric 'mse'; a tangle recipe carries one metric, 'accuracy'"),
    (lambda k: dict(optimizer="adam", loss=SCCE, metrics=[k.metrics.AUC()]), r"metric 'AUC'"),
    (lambda k: dict(optimizer="adam", loss=SCCE, loss_weights=[2.0]), r"loss_weights"),
])
def test_what_a_recipe_cannot_carry_is_refused(keras: ModuleType,
                                                compile_args: Callable[[ModuleType], dict],
                                                message: str) -> None:
    from gridd.models.keras_model import UnsupportedCompileError, recipe_from_model

    with pytest.raises(UnsupportedCompileError, match=message):
        recipe_from_model(_model(keras, **compile_args(keras)))


def test_models_a_recipe_cannot_describe_are_refused(keras: ModuleType) -> None:
    from gridd.models.keras_model import UnsupportedCompileError, recipe_from_model

    inputs = keras.Input(shape=(None, 4))  # variable length: no fixed input shape
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling1D()(inputs)))
    model.compile(optimizer="adam", loss=SCCE)
    with pytest.raises(UnsupportedCompileError, match=r"one input of fixed shape"):
        recipe_from_model(model)
