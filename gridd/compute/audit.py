"""Does the model a worker returned do what that worker says it does? The client checks.

Why: on an open topic the first worker to claim a job is the one that runs it, and a worker
is a stranger. The attack benchmark's `forged_compute` row showed the cost: a foreign node
claimed the job first and answered `done` naming the client's own untrained model, and
`Client.fit` returned it as trained. A signature says who sent a result, not whether it
is any good. So before `Job.result` returns a model it runs this audit:

* at submit time the client keeps a bounded sample of data it already holds (at most
  MAX_ROWS rows and MAX_SAMPLE_BYTES): rows of its validation data when it gave some
  (`validation_data`, or the tail rows `validation_split` holds out, as Keras splits),
  else rows of the training x, y;
* on a result it evaluates the returned model on that sample (inference mode, the loss the
  client compiled, in CHUNKS pieces to estimate the sampling error) and compares with
  what the worker reported for the last epoch:
  - validation rows: `val_loss` within max(LOSS_FLOOR, LOSS_RATIO x reported) either way,
    and each `val_*accuracy` within ACCURACY_FLOOR. Keras computes val metrics on the final
    weights in inference mode, which is what the audit recomputes: an honest worker matches
    to float rounding (measured: equal to 4 decimals on digits, MLP/dropout/BatchNorm/L2,
    1 to 20 epochs); the tolerance only absorbs sampling when the sample is a subset;
  - training rows: one-sided. The reported `loss` is the mean over the last epoch's batches
    while the weights still moved, with dropout active and BatchNorm on batch statistics,
    so the final model measures lower (0.26 to 1.0 x the reported loss on digits, down to
    0.47 x with dropout 0.5) and sometimes a little higher (up to 1.16 x with BatchNorm, and
    1.33 x of a loss of 0.015, i.e. +0.005). So only a model *worse* than reported by more
    than max(LOSS_FLOOR, LOSS_RATIO x reported) is refused. `class_weight` is applied as
    the same per-row weights Keras used;
  - when the sample is a subset of the rows, 4 standard errors of the estimate (from the
    chunks, with the finite-population correction) are added to each tolerance;
  - the returned model must carry the loss and metrics the client compiled (a worker could
    otherwise recompile it with a loss that reads low), and must run on the client's data.
* a result that fails is refused: `Dispatcher.refuse_result` excludes that worker and offers
  the job again under a new attempt (reason `result_mismatch`, counted in
  `Dispatcher.results_refused`); past the dispatcher's attempt limit the job ends in a clean
  JobFailed (too_many_attempts, naming the last mismatch).

What it guarantees: the model `Client.fit` returns does, on the client's own data, about as
well as the worker claimed the trained model does. A worker that returns an untrained or
swapped model while reporting the numbers of a trained one is caught (2.3 vs 0.2 on digits).

What it does not guarantee:
* a worker that reports honestly bad metrics (trains 0 epochs and says so, or returns the
  sent model with its true loss) is not caught: the history the client sees is bad, but it
  is the truth. Look at the history; compare with a local baseline;
* without validation data the check is one-sided on the training loss, so a model that
  memorised the training rows passes (it is what training does); give validation data for
  the strong, two-sided check;
* a worker can still see the data and the model (nothing here is private computation),
  and can waste one attempt per identity it controls before it is excluded;
* sweeps pass no arrays to `submit_fit` (their data is uploaded once), so they are not
  audited;
* the strong guarantee is a trust list: `Client(workers=[...])` assigns jobs only to workers
  you run or trust.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

    from gridd.compute.remote import Job

log = logging.getLogger(__name__)

REASON = "result_mismatch"
MAX_ROWS = 1_000
MAX_SAMPLE_BYTES = 64 * 2**20  # x and y rows together (1,000 rows of 224x224x3 would be 600 MB)
CHUNKS = 10
LOSS_FLOOR = 0.05
LOSS_RATIO = 0.25
ACCURACY_FLOOR = 0.05
SIGMAS = 4.0
COMPILE_KEYS = ("loss", "loss_weights", "metrics", "weighted_metrics")


@dataclass(frozen=True)
class Verdict:
    """The audit's answer; `detail` says what differed (or what was compared)."""

    ok: bool
    detail: str
    measured: dict[str, float]
    reported: dict[str, float]


def compile_signature(model: Any) -> str | None:
    """The loss and metrics a model is compiled with, as canonical JSON (None if unknown)."""
    try:
        config = model.get_compile_config() or {}
    except Exception:
        return None
    return json.dumps({k: config.get(k) for k in COMPILE_KEYS}, sort_keys=True, default=str)


def _rows(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(x[idx]), np.ascontiguousarray(y[idx])


def _class_weights(y: np.ndarray, class_weight: dict[int, float]) -> np.ndarray:
    """Per-row weights as Keras derives them from class_weight (class index or argmax)."""
    labels = y.reshape(len(y), -1)
    cls = labels.argmax(axis=1) if labels.shape[1] > 1 else labels[:, 0].astype(np.int64)
    return np.array([float(class_weight.get(int(c), 1.0)) for c in cls], dtype=np.float32)


def _final(history: dict[str, list[float]], name: str) -> float | None:
    values = history.get(name) or []
    return float(values[-1]) if values else None


@dataclass
class Audit:
    """A bounded sample of the client's own data and how to judge a result on it."""

    x: np.ndarray
    y: np.ndarray
    validation: bool  # rows the worker reported val_ metrics on (else training rows)
    population: int  # rows the sample was drawn from
    compiled: str | None  # compile_signature of the model the client sent
    weights: np.ndarray | None = None  # class_weight per row (training rows only)

    @classmethod
    def of(cls, model: Any, x: Any, y: Any, *,
           validation_data: tuple[Any, Any] | None = None,
           validation_split: float | None = None,
           class_weight: dict[int, float] | None = None,
           rows: int = MAX_ROWS, rng: np.random.Generator | None = None) -> Audit | None:
        """Take the sample at submit time (None when the client gave no arrays: sweeps).

        The rows are drawn at random (OS entropy unless `rng`), so a worker cannot know
        which rows will be checked."""
        if x is None or y is None:
            return None
        validation = True
        if validation_data is not None:
            xs, ys = np.asarray(validation_data[0]), np.asarray(validation_data[1])
        else:
            xs, ys = np.asarray(x), np.asarray(y)
            split_at = int(math.floor(len(xs) * (1.0 - (validation_split or 0.0))))
            if 0 < split_at < len(xs):  # keras' train_validation_split: the tail rows
                xs, ys = xs[split_at:], ys[split_at:]
            else:
                validation = False
        n = len(xs)
        if n == 0 or len(ys) != n:
            return None
        row_bytes = max(1, (xs.nbytes + ys.nbytes) // n)
        take = max(1, min(n, rows, MAX_SAMPLE_BYTES // row_bytes))
        rng = rng or np.random.default_rng()
        idx = np.sort(rng.choice(n, size=take, replace=False)) if take < n else np.arange(n)
        sx, sy = _rows(xs, ys, idx)
        weights = None
        if class_weight and not validation:
            weights = _class_weights(sy, class_weight)
        return cls(sx, sy, validation, n, compile_signature(model), weights)

    def measure(self, model: Any) -> tuple[dict[str, float], dict[str, float]]:
        """(mean, standard error) of each compiled metric on the sample, inference mode."""
        chunks = np.array_split(np.arange(len(self.x)), min(CHUNKS, len(self.x)))
        per: dict[str, list[float]] = {}
        sizes = []
        for c in chunks:
            sw = None if self.weights is None else self.weights[c]
            logs = model.test_on_batch(self.x[c], self.y[c], sample_weight=sw, return_dict=True)
            sizes.append(len(c))
            for k, v in logs.items():
                per.setdefault(str(k), []).append(float(v))
        w = np.array(sizes, dtype=np.float64)
        fpc = max(0.0, 1.0 - len(self.x) / self.population)
        means, errors = {}, {}
        for k, values in per.items():
            v = np.array(values)
            means[k] = float(np.sum(w * v) / w.sum())
            spread = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
            errors[k] = spread / math.sqrt(len(v)) * math.sqrt(fpc)
        return means, errors

    def check(self, model: Any, history: dict[str, list[float]]) -> Verdict:
        """Compare the model on the sample with the last epoch the worker reported."""
        where = (f"{len(self.x)} of your {self.population} "
                 f"{'validation' if self.validation else 'training'} rows")
        if self.compiled is not None and compile_signature(model) != self.compiled:
            return Verdict(False, "the returned model is compiled with another loss or other "
                           "metrics than the model you sent", {}, {})
        prefix = "val_" if self.validation else ""
        reported = {k[len(prefix):]: v for k in history
                    if k.startswith(prefix) and (v := _final(history, k)) is not None
                    and (prefix or not k.startswith("val_"))}
        if "loss" not in reported:
            return Verdict(False, f"the worker reported no final {prefix}loss to check its "
                           "model against", {}, reported)
        try:
            measured, errors = self.measure(model)
        except Exception as e:  # wrong input shape, wrong output: not the model we sent
            return Verdict(False, f"the returned model does not run on your data: "
                           f"{type(e).__name__}: {str(e)[:200]}", {}, reported)
        problems = []
        for name, claim in reported.items():
            if name != "loss" and not (self.validation and name.endswith("accuracy")):
                continue
            got = measured.get(name)
            if got is None or not math.isfinite(claim):
                continue  # a metric we cannot recompute, or a claim of nothing (NaN loss)
            slack = SIGMAS * errors.get(name, 0.0)
            if name == "loss":
                tol = max(LOSS_FLOOR, LOSS_RATIO * abs(claim)) + slack
                bad = (not math.isfinite(got) or got - claim > tol
                       or (self.validation and claim - got > tol))
            else:
                tol = ACCURACY_FLOOR + slack
                bad = not math.isfinite(got) or abs(got - claim) > tol
            if bad:
                problems.append(f"{prefix}{name}: worker reported {claim:.4g}, measured "
                                f"{got:.4g} (tolerance {tol:.3g})")
        detail = "; ".join(problems) if problems else \
            f"{prefix}loss {measured.get('loss', float('nan')):.4g} as reported"
        return Verdict(not problems, f"{detail} on {where}", measured, reported)

    def accepts(self, job: Job, model: keras.Model) -> bool:
        """Check the result of `job`; if it fails, refuse it (the dispatcher excludes the
        worker and offers the job again) and return False."""
        remote = job.remote
        attempt, worker = remote.attempt, remote.worker
        try:
            history = job.history
        except Exception as e:  # an unfetchable or malformed history blob: nothing claimed
            log.info("job %s: history of worker %s unreadable: %s", job.id, worker, e)
            history = {}
        verdict = self.check(model, history)
        if verdict.ok:
            log.debug("job %s: result of %s passed the audit: %s", job.id, worker,
                      verdict.detail)
            return True
        log.warning("job %s: refusing the result of worker %s (%s): %s", job.id, worker,
                    REASON, verdict.detail)
        remote.dispatcher.refuse_result(remote, attempt, REASON, verdict.detail)
        return False
