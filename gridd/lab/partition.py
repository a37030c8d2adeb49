"""The lab's data: sklearn's bundled digits split among peers with Dirichlet label skew.

Fixed to the benchmark setup: features / 16, a stratified 20 % test set (random_state 0) that
no peer sees, and the training part partitioned by Dirichlet(alpha) per class. Each peer then
holds out 20 % of its own part for validation (what it compares models on). Attackers get
their data here too: label flippers train on y -> classes-1-y.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridd.data import DataError, Dataset, dirichlet_partition, holdout, load_digits_split

DATASETS = ("digits",)
ATTACKS = ("random", "labelflip")
DIGITS_CLASSES = 10


@dataclass(frozen=True, eq=False)
class LabData:
    peers: list[Dataset]
    x_test: np.ndarray
    y_test: np.ndarray
    malicious: frozenset[int]  # indices of attacking peers
    attack: str | None


def pick_malicious(peers: int, fraction: float, seed: int) -> frozenset[int]:
    """round(fraction * peers) attacker indices, seeded."""
    if not 0 <= fraction < 1:
        raise ValueError(f"--malicious: expected a fraction in [0, 1), got {fraction}")
    count = round(fraction * peers)
    rng = np.random.default_rng(seed + 7919)
    return frozenset(int(i) for i in rng.choice(peers, size=count, replace=False))


def lab_data(
    dataset: str,
    peers: int,
    alpha: float,
    seed: int,
    malicious: float = 0.0,
    attack: str | None = None,
) -> LabData:
    if dataset not in DATASETS:
        raise ValueError(f"--dataset: {dataset!r} is not one of {DATASETS}")
    if malicious and attack not in ATTACKS:
        raise ValueError(f"--attack: choose one of {ATTACKS} with --malicious")
    x_train, y_train, x_test, y_test = load_digits_split()
    parts = dirichlet_partition(y_train, peers, alpha, seed)
    bad = pick_malicious(peers, malicious, seed)
    datasets = []
    for i, idx in enumerate(parts):
        x, y = x_train[idx], y_train[idx]
        if i in bad and attack == "labelflip":
            y = DIGITS_CLASSES - 1 - y
        datasets.append(_split(x, y, seed + i))
    return LabData(datasets, x_test, y_test, bad, attack if bad else None)


def _split(x: np.ndarray, y: np.ndarray, seed: int) -> Dataset:
    try:
        return holdout(x, y, seed=seed)
    except DataError:  # a peer with a single sample validates on it
        return Dataset(x, y, x, y)


def observer_data(data: LabData) -> Dataset:
    """What the lab's observer validates on: the pooled validation splits of honest peers.

    The observer stands for an honest participant judging the tangle; with TIP_SELECTOR
    accuracy it needs data to tell a model from noise. It never trains, and the test set
    stays unseen by everyone.
    """
    honest = [d for i, d in enumerate(data.peers) if i not in data.malicious]
    x = np.concatenate([d.x_val for d in honest])
    y = np.concatenate([d.y_val for d in honest])
    return Dataset(x, y, x, y)
