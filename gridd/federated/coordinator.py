"""The coordinator of a federated job: the notebook that called federated_fit, no server.

Each round, in the job's own thread: pick workers that advertise the dataset (seeded, each
at most once), put the global weights into IPFS, publish one task naming them, wait until
they all answered, `round_timeout` passed, or those still owing an answer stopped
advertising (a dead worker costs a few seconds, not the timeout), then aggregate what
arrived with the job's strategy if at least `min_workers` updates did; otherwise run the
round again (a new try), up to `max_tries`. Late, duplicate and malformed updates never reach
the strategy (gridd.federated.collector). After every round the state is checkpointed,
a progress event is published for anyone following the job, and metrics are updated.

The job's messages travel on the compute topic through the Client's dispatcher, whose loop
thread only routes them; nothing here runs on that thread except the collector's
bookkeeping.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gridd import pins
from gridd.compute.checks import settle_seconds
from gridd.compute.dispatch import JobCancelled, JobFailed, no_workers_message
from gridd.compute.protocol import CANCEL, pack
from gridd.federated import messages as m
from gridd.federated.checkpoint import Checkpoint
from gridd.federated.collector import Reply, RoundCollector
from gridd.federated.history import FederatedHistory
from gridd.federated.local_training import LocalModel, evaluate_model
from gridd.federated.selection import Candidate, choose, eligible
from gridd.strategies import Strategy, StrategyError, Update
from gridd.wire import encode_weights

if TYPE_CHECKING:
    from gridd.federated.hub import FederatedHub

log = logging.getLogger(__name__)

KEEP_GLOBALS = 2  # global weights kept pinned while a job runs (the current and the last)


class FederatedError(JobFailed):
    """A federated job that could not finish; `reason`: no_workers, too_few_updates,
    aggregation_failed, error."""


@dataclass(frozen=True)
class FederatedSettings:
    dataset: str
    rounds: int = 10
    local_epochs: int = 1
    batch_size: int = 32
    min_workers: int = 1
    max_workers: int | None = None
    fraction: float = 1.0
    round_timeout: float = 120.0
    evaluate: bool = True
    seed: int = 0
    no_worker_timeout: float = 60.0
    max_tries: int = 3

    def validate(self) -> None:
        if not m.DATASET_NAME.match(self.dataset):
            raise ValueError(f"dataset {self.dataset!r}: 1-64 of [A-Za-z0-9_.-]")
        if not 1 <= self.rounds <= m.MAX_ROUNDS - 1:
            raise ValueError(f"rounds must be in 1..{m.MAX_ROUNDS - 1}")
        if not 1 <= self.local_epochs <= 1000:
            raise ValueError("local_epochs must be in 1..1000")
        if not 1 <= self.batch_size <= 1_000_000:
            raise ValueError("batch_size must be in 1..1000000")
        if not 1 <= self.min_workers <= m.MAX_SELECTED:
            raise ValueError(f"min_workers must be in 1..{m.MAX_SELECTED}")
        if self.max_workers is not None and not self.min_workers <= self.max_workers:
            raise ValueError("max_workers must be >= min_workers")
        if not 0 < self.fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        if not 0 < self.round_timeout <= 86_400:
            raise ValueError("round_timeout must be in (0, 86400] seconds")
        if not 1 <= self.max_tries <= m.MAX_TRIES:
            raise ValueError(f"max_tries must be in 1..{m.MAX_TRIES}")


class FederatedJob:
    """A running or finished federated job: result(), cancel(), progress(), wait()."""

    def __init__(self, hub: FederatedHub, model: Any, settings: FederatedSettings,
                 strategy: Strategy, *, job_id: str | None = None,
                 checkpoint: Path | None = None,
                 validation_data: tuple[Any, Any] | None = None,
                 on_round: Callable[[FederatedJob, dict[str, Any]], None] | None = None
                 ) -> None:
        from gridd.models.keras_model import load_keras_file, save_keras_bytes

        settings.validate()
        self.hub = hub
        self.settings = settings
        self.strategy = strategy
        self.checkpoint_path = Path(checkpoint) if checkpoint is not None else None
        self.validation_data = validation_data
        self.on_round = on_round
        self.model_file = save_keras_bytes(model)
        # The job trains a copy; the model passed in is left as it was (as Client.fit does).
        self.local = LocalModel.wrap(load_keras_file(self.model_file, compile=True,
                                                     max_params=None))
        self.weights: list[np.ndarray] = [np.asarray(w) for w in model.get_weights()]
        self.round = 0
        restored = self._restore()
        self.id = restored.job if restored is not None else (job_id or uuid.uuid4().hex[:16])
        self.history = FederatedHistory(self.id, {**asdict(settings),
                                                  "strategy": strategy.config()})
        if restored is not None:
            self.history.load_state(restored.history)
        self.status = "waiting"
        self.error: JobFailed | None = None
        self.started = time.monotonic()
        self.finished_at: float | None = None
        self.model_cid: str | None = None
        self.weights_cid: str | None = None
        self._globals: list[str] = []
        self.session = uuid.uuid4().hex[:12]  # this run of the job (see messages.TASK)
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the handle -----------------------------------------------------------------------

    def start(self) -> FederatedJob:
        self._thread = threading.Thread(target=self._main, name=f"federated:{self.id}",
                                        daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> tuple[Any, FederatedHistory]:
        """(trained Keras model, history) once the job is done; raises its error if it
        failed or was cancelled, TimeoutError if still running after `timeout`."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"federated job {self.id} still at round {self.round} of "
                               f"{self.settings.rounds} after {timeout}s")
        if self.error is not None:
            raise self.error
        self.local.model.set_weights(self.weights)
        self.history.model = self.local.model
        return self.local.model, self.history

    def cancel(self) -> None:
        """Stop after the current step; workers are told to stop the round."""
        self._cancel.set()
        self.hub.wake(self.id)

    def progress(self) -> dict[str, Any]:
        last = self.history.rounds[-1] if self.history.rounds else {}
        return {
            "job": self.id, "status": self.status, "round": self.round,
            "rounds": self.settings.rounds, "workers": last.get("workers"),
            **{k: v for k, v in (last.get("train") or {}).items()},
            **{f"val_{k}": v for k, v in (last.get("val") or {}).items()},
            "seconds": round((self.finished_at or time.monotonic()) - self.started, 2),
            "weights": self.weights_cid,
            "error": None if self.error is None else str(self.error),
        }

    def __repr__(self) -> str:
        return f"<FederatedJob {self.id} {self.status} round {self.round}/" \
            f"{self.settings.rounds} on {self.settings.dataset!r}>"

    # -- the job's thread -----------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._run()
            self._end("done", None)
        except JobFailed as e:
            self._end("cancelled" if isinstance(e, JobCancelled) else "failed", e)
        except Exception as e:  # a bug or the daemon gone: end the job, say why
            log.exception("federated job %s crashed", self.id)
            self._end("failed", FederatedError(self.id, "error", f"{type(e).__name__}: {e}"))

    def _run(self) -> None:
        s = self.settings
        self.status = "running"
        self.model_cid = self.hub.store.put(self.model_file, name=pins.federated(self.id))
        self._put_global()
        self.hub.dispatcher.wait_workers(self._settle())
        while self.round < s.rounds:
            r = self.round + 1
            t0 = time.perf_counter()
            t0_clock = time.monotonic()
            replies, collector, tries = self._collect(r, training=True)
            self.history.add_evaluation(r - 1, replies)
            updates = [Update(rep.weights, rep.samples, rep.sender) for rep in replies
                       if rep.weights is not None]
            try:
                self.weights = self.strategy.aggregate(self.weights, updates)
            except StrategyError as e:
                raise FederatedError(self.id, "aggregation_failed", f"round {r}: {e}") from None
            self._put_global()
            entry = self.history.add_round(
                r, replies, asked=sorted(collector.chosen), seconds=0.0,
                rejected=collector.rejected, declined=collector.declined, tries=tries)
            entry["timing"] = _timing(collector, replies, t0_clock)
            self.round = r
            validating = time.perf_counter()
            entry["val"] = self._validate()  # the user's own evaluation: not round overhead
            validated = time.perf_counter() - validating
            entry["val_seconds"] = validated
            seconds = time.perf_counter() - t0 - validated
            entry["round_seconds"] = seconds
            entry["overhead_seconds"] = max(0.0, seconds - entry["worker_seconds_max"])
            self._save()
            self._publish_progress("running")
            m_ = self.hub.metrics
            m_.rounds.labels(outcome="completed").inc()
            m_.round_seconds.observe(seconds)
            m_.round_overhead_seconds.observe(entry["overhead_seconds"])
            if self.on_round is not None:
                self.on_round(self, entry)
        if s.evaluate and not (self.history.rounds and self.history.rounds[-1]["eval"]):
            replies, _, _ = self._collect(s.rounds + 1, training=False)
            self.history.add_evaluation(s.rounds, replies)
            self._save()

    def _collect(self, r: int, training: bool) -> tuple[list[Reply], RoundCollector, int]:
        s = self.settings
        need = max(s.min_workers, self.strategy.min_updates()) if training else 1
        collector: RoundCollector | None = None
        for t in range(s.max_tries):
            self._check_cancel()
            rng = np.random.default_rng([s.seed, r, t])
            candidates = self._candidates(need)
            chosen = choose(candidates, fraction=s.fraction, min_workers=need,
                            max_workers=s.max_workers, rng=rng)
            collector = self._ask(r, t, chosen, training)
            replies = collector.close()
            self.hub.close_round(self.id, collector)
            self._check_cancel()
            if len(replies) >= need or not training:
                return replies, collector, t + 1
            self.hub.metrics.rounds.labels(outcome="retried").inc()
            log.warning("federated job %s round %d try %d: %d of %d updates (need %d); "
                        "declined %s, rejected %s", self.id, r, t, len(replies), len(chosen),
                        need, collector.declined, collector.rejected)
        assert collector is not None
        raise FederatedError(self.id, "too_few_updates", f"round {r}: fewer than {need} "
                             f"usable updates in {s.max_tries} tries (last: "
                             f"{len(collector.replies)} of {len(collector.chosen)} asked; "
                             f"declined: {_reasons(collector.declined)}; rejected: "
                             f"{_counts(collector.rejected)})")

    def _ask(self, r: int, t: int, chosen: list[Candidate], training: bool) -> RoundCollector:
        s = self.settings
        assert self.weights_cid is not None and self.model_cid is not None
        store = self.hub.store
        collector = RoundCollector(
            job=self.id, round=r, try_=t, chosen={c.peer_id: c for c in chosen},
            spec=self.local.spec, weights_cap=self.local.weights_cap, training=training,
            deadline=time.monotonic() + s.round_timeout, metrics=self.hub.metrics,
            fetch=self.hub.dispatcher.node.fetch,
            get=lambda cid, cap, left: store.get(cid, max_size=cap, timeout=left))
        self.hub.open_round(self.id, collector)

        def ask(workers: list[str]) -> None:
            self.hub.publish(pack(
                m.TASK, job=self.id, round=r, **{"try": t}, session=self.session,
                model=self.model_cid,
                weights=self.weights_cid, bytes=self._weights_bytes, dataset=s.dataset,
                epochs=s.local_epochs if training else 0, batch_size=s.batch_size,
                options=dict(self.strategy.local_options()), evaluate=s.evaluate,
                workers=workers, timeout=float(s.round_timeout),
                **({"inline": self._blob} if len(self._blob) <= m.INLINE_MAX else {})))

        collector.asked_at = time.monotonic()
        ask(sorted(collector.chosen))
        collector.wait(self.hub.alive, self._cancel, ask_again=ask)
        return collector

    def _candidates(self, need: int) -> list[Candidate]:
        """Eligible live workers, waiting up to no_worker_timeout for `need` of them."""
        s = self.settings
        give_up = time.monotonic() + s.no_worker_timeout
        while True:
            ads = self.hub.dispatcher.workers()
            found, left_out = eligible(ads, s.dataset, self.local.input_shape(),
                                       self.local.output_units())
            if len(found) >= need:
                return found
            if time.monotonic() >= give_up:
                if not ads:
                    why = no_workers_message(self.hub.dispatcher.topic, s.no_worker_timeout,
                                             self.hub.dispatcher.trusted)
                else:
                    listed = "; ".join(f"{p[:12]}…: {w}" for p, w in sorted(left_out.items()))
                    why = f"{len(found)} live worker(s) can train on dataset {s.dataset!r}, " \
                        f"{need} needed" + (f"; the others: {listed}" if listed else "")
                raise FederatedError(self.id, "no_workers", why)
            if self._cancel.wait(0.1):
                self._check_cancel()

    def _settle(self) -> float:
        """Seconds to listen before the first round so that every live worker is known."""
        ads = {a.peer_id: a.body for a in self.hub.dispatcher.workers()}
        wait = settle_seconds(ads)
        return 3.0 if wait == float("inf") else wait

    def _put_global(self) -> None:
        blob = self._blob = encode_weights(self.weights)
        self._weights_bytes = len(blob)
        self.weights_cid = self.hub.store.put(blob, name=pins.federated(self.id))
        self._globals.append(self.weights_cid)
        stale, self._globals = self._globals[:-KEEP_GLOBALS], self._globals[-KEEP_GLOBALS:]
        for cid in stale:
            if cid not in self._globals:
                self.hub.unpin(cid)

    def _validate(self) -> dict[str, float]:
        """The global model on validation_data, evaluated here (centralised evaluation)."""
        if self.validation_data is None:
            return {}
        x, y = self.validation_data
        self.local.model.set_weights(self.weights)
        return evaluate_model(self.local.model, np.asarray(x), np.asarray(y))

    def _save(self) -> None:
        if self.checkpoint_path is None:
            return
        Checkpoint(self.id, self.round, self.settings.rounds, self.settings.dataset,
                   self.weights, {"config": self.strategy.config(),
                                  "state": self.strategy.state_dict()},
                   self.history.to_state(), asdict(self.settings)).save(self.checkpoint_path)

    def _restore(self) -> Checkpoint | None:
        path = self.checkpoint_path
        if path is None or not path.exists():
            return None
        ck = Checkpoint.load(path)
        ck.check_fits(self.local.spec, self.settings.dataset, path)
        if ck.strategy.get("config", {}).get("name") != self.strategy.config().get("name"):
            log.warning("resuming %s with strategy %s (the checkpoint used %s)", path,
                        self.strategy.config().get("name"), ck.strategy.get("config"))
        else:
            self.strategy.load_state(ck.strategy.get("state") or {})
        self.weights = ck.weights
        self.round = ck.round
        log.info("federated job %s resumes from %s after round %d", ck.job, path, ck.round)
        return ck

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled(self.id, "cancelled", "cancelled by you")

    def _publish_progress(self, state: str, error: str | None = None) -> None:
        last = self.history.rounds[-1] if self.history.rounds else {}
        figures = {**last.get("train", {}), **{f"val_{k}": v for k, v in
                                              (last.get("val") or {}).items()}}
        previous = self.history.rounds[-2]["eval"] if len(self.history.rounds) > 1 else {}
        figures.update({f"eval_{k}": v for k, v in (last.get("eval") or previous).items()})
        body: dict[str, Any] = {
            "job": self.id, "round": self.round, "rounds": self.settings.rounds,
            "state": state, "model": self.model_cid or "", "dataset": self.settings.dataset,
            "strategy": str(self.strategy.config().get("name", "custom"))[:64],
            "workers": int(last.get("workers", 0)),
            "metrics": {k: float(v) for k, v in list(figures.items())[:16]},
        }
        if self.weights_cid:
            body["weights"] = self.weights_cid
            body["bytes"] = self._weights_bytes
        if error:
            body["error"] = error[:2000]
        if not body["model"]:
            return  # failed before anything was published: there is nothing to follow
        self.hub.publish(pack(m.PROGRESS, **body))
        self.hub.record(self.hub.peer_id, body)

    def _end(self, status: str, error: JobFailed | None) -> None:
        if status == "cancelled":
            self.hub.publish(pack(CANCEL, job=self.id))
        self.status = status
        self.error = error
        self.finished_at = time.monotonic()
        try:
            self._publish_progress(status, None if error is None else str(error))
        except Exception:
            log.exception("federated job %s: could not publish its end", self.id)
        if error is not None:
            log.warning("federated job %s %s: %s", self.id, status, error)
        self._done.set()

    _weights_bytes: int = 0
    _blob: bytes = b""


def _timing(collector: RoundCollector, replies: list[Reply], t0: float) -> dict[str, float]:
    """Where a round's time went, in seconds (history.rounds[i]["timing"]): until the task
    was published, then until the slowest update was heard and its weights were in, minus
    that worker's compute (messages and weight transfers), and what followed."""
    if not replies:
        return {}
    last = max(replies, key=lambda r: r.arrived)
    slowest_heard = max(r.heard - collector.asked_at - r.seconds for r in replies)
    return {
        "before_task": round(collector.asked_at - t0, 4),
        "to_update_heard_minus_compute": round(slowest_heard, 4),
        "update_fetch_max": round(max(r.arrived - r.heard for r in replies), 4),
        "last_arrival_after_task": round(last.arrived - collector.asked_at, 4),
        "after_last_arrival": round(time.monotonic() - last.arrived, 4),
    }


def _reasons(declined: dict[str, tuple[str, str]]) -> str:
    return _counts({k: v[0] for k, v in declined.items()})


def _counts(by_sender: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for reason in by_sender.values():
        counts[reason] = counts.get(reason, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())) or "none"
