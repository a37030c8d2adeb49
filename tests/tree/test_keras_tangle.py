"""The one TensorFlow test: a tangle created from a Keras model in a notebook, trained by
a Keras peer, read back as a Keras model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from tree_helpers import fast_settings

from gridd.data import Dataset
from gridd.models import Recipe, tensorflow_available
from gridd.transport import MemoryNetwork
from gridd.tree.notebook import create_tangle, open_tangle
from gridd.tree.peer import TreePeer

pytestmark = [
    pytest.mark.tf,
    pytest.mark.skipif(not tensorflow_available(), reason="needs TensorFlow (MODEL!=no_tf)"),
]


def test_keras_model_from_a_notebook_becomes_a_trained_consensus_model(
        shards: list[Dataset], digits: tuple[np.ndarray, ...]) -> None:
    import keras

    inputs = keras.Input(shape=(64,))
    hidden = keras.layers.Dense(24, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
    net = MemoryNetwork()
    client = SimpleNamespace(broker=net.broker("notebook"), store=net.store(),
                             peer_id="notebook", kubo=None)
    view = create_tangle(client, model, Recipe("keras", (64,), 10, optimizer="adam",
                                              learning_rate=0.01), settings=fast_settings())
    assert view.recipe.architecture == "keras" and view.peer.genesis is not None
    assert view.peer.genesis.keras_bytes  # the architecture travels as a .keras file
    peer = TreePeer(genesis_id=view.genesis_id, broker=net.broker("worker"),
                    store=net.store(), dataset=shards[0],
                    settings=fast_settings(model="tf"), seed=1, prefer="keras")
    peer.open()
    try:
        assert type(peer._trainer.model).__name__ == "KerasModel"  # type: ignore[union-attr]
        assert sum(peer.train_step().published for _ in range(3)) >= 1
        view.refresh(wait=2)
        assert view.transaction_count == len(peer.tangle) > 1
        assert "worker" in view.peers
        consensus = view.model()
        assert isinstance(consensus, keras.Model)
        for got, want in zip(consensus.get_weights(), view.weights(), strict=True):
            np.testing.assert_array_equal(got, want)
        x_test, y_test = digits[2], digits[3]
        accuracy = float(np.mean(consensus.predict(x_test, verbose=0).argmax(1) == y_test))
        assert accuracy > 0.3  # ten classes: chance is 0.1; one shard, three short trainings
        again = open_tangle(client, view.genesis_id, wait=0, settings=fast_settings())
        peer.process_messages()  # the worker (its own process in real life) answers the hello
        again.refresh(wait=1)
        assert again.transaction_count == view.transaction_count
        again.close()
    finally:
        peer.close()
        view.close()
