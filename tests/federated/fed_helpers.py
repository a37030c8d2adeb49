"""Helpers of the federated tests: digits partitions written as the workers' .npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gridd.data import dirichlet_partition, load_digits_split


def digits_parts(n: int, tmp: Path, alpha: float = 0.5, seed: int = 0) -> list[Path]:
    """n Dirichlet(alpha) shares of the digits training split, one .npz (x, y) each."""
    x, y, _, _ = load_digits_split()
    paths = []
    for i, idx in enumerate(dirichlet_partition(y, n, alpha, seed)):
        path = tmp / f"part{i}.npz"
        np.savez(path, x=x[idx], y=y[idx])
        paths.append(path)
    return paths


def digits_test() -> tuple[np.ndarray, np.ndarray]:
    _, _, xt, yt = load_digits_split()
    return xt, yt


def mlp(hidden: int = 32, lr: float = 0.1, seed: int = 0, optimizer: str = "sgd"):
    """The benchmark's model: Input(64) -> Dense(hidden, relu) -> Dense(10, softmax)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(shape=(64,)),
                              keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    opt = keras.optimizers.SGD(lr) if optimizer == "sgd" else keras.optimizers.Adam(lr)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model
