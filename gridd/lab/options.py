"""What a lab run is asked to do, and what it reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gridd.models import Recipe, build_model
from gridd.tree.settings import TreeSettings

TRANSPORTS = ("ipfs", "memory")


def digits_recipe() -> Recipe:
    """The benchmark model: Input(64) -> Dense(32, relu) -> Dense(10, softmax), SGD 0.1, batch
    16, one local epoch per training."""
    return Recipe(architecture="digits_mlp", input_shape=(64,), classes=10, optimizer="sgd",
                  learning_rate=0.1, batch_size=16, local_epochs=1)


@dataclass(frozen=True)
class LabOptions:
    peers: int = 10
    dataset: str = "digits"
    alpha: float = 0.5
    seed: int = 0
    transport: str = "ipfs"
    malicious: float = 0.0
    attack: str | None = None
    client_epochs: int | None = None  # budget; None = 30 per peer (Flower's 30 rounds)
    active_quota: float = 1.0
    training_interval: float = 1.0  # seconds, real-Kubo peers only
    num_of_tips: int = 8
    sampling_rounds: int = 35
    tip_selector: str = "accuracy"
    reference_top: int = 8
    vet_tolerance: float = 1.0  # see configs/tree.yaml
    vet_own_accuracy: float = 0.0  # see configs/tree.yaml: against label flippers
    overlap: int = 2  # memory lab: see memory_lab; 2 matches 10 real Kubo peers' staleness
    model: str = "no_tf"  # no_tf (numpy peers) or tf (Keras peers)
    max_seconds: float = 1800.0  # a real-Kubo lab gives up after this long
    out: Path | None = None

    def validate(self) -> None:
        if self.peers < 1:
            raise ValueError("--peers: need at least 1 peer")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"--transport: choose one of {TRANSPORTS}")
        if self.alpha <= 0:
            raise ValueError("--alpha: must be > 0")
        if self.budget < 1:
            raise ValueError("--client-epochs: must be >= 1")
        if self.malicious and self.attack is None:
            raise ValueError("--attack: choose random or labelflip with --malicious")
        if self.model not in ("no_tf", "tf"):
            raise ValueError("--model: choose no_tf or tf")

    @property
    def budget(self) -> int:
        return self.client_epochs if self.client_epochs is not None else 30 * self.peers

    def tree_settings(self, backend: str) -> TreeSettings:
        return TreeSettings(
            training_interval=self.training_interval, active_quota=self.active_quota,
            num_of_tips=self.num_of_tips, num_of_sampling_round=self.sampling_rounds,
            model=self.model, storage=backend, message_broker=backend, logger="none",
            logging_level="WARNING", announce_interval=5.0, tip_selector=self.tip_selector,
            reference_top=self.reference_top, vet_tolerance=self.vet_tolerance,
            vet_own_accuracy=self.vet_own_accuracy,
        )


@dataclass
class Point:
    """One row of the accuracy-over-time table."""

    seconds: float
    client_epochs: int
    transactions: int
    consensus_accuracy: float


@dataclass
class LabResult:
    options: LabOptions
    genesis_id: str
    timeline: list[Point] = field(default_factory=list)
    wall_seconds: float = 0.0
    peak_memory_bytes: int = 0
    metrics_urls: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    staleness_median: float | None = None
    cpu_seconds: float = 0.0  # real-Kubo lab: CPU time of every peer, daemon and the lab

    @property
    def final_accuracy(self) -> float:
        return self.timeline[-1].consensus_accuracy if self.timeline else float("nan")

    def epochs_to(self, accuracy: float) -> int | None:
        """Client-epochs spent when consensus accuracy first reached `accuracy`."""
        for p in self.timeline:
            if p.consensus_accuracy >= accuracy:
                return p.client_epochs
        return None

    def to_json(self) -> dict[str, Any]:
        opts = asdict(self.options)
        opts["out"] = str(self.options.out) if self.options.out else None
        return {
            "options": opts,
            "genesis_id": self.genesis_id,
            "final_accuracy": self.final_accuracy,
            "best_accuracy": max((p.consensus_accuracy for p in self.timeline), default=None),
            "client_epochs": self.timeline[-1].client_epochs if self.timeline else 0,
            "epochs_to_93": self.epochs_to(0.93),
            "wall_seconds": self.wall_seconds,
            "peak_memory_bytes": self.peak_memory_bytes,
            "staleness_median": self.staleness_median,
            "cpu_seconds": self.cpu_seconds,
            "metrics_urls": self.metrics_urls,
            "notes": self.notes,
            "timeline": [asdict(p) for p in self.timeline],
        }


def holdout_accuracy(
    recipe: Recipe, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray
) -> float:
    """Accuracy of weights on the held-out test set (numpy model: same math as Keras)."""
    model = build_model(recipe, weights, prefer="numpy")
    return float(model.evaluate(x, y)[recipe.metric])
