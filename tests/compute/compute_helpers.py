"""Helpers for the compute tests: worker processes, the test grid, a tiny model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridd.compute.local import WorkerProcess
from gridd.ipfs.cluster import LocalCluster


@dataclass
class Grid:
    cluster: LocalCluster
    topic: str
    workers: list[WorkerProcess]
    tmp: Path

    def api(self, i: int) -> str:
        return self.cluster.clients[i].address.multiaddr

    def spawn(self, daemon: int, topic: str | None = None, *args: str) -> WorkerProcess:
        w = WorkerProcess(self.api(daemon), topic or self.topic, list(args)).start(self.tmp)
        self.workers.append(w)
        return w


def mlp(hidden: int = 16, lr: float = 0.01, seed: int = 0, lambda_layer: bool = False):
    """A tiny compiled digits classifier (optionally with a Lambda layer, to be refused)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(64,))
    h = inputs
    if lambda_layer:
        h = keras.layers.Lambda(lambda t: t * 2.0)(h)
    h = keras.layers.Dense(hidden, activation="relu")(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, out)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model
