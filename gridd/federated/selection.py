"""Which workers can take a federated round, and which of them a round asks.

A worker is eligible when it is live, advertises the job's dataset, and that dataset fits the
model (feature shape, labels within the model's outputs); the coordinator never sends a round
to a worker that could only decline it. A round asks `fraction` of the eligible workers,
at least `min_workers`, at most `max_workers`, each at most once, drawn with the job's seeded
generator so that a seeded job asks the same workers when the grid is the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridd.compute.dispatch import WorkerAd
from gridd.federated.messages import MAX_SELECTED


@dataclass(frozen=True)
class Candidate:
    peer_id: str
    samples: int  # rows it advertises for the dataset: the most its updates may claim
    holdout: int


def dataset_entry(ad: WorkerAd, dataset: str) -> dict[str, Any] | None:
    for entry in ad.body.get("datasets") or ():
        if entry.get("name") == dataset:
            return entry
    return None


def unfit(entry: dict[str, Any], input_shape: tuple[int, ...] | None,
          outputs: int | None) -> str | None:
    """Why an advertised dataset cannot feed the model, or None."""
    shape = tuple(entry["shape"])
    if input_shape is not None and shape != input_shape:
        return f"features of shape {shape}, the model takes {input_shape}"
    if outputs is not None and outputs > 1 and entry["num_classes"] > outputs:
        return f"{entry['num_classes']} classes, the model has {outputs} outputs"
    if entry["samples"] < 1:
        return "no training rows"
    return None


def eligible(ads: Sequence[WorkerAd], dataset: str, input_shape: tuple[int, ...] | None,
             outputs: int | None) -> tuple[list[Candidate], dict[str, str]]:
    """(candidates sorted by peer id, {peer id: why not} for the live workers left out)."""
    found: list[Candidate] = []
    left_out: dict[str, str] = {}
    for ad in ads:
        entry = dataset_entry(ad, dataset)
        if entry is None:
            names = [d.get("name") for d in ad.body.get("datasets") or ()]
            left_out[ad.peer_id] = f"no dataset {dataset!r} (has {names or 'none'})"
            continue
        why = unfit(entry, input_shape, outputs)
        if why is not None:
            left_out[ad.peer_id] = why
            continue
        found.append(Candidate(ad.peer_id, int(entry["samples"]), int(entry["holdout"])))
    return sorted(found, key=lambda c: c.peer_id), left_out


def choose(candidates: Sequence[Candidate], *, fraction: float, min_workers: int,
           max_workers: int | None, rng: np.random.Generator) -> list[Candidate]:
    """The workers one round asks: distinct, seeded, within [min_workers, max_workers]."""
    want = max(min_workers, math.ceil(fraction * len(candidates)))
    cap = min(len(candidates), MAX_SELECTED, max_workers or MAX_SELECTED)
    n = min(want, cap)
    if n >= len(candidates):
        return list(candidates)
    picked = rng.choice(len(candidates), size=n, replace=False)
    return [candidates[i] for i in sorted(picked)]
