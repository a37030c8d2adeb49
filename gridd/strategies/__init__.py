"""Aggregation strategies: how worker updates become the next global model.

`resolve("krum")`, `Krum(f=1)` or a subclass of `Strategy` with its own `aggregate`; see
`base` for the contract. Pure numpy: no IO, no TensorFlow.
"""

from gridd.strategies.adaptive import FedAdam, FedYogi
from gridd.strategies.averaging import FedAvg, FedProx
from gridd.strategies.base import Strategy, StrategyError, Update, Weights, check_updates
from gridd.strategies.registry import BUILTINS, resolve, strategy_from_config
from gridd.strategies.robust import FedMedian, Krum, TrimmedMean

__all__ = [
    "BUILTINS",
    "FedAdam",
    "FedAvg",
    "FedMedian",
    "FedProx",
    "FedYogi",
    "Krum",
    "Strategy",
    "StrategyError",
    "TrimmedMean",
    "Update",
    "Weights",
    "check_updates",
    "resolve",
    "strategy_from_config",
]
