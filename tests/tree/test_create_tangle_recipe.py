"""create_tangle(model) trains peers as the model is compiled (issue 11: a model compiled
with Adam(0.003) silently became a recipe with SGD 0.1); an explicit recipe= still wins,
and what a recipe cannot carry is refused, not replaced by defaults."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tree_helpers import fast_settings

from gridd.models import Recipe, build_model, tensorflow_available
from gridd.transport import MemoryNetwork
from gridd.tree.genesis import load_genesis
from gridd.tree.notebook import create_tangle

pytestmark = [
    pytest.mark.tf,
    pytest.mark.skipif(not tensorflow_available(), reason="needs TensorFlow (MODEL!=no_tf)"),
    pytest.mark.filterwarnings("ignore::gridd.tree.notebook.NoValidationWarning"),
]


def _client(net: MemoryNetwork) -> SimpleNamespace:
    return SimpleNamespace(broker=net.broker("notebook"), store=net.store(), peer_id="notebook")


def _model(**compile_args: Any) -> Any:
    import keras

    inputs = keras.Input(shape=(64,))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(inputs))
    if compile_args:
        model.compile(**compile_args)
    return model


def test_peers_train_with_the_models_compile_settings(tmp_path: Path) -> None:
    import keras

    net = MemoryNetwork()
    model = _model(optimizer=keras.optimizers.Adam(0.003),
                   loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    view = create_tangle(_client(net), model, batch_size=32, settings=fast_settings())
    try:
        genesis = load_genesis(net.store(), view.genesis_id)  # what a joining peer reads
        assert genesis.recipe == Recipe("keras", (64,), 10, optimizer="adam",
                                        learning_rate=0.003, batch_size=32)
        peer_model = build_model(genesis.recipe, genesis.weights,
                                 keras_model=genesis.keras_bytes).model  # type: ignore[attr-defined]
        assert type(peer_model.optimizer) is keras.optimizers.Adam
        assert float(peer_model.optimizer.learning_rate) == pytest.approx(0.003)
    finally:
        view.close()

    path = tmp_path / "compiled.keras"
    model.save(path)  # a saved model keeps its compile settings, and so does its tangle
    view = create_tangle(_client(net), str(path), settings=fast_settings())
    try:
        assert (view.recipe.optimizer, view.recipe.learning_rate) == ("adam", 0.003)
    finally:
        view.close()


def test_an_explicit_recipe_wins_and_needs_no_compile() -> None:
    import keras

    net = MemoryNetwork()
    recipe = Recipe("keras", (64,), 10, optimizer="sgd", learning_rate=0.05, local_epochs=2)
    for model in (_model(), _model(optimizer=keras.optimizers.Adam(0.003),
                                   loss="sparse_categorical_crossentropy")):
        view = create_tangle(_client(net), model, recipe, settings=fast_settings())
        try:
            assert view.recipe == recipe
        finally:
            view.close()
    with pytest.raises(ValueError, match="go inside recipe="):
        create_tangle(_client(net), _model(), recipe, batch_size=8)


def test_what_a_recipe_cannot_carry_is_refused_not_replaced() -> None:
    import keras

    from gridd.models.keras_model import UnsupportedCompileError

    net = MemoryNetwork()
    with pytest.raises(UnsupportedCompileError, match="not compiled"):
        create_tangle(_client(net), _model(), settings=fast_settings())
    with pytest.raises(UnsupportedCompileError, match=r"SGD sets momentum=0\.9"):
        create_tangle(_client(net), _model(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss="sparse_categorical_crossentropy"), settings=fast_settings())
