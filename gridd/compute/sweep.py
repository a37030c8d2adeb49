"""Hyperparameter sweeps: expand a search space, run trials across workers, stop poor ones.

A space is a dict. All lists → the grid (every combination). Any sampler (a callable taking a
numpy Generator, e.g. `uniform(1e-4, 1e-2)`) → random search with `trials=` draws, lists
then being sampled uniformly. Early stopping is asynchronous successive halving (ASHA): at
rungs min_epochs·η^k a trial continues only if it is in the top 1/η of the trials that have
reached that rung so far.
"""

from __future__ import annotations

import inspect
import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gridd.compute.dispatch import JobFailed
from gridd.compute.remote import Job, RemoteHistory, history_from_logs
from gridd.compute.table import Table

Sampler = Callable[[np.random.Generator], Any]
FIT_KEYS = ("epochs", "batch_size")


def uniform(low: float, high: float) -> Sampler:
    return lambda rng: float(rng.uniform(low, high))


def loguniform(low: float, high: float) -> Sampler:
    return lambda rng: float(math.exp(rng.uniform(math.log(low), math.log(high))))


def randint(low: int, high: int) -> Sampler:
    """Integers in [low, high] (both ends included)."""
    return lambda rng: int(rng.integers(low, high + 1))


def choice(options: list[Any]) -> Sampler:
    return lambda rng: options[int(rng.integers(len(options)))]


def expand(space: Mapping[str, Any], trials: int | None = None, seed: int = 0
           ) -> list[dict[str, Any]]:
    """The configurations a space describes (grid, or `trials` random draws)."""
    if not space:
        raise ValueError("space: give at least one parameter, e.g. {'units': [32, 64]}")
    for k, v in space.items():
        if not (isinstance(v, (list, tuple)) and v) and not callable(v):
            raise ValueError(f"space[{k!r}]: expected a non-empty list or a sampler, got {v!r}")
    random = any(callable(v) for v in space.values())
    if not random:
        grid = [dict(zip(space, combo, strict=True))
                for combo in itertools.product(*space.values())]
        return grid if trials is None else grid[:trials]
    if not trials or trials < 1:
        raise ValueError("trials: a space with samplers needs trials=N (how many draws)")
    rng = np.random.default_rng(seed)
    return [{k: (v(rng) if callable(v) else v[int(rng.integers(len(v)))])
             for k, v in space.items()} for _ in range(trials)]


def call_build(build_fn: Callable[..., Any], config: dict[str, Any]) -> Any:
    """build_fn(**config) when it names the parameters, else build_fn(config)."""
    try:
        params = inspect.signature(build_fn).parameters
    except (TypeError, ValueError):
        return build_fn(config)
    kinds = {p.kind for p in params.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return build_fn(**config)
    names = set(params)
    wanted = {k: v for k, v in config.items() if k in names}
    if set(config) - set(FIT_KEYS) <= names and (wanted or not config):
        return build_fn(**wanted)
    return build_fn(config)


@dataclass
class Trial:
    index: int
    config: dict[str, Any]
    job: Job | None = None
    status: str = "pending"  # pending, running, done, stopped, failed
    error: str | None = None
    stopped_at: int | None = None

    def curve(self, metric: str) -> list[float]:
        if self.job is None:
            return []
        return list(self.job.history.get(metric, []))


@dataclass
class SweepResult:
    """Sorted results table, the best configuration and model, and every trial's curves."""

    table: Table
    trials: list[Trial]
    metric: str
    mode: str
    best_config: dict[str, Any] | None
    best_model: Any
    best_history: RemoteHistory | None
    seconds: float
    histories: dict[int, dict[str, list[float]]] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        return self.table._repr_html_()

    def __repr__(self) -> str:
        return repr(self.table)

    def plot(self, metric: str | None = None, ax: Any = None) -> Any:
        """Learning curves of every trial (matplotlib); returns the axes."""
        import matplotlib.pyplot as plt

        metric = metric or self.metric
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        for t in self.trials:
            curve = self.histories.get(t.index, {}).get(metric, [])
            if curve:
                label = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in t.config.items())
                ax.plot(range(1, len(curve) + 1), curve, label=f"#{t.index} {label} ({t.status})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend(fontsize="small")
        return ax


def rungs(epochs: int, min_epochs: int, eta: int) -> list[int]:
    """Epoch milestones min·η^k below the full budget."""
    out, r = [], max(1, min_epochs)
    while r < epochs:
        out.append(r)
        r *= eta
    return out


class Halving:
    """Asynchronous successive halving over reported epochs."""

    def __init__(self, epochs: int, min_epochs: int, eta: int, mode: str) -> None:
        self.rungs = rungs(epochs, min_epochs, eta)
        self.eta = eta
        self.sign = 1.0 if mode == "max" else -1.0
        self.seen: dict[int, dict[int, float]] = {r: {} for r in self.rungs}

    def should_stop(self, trial: int, curve: list[float]) -> int | None:
        """The rung at which this trial should stop now, or None to let it continue."""
        for r in self.rungs:
            if len(curve) < r or trial in self.seen[r]:
                continue
            value = self.sign * curve[r - 1]
            if not math.isfinite(value):
                return r
            self.seen[r][trial] = value
            ranked = sorted(self.seen[r].values(), reverse=True)
            if len(ranked) >= self.eta:
                keep = max(1, len(ranked) // self.eta)
                if value < ranked[keep - 1]:
                    return r
        return None


def best_of(curve: list[float], mode: str) -> float | None:
    vals = [v for v in curve if math.isfinite(v)]
    if not vals:
        return None
    return max(vals) if mode == "max" else min(vals)


def run_sweep(
    submit: Callable[[Any, dict[str, Any]], Job],
    build_fn: Callable[..., Any],
    configs: list[dict[str, Any]],
    *, metric: str, mode: str, max_concurrent: int, epochs: int,
    early_stopping: bool = False, min_epochs: int | None = None, eta: int = 3,
    progress: bool = True, poll: float = 0.2,
) -> SweepResult:
    """Run trials with at most max_concurrent jobs in flight; see Client.sweep."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode: 'max' or 'min', not {mode!r}")
    if max_concurrent < 1:
        raise ValueError("max_concurrent must be at least 1")
    t0 = time.monotonic()
    trials = [Trial(i, c) for i, c in enumerate(configs)]
    halving = Halving(epochs, min_epochs or max(1, epochs // 9), eta, mode) \
        if early_stopping else None
    pending = list(trials)
    running: list[Trial] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(trials), desc="sweep", unit="trial")
    try:
        while pending or running:
            while pending and len(running) < max_concurrent:
                t = pending.pop(0)
                t.job = submit(call_build(build_fn, t.config), t.config)
                t.status = "running"
                running.append(t)
            time.sleep(poll)
            for t in list(running):
                assert t.job is not None
                if t.job.remote.finished:
                    running.remove(t)
                    err = t.job.remote.error
                    if err is None:
                        t.status = "done"
                    elif t.stopped_at is not None:
                        t.status = "stopped"
                    else:
                        t.status, t.error = "failed", str(err)
                    if bar is not None:
                        bar.update(1)
                    continue
                if halving is not None and metric:
                    curve = history_from_logs(t.job.remote.logs).get(metric, [])
                    rung = halving.should_stop(t.index, curve)
                    if rung is not None:
                        t.stopped_at = rung
                        t.job.cancel()
    except BaseException:
        for t in running:
            if t.job is not None:
                t.job.cancel()
        raise
    finally:
        if bar is not None:
            bar.close()
    return _collect(trials, metric, mode, time.monotonic() - t0)


def _collect(trials: list[Trial], metric: str, mode: str, seconds: float) -> SweepResult:
    rows: list[dict[str, Any]] = []
    histories: dict[int, dict[str, list[float]]] = {}
    keys: list[str] = []
    for t in trials:
        keys += [k for k in t.config if k not in keys]
    for t in trials:
        hist = t.job.history if t.job is not None else {}
        histories[t.index] = hist
        curve = list(hist.get(metric, []))
        rows.append({
            "trial": t.index, **{k: t.config.get(k) for k in keys},
            metric: best_of(curve, mode), f"final_{metric}": curve[-1] if curve else None,
            "epochs": len(curve) or len(hist.get("loss", [])), "status": t.status,
            "worker": (t.job.worker or "")[:12] if t.job else "",
            "seconds": t.job.remote.seconds if t.job else None,
            "error": t.error,
        })
    sign = -1.0 if mode == "max" else 1.0
    rows.sort(key=lambda r: (r["status"] != "done", r[metric] is None,
                             sign * (r[metric] if r[metric] is not None else 0.0)))
    best_model = best_history = best_config = None
    for r in rows:
        t = trials[r["trial"]]
        if t.status == "done" and t.job is not None:
            try:
                best_model, best_history = t.job.result()
                best_config = dict(t.config)
                break
            except JobFailed:
                continue
    columns = ["trial", *keys, metric, f"final_{metric}", "epochs", "status", "worker",
               "seconds"]
    if any(r["error"] for r in rows):
        columns.append("error")
    return SweepResult(Table(rows, columns), trials, metric, mode, best_config, best_model,
                       best_history, seconds, histories)
