"""FedAdam and FedYogi: an adaptive optimizer on the server (Reddi et al. 2021,
"Adaptive Federated Optimization", Algorithm 2).

The round's FedAvg minus the starting model is a pseudo-gradient Δ; the server keeps Adam or
Yogi moments of it and steps `current + eta * m / (sqrt(v) + tau)`. No bias correction, and
v starts at tau² as in the paper. Defaults are Flower's (eta 0.1 for Adam, 0.01 for Yogi,
beta_1 0.9, beta_2 0.99, tau 1e-3); the workers' own learning rate is the job's, not ours.

State for checkpoints: {"t": rounds stepped, "m": [float64 arrays], "v": [float64 arrays]}
(m and v empty before the first step). Arrays stay float64 so a restored run takes exactly
the step the uninterrupted one would have.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from gridd.strategies.averaging import FedAvg
from gridd.strategies.base import Strategy, StrategyError, Update, Weights, count, real


class _ServerOptimizer(Strategy):
    """Shared FedOpt machinery; subclasses give the second-moment rule."""

    #: Server learning rate when none is given (Flower's defaults differ per optimizer).
    default_eta: ClassVar[float]

    def __init__(
        self,
        eta: float | None = None,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
    ) -> None:
        eta = self.default_eta if eta is None else eta
        self.eta = real(f"{self.name} eta", eta, 0.0, open_low=True)
        self.beta_1 = real(f"{self.name} beta_1", beta_1, 0.0, 1.0, open_high=True)
        self.beta_2 = real(f"{self.name} beta_2", beta_2, 0.0, 1.0, open_high=True)
        self.tau = real(f"{self.name} tau", tau, 0.0, open_low=True)
        self._m: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self._t = 0

    @abstractmethod
    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        """The new second moment from the old one and Δ²."""

    def aggregate(self, current: Weights, updates: Sequence[Update]) -> Weights:
        avg = FedAvg().aggregate(current, updates)
        x = [np.asarray(c, dtype=np.float64) for c in current]
        if self._t == 0:
            m_old = [np.zeros_like(a) for a in x]
            v_old = [np.full_like(a, self.tau**2) for a in x]
        else:
            if [a.shape for a in self._m] != [a.shape for a in x]:
                raise StrategyError(
                    f"{self.name}: optimizer state is for shapes {[a.shape for a in self._m]}, "
                    f"the model has {[a.shape for a in x]}"
                )
            m_old, v_old = self._m, self._v
        m_new, v_new, out = [], [], []
        for xi, ai, mi, vi in zip(x, avg, m_old, v_old, strict=True):
            delta = ai.astype(np.float64) - xi
            m = self.beta_1 * mi + (1.0 - self.beta_1) * delta
            v = self._second_moment(vi, delta * delta)
            with np.errstate(over="ignore"):  # overflow is refused just below
                new = (xi + self.eta * m / (np.sqrt(v) + self.tau)).astype(np.float32)
            if not (np.isfinite(m).all() and np.isfinite(v).all() and np.isfinite(new).all()):
                raise StrategyError(f"{self.name}: the step overflowed; state left unchanged")
            m_new.append(m)
            v_new.append(v)
            out.append(new)
        self._m, self._v, self._t = m_new, v_new, self._t + 1
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"t": self._t, "m": [a.copy() for a in self._m], "v": [a.copy() for a in self._v]}

    def load_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or set(state) != {"t", "m", "v"}:
            raise StrategyError(f"{self.name}: state must be a dict with keys t, m, v")
        t = count(f"{self.name} state t", state["t"], 0)
        m = self._arrays("m", state["m"])
        v = self._arrays("v", state["v"])
        if [a.shape for a in m] != [a.shape for a in v]:
            raise StrategyError(f"{self.name}: state m and v have different shapes")
        if (t == 0) != (not m):
            raise StrategyError(f"{self.name}: state t={t} with {len(m)} moment arrays")
        if any((a < 0).any() for a in v):
            raise StrategyError(f"{self.name}: state v has negative values")
        self._t, self._m, self._v = t, m, v

    def _arrays(self, key: str, value: Any) -> list[np.ndarray]:
        if not isinstance(value, (list, tuple)):
            raise StrategyError(f"{self.name}: state {key} must be a list of arrays")
        out = []
        for i, a in enumerate(value):
            if not isinstance(a, np.ndarray) or a.dtype.kind != "f" or not np.isfinite(a).all():
                raise StrategyError(f"{self.name}: state {key}[{i}] is not a finite float array")
            out.append(a.astype(np.float64))  # a copy: the caller's arrays stay theirs
        return out

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "eta": self.eta,
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "tau": self.tau,
        }


class FedAdam(_ServerOptimizer):
    """Adam on the server: v = beta_2·v + (1 - beta_2)·Δ². eta defaults to 0.1."""

    name = "fedadam"
    default_eta = 0.1

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return self.beta_2 * v + (1.0 - self.beta_2) * delta_sq


class FedYogi(_ServerOptimizer):
    """Yogi on the server: v = v - (1 - beta_2)·Δ²·sign(v - Δ²). v moves toward Δ² by
    (1 - beta_2)·Δ² (Adam: by (1 - beta_2)·|Δ² - v|), so a large v decays slowly and the
    step stays cautious after a noisy round. eta defaults to 0.01."""

    name = "fedyogi"
    default_eta = 0.01

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return v - (1.0 - self.beta_2) * delta_sq * np.sign(v - delta_sq)
