"""FedAvg and FedProx: the sample-weighted mean (McMahan et al. 2017; Li et al. 2020).

The arithmetic is `gridd.models.average_weights` (float64 accumulation, float32 out), the
one weighted mean in gridd; tree mode reaches it through FedAvg too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gridd.models.base import WeightsError, average_weights
from gridd.strategies.base import Strategy, StrategyError, Update, Weights, real


class FedAvg(Strategy):
    """Mean of the updates weighted by their `samples`: more data counts for more."""

    name = "fedavg"

    def aggregate(self, current: Weights, updates: Sequence[Update]) -> Weights:
        try:
            return average_weights([u.weights for u in updates], [u.samples for u in updates])
        except WeightsError as e:  # inputs are checked already; kept for a clear message
            raise StrategyError(f"{self.name}: {e}") from None


class FedProx(FedAvg):
    """FedAvg on the server; workers add (mu/2)·||w - w_global||² to their local loss.

    The proximal term keeps non-IID workers near the global model; it lives in local training
    (`local_options()` tells workers `mu`), so aggregation is FedAvg's.
    """

    name = "fedprox"

    def __init__(self, mu: float = 0.01) -> None:
        self.mu = real("fedprox mu", mu, 0.0)

    def local_options(self) -> dict[str, float]:
        return {"mu": self.mu}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "mu": self.mu}
