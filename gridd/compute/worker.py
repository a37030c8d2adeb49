"""The compute worker: advertise, claim offered jobs, run them, report, keep going.

The node runtime (gridd.runtime.Node) reads the topic into a bounded inbox and runs the
handler and the tick (ads, lease beats, expiries) on one thread; each job trains in its own
thread. Jobs are keyed by (owner, job id), the owner being the offer's verified sender, so
nobody can replace or cancel someone else's job by reusing its id; each owner may have at
most MAX_OFFERS_PER_OWNER offers waiting. Every message that fails its schema, comes from a
peer not in --accept-from, or asks for more than this worker's limits is refused, counted
(gridd_jobs_refused{reason}) and logged once, and the loop carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridd import pins
from gridd.compute import protocol as p
from gridd.compute.authentic import Authenticator
from gridd.compute.jobs import JobContext, JobError, JobSpec, Trainer
from gridd.compute.settings import ComputeSettings
from gridd.compute.sysinfo import MachineInfo, load, machine_info
from gridd.federated import messages as fed
from gridd.federated.datasets import LocalDataset
from gridd.federated.participant import Participant
from gridd.metrics import ComputeMetrics
from gridd.runtime import BoundedMap, FetchResult, InboxLimits, Node
from gridd.transport import Broker, Message, Store
from gridd.wire import WireError

log = logging.getLogger(__name__)

OFFER_TTL = 60.0  # forget an offer nobody re-sent for this long
MAX_PENDING = 1_000  # offers waiting for a free slot; more is a flood
MAX_OFFERS_PER_OWNER = 16  # of which from one client
MAX_REMEMBERED = 10_000  # refused (owner, job, attempt) kept to count each refusal once

JobKey = tuple[str, str]  # (owner, job id)


@dataclass
class _Offer:
    spec: JobSpec
    seen: float  # first seen: claim order
    refreshed: float  # last (re-)offered: expiry


@dataclass
class _Claim:
    spec: JobSpec
    until: float


class ComputeWorker:
    """A compute-mode node on any Broker/Store (Kubo in production, memory in unit tests)."""

    def __init__(
        self,
        broker: Broker,
        store: Store,
        settings: ComputeSettings,
        trainer: Trainer,
        metrics: ComputeMetrics | None = None,
        info: MachineInfo | None = None,
        state_path: Path | None = None,
        datasets: dict[str, LocalDataset] | None = None,
    ) -> None:
        """`state_path`: where replay marks persist across restarts (None: memory only).
        `datasets`: data kept here for federated jobs (gridd.federated.datasets)."""
        settings.validate()
        self.broker = broker
        self.store = store
        self.settings = settings
        self.trainer = trainer
        self.metrics = metrics or ComputeMetrics()
        self.info = info or machine_info(with_tf=False)
        self.peer_id = broker.peer_id
        self._lock = threading.RLock()
        self._offers: dict[JobKey, _Offer] = {}
        self._claims: dict[JobKey, _Claim] = {}
        self._running: dict[JobKey, JobContext] = {}
        self._threads: dict[JobKey, threading.Thread] = {}
        self._refused: BoundedMap[tuple[str, str, int], None] = BoundedMap(MAX_REMEMBERED)
        self._stop = threading.Event()
        self._shutdown = threading.Event()
        self.auth = Authenticator(broker.verify, state_path=state_path)
        self.node = Node(broker, settings.topic, self._on_message, name="compute-worker",
                         limits=InboxLimits(max_message_bytes=p.MAX_COMPUTE_MESSAGE),
                         metrics=self.metrics.runtime, seal=p.sealer(broker.sign, broker.peer_id))
        self.node.every(settings.heartbeat_interval, self._tick, name="heartbeat")
        self.node.every(min(60.0, settings.result_ttl / 4), self._expire_results,
                        name="results")
        self._expiry_warned = False
        self._thread: threading.Thread | None = None
        self.claim_ttl = max(5.0, 3 * settings.heartbeat_interval)
        self.federated = Participant(self.peer_id, store, settings, dict(datasets or {}),
                                     self.metrics, self._publish, self._has_slot)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, ready_timeout: float = 10.0) -> ComputeWorker:
        self.node.start(ready_timeout)
        self._thread = threading.Thread(target=self.node.run, args=(self._stop,),
                                        name="compute-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, fail running jobs as 'shutdown' (the client re-offers them)."""
        with self._lock:
            for ctx in self._running.values():
                ctx.stop("shutdown")
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout)
        self.federated.stop(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.node.close()
        self.auth.save(force=True)

    def request_stop(self) -> None:
        """Make wait() return (safe to call from a signal handler)."""
        self._shutdown.set()

    def wait(self) -> None:
        while not self._shutdown.wait(0.5):
            pass

    @property
    def free_slots(self) -> int:
        with self._lock:
            taken = len(self._running) + len(self._claims) + self.federated.running
            return max(0, self.settings.slots - taken)

    def _has_slot(self) -> bool:
        """A federated round may start (it runs in a slot, like a job)."""
        return self.free_slots > 0

    # -- the loop -------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        self.handle(msg.sender, msg.data)

    def _tick(self) -> None:
        self.auth.prune()
        self.auth.save()
        now = time.monotonic()
        with self._lock:
            for key, claim in list(self._claims.items()):
                if claim.until < now:
                    del self._claims[key]
            for key, offer in list(self._offers.items()):
                if offer.refreshed + OFFER_TTL < now:
                    del self._offers[key]
            beats = [(c.spec, c.state) for c in self._running.values()]
        self._advertise()
        for spec, state in beats:
            self._send(p.BEAT, spec, state=state)
        self._claim_more()

    def _advertise(self) -> None:
        with self._lock:
            running = sorted(job for _, job in self._running)
        self._publish(p.pack(
            p.AD, result_ttl=float(self.settings.result_ttl),
            slots=self.settings.slots, free=self.free_slots, cpus=self.info.cpus,
            memory=self.info.memory, gpus=list(self.info.gpus), tf=self.info.tf[:32],
            load=load(), running=running, interval=float(self.settings.heartbeat_interval),
            restricted=bool(self.settings.accept_from),
            max_job_bytes=self.settings.max_job_bytes, max_epochs=self.settings.max_epochs,
            max_wall_seconds=float(self.settings.max_wall_seconds),
            max_params=self.settings.max_params, datasets=self.federated.describe(),
        ))

    # -- messages -------------------------------------------------------------------------

    def refuse(self, reason: str, detail: str, sender: str) -> None:
        """Count and log one refused input (once: each refusal is one event)."""
        self.metrics.jobs_refused.labels(reason=reason).inc()
        log.warning("refused input from %s (%s): %s", sender, reason, detail)

    def handle(self, relayer: str, data: bytes) -> None:
        """One message as relayed by `relayer`'s daemon; it is from its signed author."""
        try:
            sender, kind, body = self.auth.open(data)
        except WireError as e:
            self.refuse(p.rejection_reason(data, e), str(e), relayer)
            return
        if sender == self.peer_id:
            return  # our own echo (other gridd processes on our daemon are other authors)
        if kind in (p.OFFER, p.ASSIGN, p.CANCEL, fed.TASK):
            self.auth.save()  # a restart must not forget what this client already sent
        if kind == p.OFFER:
            self._on_offer(sender, body)
        elif kind == p.ASSIGN:
            self._on_assign(sender, body)
        elif kind == p.CANCEL:
            self._on_cancel(sender, body)
            self.federated.on_cancel(sender, body["job"])
        elif kind == fed.TASK:
            self.federated.on_task(sender, body)
        # ads, claims, beats... of other peers are not the worker's business

    def _on_offer(self, sender: str, body: dict[str, Any]) -> None:
        spec = JobSpec(body["job"], body["attempt"], sender, body["model"], dict(body["data"]),
                       dict(body["fit"]), body["bytes"])
        key = (sender, spec.job)
        with self._lock:
            ctx = self._running.get(key)
            if ctx is not None and spec.attempt > ctx.spec.attempt:
                ctx.stop("superseded")  # the client gave up on us; don't finish for nothing
            if self.peer_id in body["exclude"]:
                return
            if (sender, spec.job, spec.attempt) in self._refused:
                return
        problem = self._check_offer(spec)
        if problem is not None:
            reason, detail = problem
            with self._lock:
                self._refused[(sender, spec.job, spec.attempt)] = None
            self.refuse(reason, f"job {spec.job}: {detail}", sender)
            self._send(p.REFUSED, spec, reason=reason, error=detail[:2000])
            return
        with self._lock:
            stale = self._claims.get(key)
            if stale is not None and stale.spec.attempt < spec.attempt:
                del self._claims[key]  # our claim lost that attempt; claim the new one
            if key in self._running or key in self._claims:
                return
            old = self._offers.get(key)
            full = ""
            if old is None:
                if len(self._offers) >= MAX_PENDING:
                    full = f"{MAX_PENDING} offers already pending"
                elif sum(1 for o, _ in self._offers if o == sender) >= MAX_OFFERS_PER_OWNER:
                    full = f"{MAX_OFFERS_PER_OWNER} offers from this client already pending"
            if not full:
                # A re-offer refreshes the offer but keeps its place in the queue.
                first_seen = old.seen if old is not None else time.monotonic()
                self._offers[key] = _Offer(spec, first_seen, time.monotonic())
        if full:
            self.refuse("queue_full", f"job {spec.job}: {full}", sender)
            return
        self._claim_more()

    def _check_offer(self, spec: JobSpec) -> tuple[str, str] | None:
        s = self.settings
        if s.accept_from and spec.owner not in s.accept_from:
            return "not_allowed", f"this worker only accepts jobs from {len(s.accept_from)} " \
                "listed peer(s) (--accept-from), not from " + spec.owner
        if spec.bytes > s.max_job_bytes:
            return "too_large", f"the job is {spec.bytes} bytes, over this worker's limit of " \
                f"{s.max_job_bytes}"
        try:
            p.check_fit_args(spec.fit, s.max_epochs)
        except ValueError as e:
            reason = "too_many_epochs" if "limit" in str(e) else "bad_fit_args"
            return reason, str(e)
        return None

    def _claim_more(self) -> None:
        """Claim the oldest pending offers while slots are free."""
        to_claim: list[JobSpec] = []
        with self._lock:
            free = self.settings.slots - len(self._running) - len(self._claims) \
                - self.federated.running
            for key, offer in sorted(self._offers.items(), key=lambda kv: kv[1].seen):
                if free <= 0:
                    break
                if key in self._claims or key in self._running:
                    continue
                self._claims[key] = _Claim(offer.spec, time.monotonic() + self.claim_ttl)
                to_claim.append(offer.spec)
                free -= 1
        for spec in to_claim:
            self._send(p.CLAIM, spec)

    def _on_assign(self, sender: str, body: dict[str, Any]) -> None:
        attempt, worker = body["attempt"], body["worker"]
        key = (sender, body["job"])  # only the job's owner can assign it
        with self._lock:
            offer = self._offers.get(key)
            claim = self._claims.get(key)
            known = claim.spec if claim else (offer.spec if offer else None)
            if known is None:
                ctx = self._running.get(key)
                if ctx is not None and worker != self.peer_id and attempt > ctx.spec.attempt:
                    ctx.stop("superseded")
                return  # an assignment for an offer we never saw
            action: JobSpec | str | None
            if worker != self.peer_id:  # someone else got it: free our reservation
                self._offers.pop(key, None)
                self._claims.pop(key, None)
                action = None
            elif key in self._running or attempt != known.attempt:
                return  # a repeated assignment, or one for an attempt we did not claim
            elif claim is None and self.free_slots == 0:
                action = "busy"
            else:
                self._claims.pop(key, None)
                self._offers.pop(key, None)
                action = known
        if action is None:
            self._claim_more()
        elif isinstance(action, str):
            self._send(p.FAILED, known, reason=action, error="worker has no free slot")
        else:
            self._start_job(action)

    def _on_cancel(self, sender: str, body: dict[str, Any]) -> None:
        key = (sender, body["job"])  # only the job's owner can cancel it
        with self._lock:
            self._offers.pop(key, None)
            self._claims.pop(key, None)
            ctx = self._running.get(key)
            if ctx is not None:
                ctx.stop("cancelled")
        self._claim_more()

    # -- running a job --------------------------------------------------------------------

    def _start_job(self, spec: JobSpec) -> None:
        ctx = JobContext(
            spec=spec, store=self.store, metrics=self.metrics,
            max_bytes=self.settings.max_job_bytes,
            deadline=time.monotonic() + self.settings.max_wall_seconds,
            report=lambda kind, body: self._send(kind, spec, **body),
        )
        t = threading.Thread(target=self._run_job, args=(ctx,), name=f"job:{spec.job}",
                             daemon=True)
        with self._lock:
            self._running[(spec.owner, spec.job)] = ctx
            self._threads[(spec.owner, spec.job)] = t
        self.metrics.jobs_accepted.inc()
        self.metrics.jobs_running.inc()
        log.info("job %s (attempt %d) from %s: started", spec.job, spec.attempt, spec.owner)
        ctx.set_state("fetching")
        t.start()

    def _run_job(self, ctx: JobContext) -> None:
        spec = ctx.spec
        t0 = time.monotonic()
        try:
            result = self.trainer.run(ctx)
            ctx.check_stop()
            keep = pins.compute_result(spec.job, spec.owner,
                                       time.time() + self.settings.result_ttl)
            cid = self.store.put(result.model, name=keep)
            self.metrics.training_seconds.observe(time.monotonic() - t0)
            seconds = round(time.monotonic() - t0, 3)
            try:
                done = p.pack(p.DONE, job=spec.job, attempt=spec.attempt, owner=spec.owner,
                              model=cid, history=result.history, seconds=seconds)
            except WireError:  # a long run's history: too big for a message, so by CID
                hcid = self.store.put(p.pack_history(result.history), name=keep)
                done = p.pack(p.DONE, job=spec.job, attempt=spec.attempt, owner=spec.owner,
                              model=cid, history_cid=hcid, seconds=seconds)
            self._publish(done)
            self.metrics.jobs_completed.inc()
            log.info("job %s: done in %.1fs -> %s", spec.job, time.monotonic() - t0, cid)
        except JobError as e:
            if e.refused:
                self.refuse(e.reason, f"job {spec.job}: {e.message}", spec.owner)
                self._send(p.REFUSED, spec, reason=e.reason, error=e.message[:2000])
            else:
                self.metrics.jobs_failed.labels(reason=e.reason).inc()
                log.warning("job %s failed (%s): %s", spec.job, e.reason, e.message)
                self._send(p.FAILED, spec, reason=e.reason, error=e.message[:2000])
        except Exception as e:  # a bug or an IPFS outage: report it, keep the worker alive
            self.metrics.jobs_failed.labels(reason="error").inc()
            log.exception("job %s crashed", spec.job)
            self._send(p.FAILED, spec, reason="error", error=f"{type(e).__name__}: {e}"[:2000])
        finally:
            with self._lock:
                self._running.pop((spec.owner, spec.job), None)
                self._threads.pop((spec.owner, spec.job), None)
            self.metrics.jobs_running.dec()
            self._claim_more()

    def _expire_results(self) -> None:
        """Unpin results whose TTL passed. Their expiry is in their pin names, so results of
        an earlier run of this worker expire too; listing and unpinning are Kubo RPCs, so
        they run in the node's fetch pool, never on the message loop."""

        def sweep(_left: float) -> int:
            expired = pins.expired_results(self.store.pins(pins.RESULT_PREFIX), time.time())
            for cid in expired:
                self.store.unpin(cid)
            return len(expired)

        self.node.fetch(("results", "expire"), sweep, timeout=60.0, done=self._expired,
                        sender="gridd:retention")

    def _expired(self, result: FetchResult) -> None:
        if result.ok:
            if result.value:
                log.info("unpinned %d result(s) past their TTL", result.value)
        elif not self._expiry_warned:
            self._expiry_warned = True
            log.warning("could not unpin expired results (will retry): %s", result.error)

    def _send(self, kind: str, spec: JobSpec, **body: Any) -> None:
        """A message about one job (addressed to its owner)."""
        try:
            self._publish(p.pack(kind, job=spec.job, attempt=spec.attempt, owner=spec.owner,
                                 **body))
        except WireError:
            log.exception("cannot encode %s for job %s", kind, spec.job)

    def _publish(self, data: bytes) -> None:
        """Best effort, queued by the runtime: the next tick re-sends state anyway."""
        self.node.publish(data)
