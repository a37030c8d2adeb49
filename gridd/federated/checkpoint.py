"""A federated job's state on the coordinator's disk, so a restarted kernel carries on.

Written after every finished round, atomically (temporary file, fsync, rename): a crash
leaves the previous round's checkpoint, never half of one. It holds everything the next
round needs without the network: the job id, the round reached, the global weights
themselves (not only their CID: the daemon may have been reset), the strategy's state
(FedAdam's moments...), the history and the settings the job was started with. Loading
refuses a file for another model or dataset with a sentence instead of training the wrong
thing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from gridd.models.base import WeightSpec, spec_of
from gridd.wire import WireError, array_from_wire, array_to_wire

FORMAT = "gridd-federated-checkpoint"
VERSION = 1
MAX_CHECKPOINT_BYTES = 2 * 1024**3


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (unreadable, or for another job)."""


@dataclass
class Checkpoint:
    job: str
    round: int  # rounds finished
    rounds: int  # rounds asked for
    dataset: str
    weights: list[np.ndarray]
    strategy: dict[str, Any]  # {"config": ..., "state": ...}
    history: dict[str, Any]
    settings: dict[str, Any]

    def save(self, path: Path) -> None:
        data = msgpack.packb({
            "format": FORMAT, "version": VERSION, "job": self.job, "round": self.round,
            "rounds": self.rounds, "dataset": self.dataset,
            "weights": [array_to_wire(w) for w in self.weights],
            "strategy": _arrays_out(self.strategy), "history": self.history,
            "settings": self.settings,
        }, use_bin_type=True)
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > MAX_CHECKPOINT_BYTES:
                raise CheckpointError(f"{path}: {size} bytes is too big for a checkpoint")
            raw = msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
            if not isinstance(raw, dict) or raw.get("format") != FORMAT:
                raise CheckpointError(f"{path} is not a gridd federated checkpoint")
            if raw.get("version") != VERSION:
                raise CheckpointError(f"{path}: checkpoint version {raw.get('version')} is not "
                                      f"supported (this gridd reads version {VERSION})")
            return cls(str(raw["job"]), int(raw["round"]), int(raw["rounds"]),
                       str(raw["dataset"]), [array_from_wire(w) for w in raw["weights"]],
                       _arrays_in(raw["strategy"]), dict(raw["history"]),
                       dict(raw["settings"]))
        except CheckpointError:
            raise
        except (OSError, ValueError, KeyError, TypeError, WireError,
                msgpack.exceptions.ExtraData) as e:
            raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") \
                from None

    def check_fits(self, spec: WeightSpec, dataset: str, path: Path) -> None:
        if spec_of(self.weights) != spec:
            raise CheckpointError(f"{path} was written for another model (its weights do not "
                                  "match this model's shapes); pass a new checkpoint path")
        if dataset != self.dataset:
            raise CheckpointError(f"{path} is a job on dataset {self.dataset!r}, not "
                                  f"{dataset!r}; pass a new checkpoint path")


_ARRAY = "__ndarray__"


def _arrays_out(value: Any) -> Any:
    """Strategy state with numpy arrays made msgpack-safe (tagged maps)."""
    if isinstance(value, np.ndarray):
        return {_ARRAY: array_to_wire(value)}
    if isinstance(value, dict):
        return {str(k): _arrays_out(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_arrays_out(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _arrays_in(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            return array_from_wire(value[_ARRAY])
        return {k: _arrays_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arrays_in(v) for v in value]
    return value
