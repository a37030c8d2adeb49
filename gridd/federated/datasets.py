"""Datasets that stay home: a worker's `--dataset NAME=PATH.npz`, checked at start.

A federated worker trains on data it never sends. The file is read once at start, with
allow_pickle=False, by the same loader tree peers use (gridd.data.load_npz: keys x, y and
optionally x_val, y_val), so a wrong file stops the worker with a sentence, not a job with a
stack trace. Without x_val/y_val a seeded `holdout` fraction is kept aside for federated
evaluation; with holdout 0 every row trains and the worker reports no evaluation. What the
worker advertises is `description`: name, counts, feature shape, dtype and classes, never
a sample.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gridd.compute.protocol import MAX_DATASETS
from gridd.data import DataError, Dataset, load_npz
from gridd.federated.messages import DATASET_NAME

DEFAULT_HOLDOUT = 0.1
MAX_LISTED_CLASSES = 64  # classes listed in an ad; more are only counted


@dataclass(frozen=True, eq=False)
class LocalDataset:
    """One named dataset of this worker: training rows and its held-out rows."""

    name: str
    path: Path
    data: Dataset

    @property
    def samples(self) -> int:
        return len(self.data.x)

    @functools.cached_property
    def description(self) -> dict[str, Any]:
        """What the worker's ads say about it (gridd.compute.protocol AD `datasets`):
        computed once, since the data never changes and an ad goes out every few seconds."""
        labels = np.unique(np.concatenate([self.data.y, self.data.y_val]))
        return {
            "name": self.name, "samples": self.samples, "holdout": len(self.data.x_val),
            "shape": [int(d) for d in self.data.x.shape[1:]], "dtype": str(self.data.x.dtype),
            "num_classes": int(labels.max()) + 1 if len(labels) else 0,
            "classes": [int(c) for c in labels[:MAX_LISTED_CLASSES]],
        }


def parse_dataset_option(text: str) -> tuple[str, Path]:
    """`NAME=PATH.npz` -> (name, path); ValueError naming what is wrong."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--dataset {text!r}: expected NAME=PATH.npz")
    if not DATASET_NAME.match(name):
        raise ValueError(f"--dataset {text!r}: the name must be 1-64 of [A-Za-z0-9_.-]")
    return name, Path(path).expanduser()


def load_dataset(name: str, path: Path, holdout: float = DEFAULT_HOLDOUT) -> LocalDataset:
    """Load and check one dataset; DataError says which file and what is wrong."""
    if not 0 <= holdout < 1:
        raise DataError(f"holdout must be in [0, 1), got {holdout!r}")
    if not path.is_file():
        raise DataError(f"dataset {name!r}: {path} does not exist or is not a file")
    seed = zlib.crc32(name.encode())  # the same rows are held out at every start
    return LocalDataset(name, path, load_npz(path, val_fraction=holdout, seed=seed))


def load_datasets(options: list[str] | tuple[str, ...], holdout: float = DEFAULT_HOLDOUT
                  ) -> dict[str, LocalDataset]:
    """Every `--dataset NAME=PATH.npz` of a worker, loaded; ValueError/DataError if one is
    wrong or two share a name."""
    if len(options) > MAX_DATASETS:
        raise ValueError(f"at most {MAX_DATASETS} datasets per worker, got {len(options)}")
    out: dict[str, LocalDataset] = {}
    for text in options:
        name, path = parse_dataset_option(text)
        if name in out:
            raise ValueError(f"--dataset {name!r} is given twice")
        out[name] = load_dataset(name, path, holdout)
    return out
