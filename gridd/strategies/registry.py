"""Built-in strategies by name, and back from a logged or checkpointed config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gridd.strategies.adaptive import FedAdam, FedYogi
from gridd.strategies.averaging import FedAvg, FedProx
from gridd.strategies.base import Strategy, StrategyError
from gridd.strategies.robust import FedMedian, Krum, TrimmedMean

BUILTINS: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (FedAvg, FedProx, FedAdam, FedYogi, FedMedian, TrimmedMean, Krum)
}


def strategy_from_config(cfg: Mapping[str, Any]) -> Strategy:
    """The built-in strategy a `config()` describes. A notebook's own class cannot be rebuilt
    from its name: pass the instance again instead."""
    if not isinstance(cfg, Mapping):
        raise StrategyError(f"strategy config: expected a dict, got {type(cfg).__name__}")
    name = cfg.get("name")
    if not isinstance(name, str):
        raise StrategyError("strategy config: needs a 'name' string")
    cls = BUILTINS.get(name.strip().lower())
    if cls is None:
        raise StrategyError(
            f"unknown strategy {name!r} (built-ins: {', '.join(BUILTINS)}; "
            "for your own class pass an instance)"
        )
    params = {k: v for k, v in cfg.items() if k != "name"}
    try:
        return cls(**params)
    except TypeError as e:
        raise StrategyError(f"strategy {cls.name}: bad parameters {sorted(params)}: {e}") from None


def resolve(strategy: str | Mapping[str, Any] | Strategy | None) -> Strategy:
    """A Strategy from what a user passed: None (FedAvg), a built-in's name, a config dict,
    or an instance (returned as is)."""
    if strategy is None:
        return FedAvg()
    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, str):
        return strategy_from_config({"name": strategy})
    if isinstance(strategy, Mapping):
        return strategy_from_config(strategy)
    raise StrategyError(
        f"strategy: expected a name ({', '.join(BUILTINS)}), a Strategy instance or None, "
        f"got {type(strategy).__name__}"
    )
