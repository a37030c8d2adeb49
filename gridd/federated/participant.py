"""The federated part of a compute worker: answer the rounds of jobs it was selected for.

The worker's message loop calls `on_task` and `on_cancel`; neither waits on the network.
A task this worker is named in starts one thread that fetches the model (once per job,
through the same safe loader as compute jobs, within the worker's byte and parameter
limits) and the round's weights (at most the size of that model's own weights blob, then
checked for shape, dtype and finite values), runs the round (gridd.federated.local_training)
and publishes an update, or a `declined` message saying why not. A newer round or try of the
same job supersedes a running one, a cancel stops it; at most `max_models` job models stay
loaded. Updates are pinned like compute results, with a short TTL the worker's existing
result sweep enforces.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gridd import pins
from gridd.compute.settings import ComputeSettings
from gridd.federated import messages as m
from gridd.federated.datasets import LocalDataset
from gridd.federated.local_training import LocalError, LocalModel
from gridd.metrics import ComputeMetrics
from gridd.runtime import BoundedMap
from gridd.transport import Store
from gridd.tree.weights import classify
from gridd.wire import WireError, decode_weights, encode_weights

log = logging.getLogger(__name__)

UPDATE_TTL = 3600.0  # seconds a published update stays pinned (its coordinator needs minutes)
MAX_MODELS = 2  # job models kept loaded
MAX_ANSWERS = 256  # jobs whose last answer is kept, to say again (inline weights: <= 32 KiB)
FETCH_TIMEOUT = 60.0

JobKey = tuple[str, str]  # (owner, job)


@dataclass
class _Round:
    owner: str
    body: dict[str, Any]
    limit: float  # seconds it may run: the round's timeout, at most the worker's wall limit
    stop_reason: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def job(self) -> str:
        return str(self.body["job"])

    @property
    def position(self) -> tuple[int, int]:
        return int(self.body["round"]), int(self.body["try"])

    def should_stop(self) -> bool:
        if self.stop_reason is None and time.monotonic() - self.started > self.limit:
            self.stop_reason = "timeout"
        return self.stop_reason is not None


class Participant:
    """See the module docstring. Thread-safe; `publish` must not block (the node's outbox)."""

    def __init__(self, peer_id: str, store: Store, settings: ComputeSettings,
                 datasets: dict[str, LocalDataset], metrics: ComputeMetrics,
                 publish: Callable[[bytes], object], has_slot: Callable[[], bool],
                 loader: Callable[[bytes], Any] | None = None) -> None:
        self.peer_id = peer_id
        self.store = store
        self.settings = settings
        self.datasets = datasets
        self.metrics = metrics
        self.publish = publish
        self.has_slot = has_slot
        self.loader = loader or self._load_keras
        self._lock = threading.Lock()
        self._running: dict[JobKey, _Round] = {}
        self._threads: dict[JobKey, threading.Thread] = {}
        self._models: BoundedMap[tuple[str, str, str], LocalModel] = BoundedMap(MAX_MODELS,
                                                                                lru=True)
        self._latest: BoundedMap[JobKey, tuple[str, int, int]] = BoundedMap(10_000, lru=True)
        # the last answer per job, said again when its round is asked again
        self._answers: BoundedMap[JobKey, tuple[tuple[str, int, int], str, dict[str, Any]]] = \
            BoundedMap(MAX_ANSWERS, lru=True)

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def describe(self) -> list[dict[str, Any]]:
        return [d.description for d in self.datasets.values()]

    # -- the loop's calls ------------------------------------------------------------------

    def on_task(self, owner: str, body: dict[str, Any]) -> None:
        key = (owner, str(body["job"]))
        position = (str(body["session"]), int(body["round"]), int(body["try"]))
        with self._lock:
            latest = self._latest.get(key)
            if latest is not None and latest[0] == position[0] and position <= latest:
                # A repeat: the coordinator did not hear our answer (pubsub drops messages
                # now and then); say it again if we have it, else we are still at it.
                answer = self._answers.get(key)
                if position == latest and answer is not None and answer[0] == position \
                        and self.peer_id in body["workers"]:
                    self._send(answer[1], owner, body, **answer[2])
                return  # or an older round of this run arriving late
            self._latest[key] = position
            current = self._running.get(key)
            if current is not None:
                current.stop_reason = "superseded"
        if self.peer_id not in body["workers"]:
            return  # a round of this job that does not need us
        problem = self._check(owner, body)
        if problem is None and current is None and not self.has_slot():
            problem = ("busy", "every slot of this worker is taken")
        if problem is not None:
            self._decline(owner, body, *problem)
            return
        run = _Round(owner, body, min(float(body["timeout"]), self.settings.max_wall_seconds))
        thread = threading.Thread(target=self._run, args=(run,), daemon=True,
                                  name=f"fed:{run.job}:{position[1]}")
        with self._lock:
            self._running[key] = run
            self._threads[key] = thread
        thread.start()

    def on_cancel(self, owner: str, job: str) -> None:
        with self._lock:
            run = self._running.get((owner, job))
            if run is not None:
                run.stop_reason = "cancelled"
            for k in [k for k in self._models if k[:2] == (owner, job)]:
                del self._models[k]

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            for run in self._running.values():
                run.stop_reason = "shutdown"
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout)

    # -- checks ---------------------------------------------------------------------------

    def _check(self, owner: str, body: dict[str, Any]) -> tuple[str, str] | None:
        s = self.settings
        if s.accept_from and owner not in s.accept_from:
            return "not_allowed", f"this worker only accepts jobs from {len(s.accept_from)} " \
                "listed peer(s) (--accept-from)"
        if body["dataset"] not in self.datasets:
            have = ", ".join(sorted(self.datasets)) or "none"
            return "no_dataset", f"no dataset {body['dataset']!r} here (this worker has: {have})"
        if body["epochs"] > s.max_epochs:
            return "too_many_epochs", f"epochs={body['epochs']} is over this worker's limit " \
                f"of {s.max_epochs}"
        return None

    # -- one round ------------------------------------------------------------------------

    def _run(self, run: _Round) -> None:
        body, key = run.body, (run.owner, run.job)
        try:
            local = self._model(run)
            data = self.datasets[body["dataset"]]
            local.check_data(data.data, body["dataset"])
            weights = self._weights(run, local)
            result = local.run_round(
                weights, data.data, epochs=int(body["epochs"]),
                batch_size=int(body["batch_size"]), mu=float(body["options"].get("mu", 0.0)),
                evaluate=bool(body["evaluate"]), should_stop=run.should_stop,
                seed=zlib.crc32(f"{run.job}:{body['round']}:{body['try']}".encode()))
            if run.should_stop():
                raise LocalError(run.stop_reason or "stopped", "stopped")
            reply: dict[str, Any] = {"samples": result.samples, "metrics": result.metrics,
                                     "seconds": round(result.seconds, 4)}
            if result.evaluation:
                reply["eval"] = result.evaluation
            if result.weights is not None:
                name = pins.compute_result(run.job, run.owner, time.time() + min(
                    UPDATE_TTL, self.settings.result_ttl))
                blob = encode_weights(self.outgoing(result.weights))
                if len(blob) <= m.INLINE_MAX:
                    reply["inline"] = blob
                else:
                    reply["weights"] = self.store.put(blob, name=name)
            if run.should_stop():
                raise LocalError(run.stop_reason or "stopped", "stopped")
            self._send(m.UPDATE, run.owner, body, **reply)
            self._remember(run.owner, body, m.UPDATE, reply)
            self.metrics.fed_rounds.inc()
            self.metrics.training_seconds.observe(result.seconds)
            log.info("federated job %s round %d: %s %d samples in %.2fs", run.job,
                     body["round"], "trained on" if result.weights is not None else "evaluated",
                     result.samples or int(result.evaluation.get("samples", 0)), result.seconds)
        except LocalError as e:
            if e.reason in ("superseded", "stopped"):
                log.info("federated job %s round %d: %s", run.job, body["round"], e.reason)
            else:
                self._decline(run.owner, body, e.reason, e.message)
        except Exception as e:  # a bug or an IPFS outage: say so, keep the worker alive
            log.exception("federated job %s round %d crashed", run.job, body["round"])
            self._decline(run.owner, body, "error", f"{type(e).__name__}: {e}")
        finally:
            with self._lock:
                if self._running.get(key) is run:
                    del self._running[key]
                    self._threads.pop(key, None)

    def _model(self, run: _Round) -> LocalModel:
        cache_key = (run.owner, run.job, str(run.body["model"]))
        with self._lock:
            local = self._models.get(cache_key)
        if local is not None:
            return local
        data = self._fetch(str(run.body["model"]), "the model", self.settings.max_job_bytes)
        local = LocalModel.wrap(self.loader(data))
        with self._lock:
            self._models[cache_key] = local
        return local

    def _weights(self, run: _Round, local: LocalModel) -> list[Any]:
        inline = run.body.get("inline")
        if inline is not None and len(inline) <= local.weights_cap:
            data = bytes(inline)
        else:
            data = self._fetch(str(run.body["weights"]), "the global weights",
                               local.weights_cap)
        try:
            weights = decode_weights(data, max_bytes=local.weights_cap)
        except WireError as e:
            raise LocalError("bad_weights", f"the global weights do not decode: {e}") from None
        problem = classify(local.spec, weights)
        if problem is not None:
            raise LocalError("bad_weights", f"the global weights do not fit the model: "
                             f"{problem[1]}")
        return weights

    def _fetch(self, cid: str, what: str, max_size: int) -> bytes:
        from gridd.ipfs import ContentTooLarge, ContentUnavailable, IPFSError

        try:
            data = self.store.get(cid, max_size=max_size, timeout=FETCH_TIMEOUT)
        except ContentTooLarge:
            raise LocalError("too_large", f"{what} ({cid}) is over {max_size} bytes") from None
        except (ContentUnavailable, IPFSError, TimeoutError) as e:
            self.metrics.fetch_errors.inc()
            raise LocalError("fetch_failed", f"could not fetch {what} {cid}: {e}") from None
        self.metrics.bytes_fetched.inc(len(data))
        return data

    def _load_keras(self, data: bytes) -> Any:
        from gridd.models.keras_model import ModelTooLargeError, UnsafeModelError, load_keras_file

        try:
            model = load_keras_file(data, compile=True, max_params=self.settings.max_params)
        except ModelTooLargeError as e:
            raise LocalError("too_many_params", str(e)) from None
        except UnsafeModelError as e:
            raise LocalError("unsafe_model", str(e)) from None
        except Exception as e:  # Keras raises many types for a broken file
            raise LocalError("bad_model", f"the model does not load: {type(e).__name__}: "
                             f"{e}") from None
        if getattr(model, "optimizer", None) is None:
            raise LocalError("not_compiled", "the model is not compiled: call "
                             "model.compile(...) before federated_fit")
        return model

    def outgoing(self, weights: list[Any]) -> list[Any]:
        """The weights this worker sends: what it trained (gridd.bench.fed_attacker's
        workers send something else, to test that coordinators refuse or outvote it)."""
        return weights

    # -- replies --------------------------------------------------------------------------

    def _decline(self, owner: str, body: dict[str, Any], reason: str, error: str) -> None:
        self.metrics.fed_declined.labels(reason=reason).inc()
        log.warning("federated job %s round %d from %s declined (%s): %s", body["job"],
                    body["round"], owner, reason, error)
        reply = {"reason": reason[:32], "error": error[:2000]}
        self._send(m.DECLINED, owner, body, **reply)
        self._remember(owner, body, m.DECLINED, reply)

    def _remember(self, owner: str, task: dict[str, Any], kind: str,
                  reply: dict[str, Any]) -> None:
        position = (str(task["session"]), int(task["round"]), int(task["try"]))
        with self._lock:
            self._answers[(owner, str(task["job"]))] = (position, kind, reply)

    def _send(self, kind: str, owner: str, task: dict[str, Any], **body: Any) -> None:
        from gridd.compute.protocol import pack

        try:
            self.publish(pack(kind, job=task["job"], owner=owner, round=task["round"],
                              **{"try": task["try"]}, **body))
        except WireError:
            log.exception("cannot encode %s for federated job %s", kind, task["job"])
