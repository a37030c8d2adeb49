"""The aggregation seam: one worker update in, one model out, behind a small class.

Federated jobs and tree mode both turn several models' weights into one. Keeping that step
behind `Strategy.aggregate` lets a job swap FedAvg for a robust rule (or a notebook user's
own class) without touching the round logic. Pure numpy: no IO, no TensorFlow.

Every `aggregate` (built-in or a subclass's) is wrapped by `Strategy` so it only ever sees
checked input (at least `min_updates()` updates whose arrays match `current`'s spec and are
finite) and only ever returns float32 arrays of `current`'s shapes with finite values: the
coordinator checks updates as well, but the seam itself never turns bad input into NaN.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from gridd.models.base import WeightsError, check_weights, spec_of

#: One model's weights: float arrays in Keras order (float32 on the wire).
Weights = list[np.ndarray]


class StrategyError(WeightsError):
    """A strategy cannot aggregate: too few updates, mismatched or non-finite weights, bad
    hyperparameters or state. A WeightsError (so a ValueError), as the old averaging raised."""


@dataclass(frozen=True)
class Update:
    """One worker's result for a round.

    `samples` is the number of examples the worker says it trained on (> 0). Workers send
    whole counts; tree mode passes clipped claims, which may be fractional.
    """

    weights: Weights
    samples: float
    sender: str = ""

    def __post_init__(self) -> None:
        s = self.samples
        if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)):
            raise StrategyError(f"update samples: expected a number, got {type(s).__name__}")
        if not math.isfinite(float(s)) or s <= 0:
            raise StrategyError(f"update samples: expected a finite count > 0, got {s!r}")
        if not isinstance(self.sender, str):
            raise StrategyError(f"update sender: expected a str, got {type(self.sender).__name__}")


def check_updates(current: Sequence[np.ndarray], updates: Sequence[Update], minimum: int) -> None:
    """StrategyError unless `current` is a finite float model and `updates` holds at least
    `minimum` (and at least one) Updates whose weights match its spec exactly."""
    if isinstance(updates, (str, bytes)) or not isinstance(updates, Sequence):
        raise StrategyError(f"updates: expected a list of Update, got {type(updates).__name__}")
    if not updates:
        raise StrategyError("no updates to aggregate")
    if len(updates) < minimum:
        raise StrategyError(f"need at least {minimum} updates, got {len(updates)}")
    if isinstance(current, np.ndarray) or not isinstance(current, Sequence) or not current:
        raise StrategyError("current weights: expected a non-empty list of arrays")
    for i, a in enumerate(current):
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            kind = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise StrategyError(f"current weights[{i}]: expected a float array, got {kind}")
        if not np.isfinite(a).all():
            raise StrategyError(f"current weights[{i}]: non-finite values (NaN or inf)")
    spec = spec_of(current)
    for n, u in enumerate(updates):
        if not isinstance(u, Update):
            raise StrategyError(f"update {n}: expected an Update, got {type(u).__name__}")
        try:
            check_weights(spec, u.weights)
        except WeightsError as e:
            who = f" from {u.sender!r}" if u.sender else ""
            raise StrategyError(f"update {n}{who}: {e}") from None


def _finish(name: str, current: Sequence[np.ndarray], result: Any) -> Weights:
    """The aggregate as float32 arrays of current's shapes, or StrategyError."""
    if isinstance(result, np.ndarray) or not isinstance(result, Sequence):
        raise StrategyError(f"{name}: aggregate returned {type(result).__name__}, not a list")
    if len(result) != len(current):
        raise StrategyError(f"{name}: aggregate returned {len(result)} arrays, not {len(current)}")
    out: Weights = []
    for i, (a, ref) in enumerate(zip(result, current, strict=True)):
        arr = np.asarray(a)
        if arr.shape != ref.shape:
            raise StrategyError(
                f"{name}: aggregate returned shape {arr.shape} for weights[{i}], not {ref.shape}"
            )
        if arr.dtype.kind not in "fiu":
            raise StrategyError(f"{name}: aggregate returned dtype {arr.dtype} for weights[{i}]")
        arr = arr.astype(np.float32)  # always a new array: callers may keep it
        if not np.isfinite(arr).all():
            raise StrategyError(f"{name}: aggregate produced non-finite weights[{i}]")
        out.append(arr)
    return out


def _checked(aggregate: Callable[..., Any]) -> Callable[..., Weights]:
    @functools.wraps(aggregate)
    def run(self: Strategy, current: Weights, updates: Sequence[Update]) -> Weights:
        try:
            check_updates(current, updates, max(1, self.min_updates()))
        except StrategyError as e:
            raise StrategyError(f"{self.name}: {e}") from None
        return _finish(self.name, current, aggregate(self, current, updates))

    run._gridd_checked = True  # type: ignore[attr-defined]
    return run


class Strategy(ABC):
    """How one round's updates become the next global model.

    Subclasses set `name` and override `aggregate(current, updates)`; `current` is the global
    model the round started from (server-side optimizers need it). Implementations must not
    mutate their inputs. The base class checks inputs and output around every `aggregate`.
    Stateful strategies also override `state_dict`/`load_state` (checkpoints) and every
    strategy with hyperparameters overrides `config`.
    """

    name: ClassVar[str] = "custom"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("aggregate")
        if own is not None and not getattr(own, "_gridd_checked", False):
            cls.aggregate = _checked(own)  # type: ignore[method-assign]

    def local_options(self) -> dict[str, float]:
        """Options workers apply in local training (FedProx: {"mu": mu}); none by default."""
        return {}

    def min_updates(self) -> int:
        """The fewest updates `aggregate` can work with."""
        return 1

    @abstractmethod
    def aggregate(self, current: Weights, updates: Sequence[Update]) -> Weights:
        """The new global weights from this round's updates."""

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint: plain containers, arrays as `list[np.ndarray]`."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned; a stateless strategy accepts only {}."""
        if not isinstance(state, dict) or state:
            raise StrategyError(f"{self.name}: has no state to load, got {state!r:.80}")

    def config(self) -> dict[str, Any]:
        """Name and hyperparameters, JSON-able (logs, checkpoints, progress events)."""
        return {"name": self.name}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({params})"


# -- hyperparameter checks shared by the built-ins -------------------------------------------


def real(name: str, value: Any, low: float, high: float = math.inf, *, open_low: bool = False,
         open_high: bool = False) -> float:
    """`value` as a float in [low, high] (ends open when asked), or StrategyError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise StrategyError(f"{name}: expected a number, got {type(value).__name__}")
    v = float(value)
    below = v <= low if open_low else v < low
    above = v >= high if open_high else v > high
    if not math.isfinite(v) or below or above:
        lo, hi = "(" if open_low else "[", ")" if open_high else "]"
        raise StrategyError(f"{name}: expected a finite number in {lo}{low}, {high}{hi}, got {v}")
    return v


def count(name: str, value: Any, minimum: int) -> int:
    """`value` as an int >= minimum, or StrategyError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise StrategyError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise StrategyError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def stacked(updates: Sequence[Update], i: int) -> np.ndarray:
    """Array `i` of every update, stacked on a new first axis, as float64."""
    return np.stack([np.asarray(u.weights[i], dtype=np.float64) for u in updates])
