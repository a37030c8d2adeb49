"""What a federated job records per round, shaped like keras.callbacks.History.

`history[name]` has one value per finished round (index 0 = round 1):

* loss, accuracy...: the workers' training metrics of the round, averaged weighted by the
  samples each trained on;
* eval_loss, eval_accuracy...: the round's global model on the workers' held-out rows
  (federated evaluation), weighted by held-out rows. Workers evaluate the model they receive
  before training, so round r's figures arrive with round r+1's updates, and the last
  round's with a final evaluation-only round;
* val_loss, val_accuracy...: the global model on `validation_data` given to federated_fit,
  evaluated by the coordinator;
* workers, round_seconds, overhead_seconds: updates aggregated, the round's wall time (from
  choosing workers to the new global weights in IPFS, without the coordinator's own
  validation, which is val_seconds in `rounds`), and that time minus the slowest worker's
  compute time (transfers, messaging, aggregation).

`rounds` keeps each round's detail: who was asked, who answered, per-worker metrics,
refusals and declines by reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gridd.federated.collector import Reply

NAN = float("nan")


def weighted(replies: list[Reply], part: str, weight_key: str | None = None
             ) -> dict[str, float]:
    """Per-metric mean of the replies' `metrics` or `evaluation`, weighted by samples."""
    sums: dict[str, float] = {}
    totals: dict[str, float] = {}
    for r in replies:
        values = r.metrics if part == "metrics" else r.evaluation
        w = float(r.samples) if weight_key is None else float(values.get(weight_key, 0.0))
        if w <= 0:
            continue
        for k, v in values.items():
            if k == weight_key or not math.isfinite(v):
                continue
            sums[k] = sums.get(k, 0.0) + w * v
            totals[k] = totals.get(k, 0.0) + w
    return {k: sums[k] / totals[k] for k in sums}


@dataclass
class FederatedHistory:
    """See the module docstring."""

    job_id: str
    params: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    initial_eval: dict[str, float] = field(default_factory=dict)  # the starting model's
    model: Any = None

    @property
    def epoch(self) -> list[int]:
        return list(range(len(self.rounds)))

    @property
    def history(self) -> dict[str, list[float]]:
        keys: list[str] = []
        for r in self.rounds:
            for part in ("train", "eval", "val"):
                keys += [self._name(part, k) for k in r.get(part, {})
                         if self._name(part, k) not in keys]
        out = {k: [self._value(r, k) for r in self.rounds] for k in keys}
        for k in ("workers", "round_seconds", "overhead_seconds"):
            out[k] = [float(r.get(k, NAN)) for r in self.rounds]
        return out

    @staticmethod
    def _name(part: str, key: str) -> str:
        return key if part == "train" else f"{part}_{key}"

    def _value(self, r: dict[str, Any], name: str) -> float:
        for part in ("eval", "val"):
            if name.startswith(part + "_"):
                v = r.get(part, {}).get(name[len(part) + 1:])
                if v is not None:
                    return float(v)
        return float(r.get("train", {}).get(name, NAN))

    def add_round(self, number: int, replies: list[Reply], *, asked: list[str],
                  seconds: float, rejected: dict[str, str],
                  declined: dict[str, tuple[str, str]], tries: int,
                  val: dict[str, float] | None = None) -> dict[str, Any]:
        slowest = max((r.seconds for r in replies), default=0.0)
        entry = {
            "round": number, "train": weighted(replies, "metrics"), "eval": {},
            "val": dict(val or {}), "workers": len(replies), "asked": len(asked),
            "round_seconds": seconds, "overhead_seconds": max(0.0, seconds - slowest),
            "worker_seconds_max": slowest, "tries": tries,
            "per_worker": {r.sender: {**r.metrics, "samples": r.samples,
                                      "seconds": r.seconds} for r in replies},
            "rejected": dict(rejected), "declined": {k: v[0] for k, v in declined.items()},
        }
        self.rounds.append(entry)
        return entry

    def add_evaluation(self, number: int, replies: list[Reply]) -> None:
        """Workers' evaluation of round `number`'s global model (0: the starting one)."""
        figures = weighted(replies, "eval", weight_key="samples")
        if not figures:
            return
        if number == 0:
            self.initial_eval = figures
        elif 0 < number <= len(self.rounds):
            self.rounds[number - 1]["eval"] = figures
            for r in replies:
                worker = self.rounds[number - 1]["per_worker"].setdefault(r.sender, {})
                worker.update({f"eval_{k}": v for k, v in r.evaluation.items()})

    def last(self, name: str) -> float | None:
        values = self.history.get(name) or []
        return values[-1] if values and math.isfinite(values[-1]) else None

    def plot(self, metrics: list[str] | None = None, ax: Any = None) -> Any:
        """Per-round curves (matplotlib): training solid, evaluation dashed; the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        hist = self.history
        names = metrics or [k for k in hist if "accuracy" in k]
        for name in names:
            curve = hist.get(name) or []
            style = "-" if not name.startswith(("eval_", "val_")) else "--"
            ax.plot(range(1, len(curve) + 1), curve, linestyle=style, label=name)
        ax.set_xlabel("round")
        ax.set_title(f"federated job {self.job_id}")
        if ax.lines:
            ax.legend(fontsize="small")
        return ax

    def to_state(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "initial_eval": self.initial_eval}

    def load_state(self, state: dict[str, Any]) -> None:
        self.rounds = list(state.get("rounds") or [])
        self.initial_eval = dict(state.get("initial_eval") or {})

    def __repr__(self) -> str:
        acc = self.last("val_accuracy") or self.last("eval_accuracy") or self.last("accuracy")
        shown = "-" if acc is None else f"{acc:.4f}"
        return f"<FederatedHistory {self.job_id}: {len(self.rounds)} rounds, accuracy {shown}>"
