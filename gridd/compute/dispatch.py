"""The client side of the job protocol: offer, assign, watch the lease, re-offer, resolve once.

`Dispatcher` knows nothing about Keras: a job is CIDs in, a CID out. It runs on the node
runtime over any Broker, so the same state machine is unit-tested on the in-memory network
and used against Kubo. Every way a job can fail to end is bounded: at most `max_attempts`
attempts (a worker that keeps answering `busy`, or keeps going silent, is excluded), an
overall `deadline`, and `no_worker_timeout` with nobody live. With `trusted` set, only those
workers are assigned jobs.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gridd.compute import protocol as p
from gridd.compute.authentic import Authenticator
from gridd.federated import messages as fed
from gridd.metrics import RuntimeMetrics
from gridd.runtime import BoundedMap, InboxLimits, Node
from gridd.transport import Broker, Message
from gridd.wire import WireError

log = logging.getLogger(__name__)

FINAL = ("done", "failed", "cancelled")
MAX_ATTEMPTS = 10  # offers of one job before it fails with too_many_attempts
MAX_BUSY = 2  # `busy` answers from one worker before it is excluded for that job
MAX_ADS = 4_096  # workers remembered
TICK = 0.25


class JobFailed(RuntimeError):
    """A remote job ended without a result; `reason` is the worker's (or client's) code."""

    def __init__(self, job: str, reason: str, message: str, worker: str | None = None) -> None:
        who = f" on worker {worker}" if worker else ""
        super().__init__(f"job {job} failed{who} ({reason}): {message}")
        self.job = job
        self.reason = reason
        self.message = message
        self.worker = worker


class JobRefused(JobFailed):
    """A worker refused the job itself (unsafe model, limits, --accept-from...)."""

    def __init__(self, job: str, reason: str, message: str, worker: str | None = None) -> None:
        RuntimeError.__init__(self, f"job {job} refused by worker {worker} ({reason}): {message}")
        self.job, self.reason, self.message, self.worker = job, reason, message, worker


class JobCancelled(JobFailed):
    pass


def no_workers_message(topic: str, seconds: float, trusted: frozenset[str] | None) -> str:
    """Why nobody may be live, in the order a newcomer usually hits them (issue 11)."""
    causes = [
        "no `start_worker --compute` is running",
        f"the workers listen on another topic (theirs: --topic or {p.TOPIC_ENV}; yours: "
        f"{topic!r}, set with Client(topic=...) or {p.TOPIC_ENV})",
        "your Kubo daemon is not connected to theirs (`gridd peers` prints your addresses, "
        "`gridd peers connect <multiaddr>` connects, `gridd ipfs status` counts peers)",
    ]
    if trusted:
        causes.append(f"Client(workers=[...]) trusts only {len(trusted)} peer id(s) and none "
                      "of them is advertising; ads from other workers are ignored")
    causes.append("a worker on your own Kubo daemon runs a gridd from before per-role "
                  "identities: it then has your peer id, and you ignore it as your own echo")
    listed = "; ".join(f"({i}) {c}" for i, c in enumerate(causes, 1))
    return f"no live compute worker seen on topic {topic!r} for {seconds:.0f}s. " \
        f"Likely causes: {listed}"


@dataclass
class WorkerAd:
    peer_id: str
    body: dict[str, Any]
    seen: float

    def alive(self, now: float) -> bool:
        return now - self.seen <= 3 * float(self.body["interval"]) + 1.0


@dataclass
class RemoteJob:
    """A job handle: live status, per-epoch logs, cancel(), wait(), and the result CID."""

    id: str
    model: str
    data: dict[str, str]
    fit: dict[str, Any]
    bytes: int
    dispatcher: Dispatcher
    attempt: int = 0
    status: str = "offered"
    worker: str | None = None
    exclude: set[str] = field(default_factory=set)
    refusals: dict[str, tuple[str, str]] = field(default_factory=dict)
    busy: dict[str, int] = field(default_factory=dict)  # worker -> `busy` answers
    logs: list[dict[str, float]] = field(default_factory=list)
    epochs: int = 0
    result_cid: str | None = None
    history_cid: str | None = None  # set instead of an inline history for long runs
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float | None = None
    error: JobFailed | None = None
    submitted: float = field(default_factory=time.monotonic)
    training_at: float | None = None
    finished_at: float | None = None
    last_offer: float = 0.0
    last_heard: float = 0.0
    no_worker_timeout: float | None = None  # None: the dispatcher's
    ignored: int = 0  # late or stale messages from superseded attempts
    on_progress: list[Callable[[RemoteJob], None]] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Stop the job wherever it runs; result() then raises JobCancelled."""
        self.dispatcher.cancel(self)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def result_cid_or_raise(self, timeout: float | None = None) -> str:
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self.status} after {timeout}s")
        if self.error is not None:
            raise self.error
        assert self.result_cid is not None
        return self.result_cid

    @property
    def dispatch_latency(self) -> float | None:
        """Seconds from the first offer to the worker starting to train."""
        return None if self.training_at is None else self.training_at - self.submitted


class Dispatcher:
    """Offers jobs on the compute topic and sees each through to exactly one outcome."""

    def __init__(
        self,
        broker: Broker,
        topic: str = p.TOPIC,
        lease: float = 10.0,
        reoffer_every: float = 2.0,
        no_worker_timeout: float = 60.0,
        *,
        deadline: float | None = 6 * 3600.0,
        max_attempts: int = MAX_ATTEMPTS,
        trusted: frozenset[str] | None = None,
        metrics: RuntimeMetrics | None = None,
        fetch_workers: int | None = None,
    ) -> None:
        """`fetch_workers`: threads fetching for routed modes (federated updates)."""
        if not 1 <= max_attempts <= p.MAX_ATTEMPT:
            raise ValueError(f"max_attempts must be in 1..{p.MAX_ATTEMPT}")
        self.broker = broker
        self.topic = topic
        self.lease = lease
        self.reoffer_every = reoffer_every
        self.no_worker_timeout = no_worker_timeout
        self.deadline = deadline
        self.max_attempts = max_attempts
        self.trusted = trusted or None
        self.peer_id = broker.peer_id
        self.jobs: dict[str, RemoteJob] = {}
        self.ads: BoundedMap[str, WorkerAd] = BoundedMap(MAX_ADS, lru=True)
        self.rejected = 0
        self.results_refused: dict[str, int] = {}  # reason -> results the client refused
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.auth = Authenticator(broker.verify)
        self.node = Node(broker, topic, self._on_message, name="compute-dispatch",
                         limits=InboxLimits(max_message_bytes=p.MAX_COMPUTE_MESSAGE),
                         metrics=metrics, seal=p.sealer(broker.sign, broker.peer_id),
                         fetch_workers=fetch_workers)
        # Other modes on the compute topic (federated jobs): message type -> handler.
        self.routes: dict[str, Callable[[str, str, dict[str, Any]], None]] = {}
        self.node.every(TICK, lambda: self._tick(time.monotonic()), name="dispatch")
        self.node.every(30.0, self.auth.prune, name="forget")
        self._thread: threading.Thread | None = None
        self.started: float | None = None  # monotonic time it began listening

    def start(self, ready_timeout: float = 10.0) -> Dispatcher:
        self.node.start(ready_timeout)
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self.node.run, args=(self._stop, 0.1),
                                        name="compute-dispatch", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.node.close()

    # -- public ---------------------------------------------------------------------------

    def workers(self) -> list[WorkerAd]:
        """Live (trusted) workers as of their last ads."""
        now = time.monotonic()
        with self._lock:
            return [a for a in self.ads.values() if a.alive(now)]

    def is_live(self, peer_id: str) -> bool:
        """Whether `peer_id` is a live (trusted) worker as of its last ad."""
        with self._lock:
            ad = self.ads.get(peer_id)
            return ad is not None and ad.alive(time.monotonic())

    def route(self, kind: str, handler: Callable[[str, str, dict[str, Any]], None]) -> None:
        """Hand authenticated messages of `kind` to handler(author, kind, body) on the loop
        thread (another mode sharing the compute topic: gridd.federated)."""
        self.routes[kind] = handler

    def listened(self) -> float:
        """Seconds this dispatcher has been listening to ads (0 before start)."""
        return 0.0 if self.started is None else time.monotonic() - self.started

    def wait_workers(self, seconds: float, min_workers: int | None = None) -> list[WorkerAd]:
        """Live workers once this dispatcher has listened for `seconds` in all.

        Workers advertise every few seconds each, so the first ad is not the whole grid:
        stopping there listed 1 of 2 workers (issue 11). Time already spent listening
        counts, so a long-running dispatcher answers at once. With `min_workers`, returns
        as soon as that many are live.
        """
        deadline = time.monotonic() + max(0.0, seconds - self.listened())
        while (now := time.monotonic()) < deadline:
            if min_workers is not None and len(self.workers()) >= min_workers:
                break
            self._stop.wait(min(0.05, deadline - now))
        return self.workers()

    def submit(
        self, model: str, data: dict[str, str], fit: dict[str, Any], nbytes: int,
        job_id: str | None = None, no_worker_timeout: float | None = None,
    ) -> RemoteJob:
        job = RemoteJob(job_id or uuid.uuid4().hex[:16], model, dict(data), dict(fit), nbytes,
                        self, epochs=int(fit.get("epochs", 1)),
                        no_worker_timeout=no_worker_timeout)
        with self._lock:
            self.jobs[job.id] = job
        self._offer(job)
        return job

    def cancel(self, job: RemoteJob) -> None:
        with self._lock:
            if job.finished:
                return
            self._finish(job, "cancelled", JobCancelled(job.id, "cancelled", "cancelled by you",
                                                         job.worker))
        self._publish(p.pack(p.CANCEL, job=job.id))

    def refuse_result(self, job: RemoteJob, attempt: int, reason: str, detail: str) -> bool:
        """The client refused the result of `attempt` (gridd.compute.audit: the model does
        not do what its worker reported): exclude that worker and offer the job again under
        a new attempt, or fail it past max_attempts. False if the job is not done (any more)."""
        with self._lock:
            if job.status != "done" or job.attempt != attempt:
                return False
            self.results_refused[reason] = self.results_refused.get(reason, 0) + 1
            worker = job.worker or "?"
            job.exclude.add(worker)
            job.result_cid, job.history_cid, job.history, job.seconds = None, None, {}, None
            job.error = job.finished_at = None
            job._done.clear()
            again = self._reset(job, f"{reason} on {worker[:16]}: {detail[:300]}")
        if again:
            self._offer(job)
        return True

    # -- internals ------------------------------------------------------------------------

    def _offer(self, job: RemoteJob) -> None:
        job.last_offer = time.monotonic()
        try:
            data = p.pack(
                p.OFFER, job=job.id, attempt=job.attempt, model=job.model, data=job.data,
                fit=job.fit, bytes=job.bytes, exclude=sorted(job.exclude)[-256:],
            )
        except WireError as e:  # cannot happen for a job submit() accepted; end it cleanly
            with self._lock:
                self._finish(job, "failed", JobFailed(job.id, "bad_job", str(e)))
            return
        self._publish(data)

    def _publish(self, data: bytes) -> None:
        """Best effort, queued by the runtime: the next tick re-offers."""
        self.node.publish(data)

    def _on_message(self, msg: Message) -> None:
        self.handle(msg.sender, msg.data)

    def _tick(self, now: float) -> None:
        reoffer: list[RemoteJob] = []
        with self._lock:
            self.ads.prune(lambda _, a: now - a.seen > 600.0)
            live = {a.peer_id for a in self.ads.values() if a.alive(now)}
            for job in self.jobs.values():
                if job.finished:
                    continue
                if self.deadline is not None and now - job.submitted > self.deadline:
                    self._finish(job, "failed", JobFailed(
                        job.id, "deadline", f"not finished {self.deadline:.0f}s after it was "
                        f"submitted (attempt {job.attempt}, {job.status})", job.worker))
                    if job.worker:
                        self._publish(p.pack(p.CANCEL, job=job.id))
                    continue
                if job.status == "offered":
                    refused_by = set(job.refusals)
                    if refused_by and live and live <= refused_by | job.exclude:
                        reasons = "; ".join(f"{w[:12]}…: {r} ({e})"
                                            for w, (r, e) in job.refusals.items())
                        reason = next(iter(job.refusals.values()))[0]
                        self._finish(job, "failed", JobRefused(
                            job.id, reason, f"every live worker refused it: {reasons}",
                            next(iter(job.refusals))))
                    elif not live and now - job.submitted > self._no_worker_wait(job):
                        self._finish(job, "failed", JobFailed(
                            job.id, "no_workers", no_workers_message(
                                self.topic, self._no_worker_wait(job), self.trusted)))
                    elif now - job.last_offer >= self.reoffer_every:
                        reoffer.append(job)
                elif now - job.last_heard > self.lease:
                    log.warning("job %s: worker %s silent for %.1fs (lease %.1fs); re-offering",
                                job.id, job.worker, now - job.last_heard, self.lease)
                    if job.worker:
                        job.exclude.add(job.worker)
                    if self._reset(job, "lease expired"):
                        reoffer.append(job)
        for job in reoffer:
            self._offer(job)

    def _no_worker_wait(self, job: RemoteJob) -> float:
        """Seconds a job may wait with no live worker before it fails (no_workers)."""
        return self.no_worker_timeout if job.no_worker_timeout is None else job.no_worker_timeout

    def _reset(self, job: RemoteJob, why: str) -> bool:
        """Back to 'offered' under a new attempt (the old attempt's messages are now stale);
        False when the job has used all its attempts, and is failed instead."""
        if job.attempt + 1 >= self.max_attempts:
            self._finish(job, "failed", JobFailed(
                job.id, "too_many_attempts", f"gave up after {job.attempt + 1} attempts (last: "
                f"{why}); excluded workers: {len(job.exclude)}", job.worker))
            return False
        job.attempt += 1
        job.status = "offered"
        job.worker = None
        job.logs = []
        job.training_at = None
        job.refusals = {}
        self._notify(job)
        return True

    def _finish(self, job: RemoteJob, status: str, error: JobFailed | None) -> None:
        job.status = status
        job.error = error
        job.finished_at = time.monotonic()
        job._done.set()
        self._notify(job)

    def _notify(self, job: RemoteJob) -> None:
        for cb in list(job.on_progress):
            try:
                cb(job)
            except Exception:
                log.exception("progress callback failed")

    def handle(self, relayer: str, data: bytes) -> None:
        """One message as relayed by `relayer`'s daemon; it is from its signed author."""
        try:
            sender, kind, body = self.auth.open(data)
        except WireError as e:
            self.rejected += 1
            log.warning("rejected message relayed by %s (%s): %s", relayer,
                        p.rejection_reason(data, e), e)
            return
        if sender == self.peer_id:
            return  # our own echo
        routed = self.routes.get(kind)
        if routed is not None:
            if self.trusted is not None and kind != fed.PROGRESS and sender not in self.trusted:
                return  # Client(workers=[...]): only those workers' answers count
            routed(sender, kind, body)
            return
        if kind not in p.COMPUTE_TYPES:
            return
        now = time.monotonic()
        if kind == p.AD:
            if self.trusted is not None and sender not in self.trusted:
                return  # Client(workers=[...]): others are not our workers
            with self._lock:
                self.ads[sender] = WorkerAd(sender, body, now)
            return
        if kind in (p.OFFER, p.ASSIGN, p.CANCEL) or body["owner"] != self.peer_id:
            return  # other clients' traffic, or about their jobs
        reoffer = None
        with self._lock:
            job = self.jobs.get(body["job"])
            if job is None or job.finished:
                if job is not None and kind == p.DONE:
                    job.ignored += 1
                    log.info("job %s: ignoring a late result from %s", job.id, sender)
                return
            if kind == p.REFUSED and job.status == "offered" and body["attempt"] == job.attempt:
                job.refusals[sender] = (body["reason"], body["error"])
                return
            if kind == p.CLAIM:
                if (job.status == "offered" and body["attempt"] == job.attempt
                        and sender not in job.exclude
                        and (self.trusted is None or sender in self.trusted)):
                    job.status = "assigned"
                    job.worker = sender
                    job.last_heard = now
                    self._publish(p.pack(p.ASSIGN, job=job.id, attempt=job.attempt,
                                         worker=sender))
                    self._notify(job)
                return
            if sender != job.worker or body["attempt"] != job.attempt:
                job.ignored += 1
                log.info("job %s: ignoring %s from %s (attempt %d, current %d on %s)", job.id,
                         kind, sender, body["attempt"], job.attempt, job.worker)
                return
            job.last_heard = now
            if kind == p.BEAT:
                job.status = body["state"]
                if body["state"] == "training" and job.training_at is None:
                    job.training_at = now
                self._notify(job)
            elif kind == p.PROGRESS:
                first = body["first"]
                logs = [p.clean_logs(x) for x in body["logs"]]
                job.logs = job.logs[:first] + logs
                job.epochs = body["epochs"]
                if job.training_at is None:
                    job.training_at = now
                job.status = "training"
                self._notify(job)
            elif kind == p.DONE:
                job.result_cid = body["model"]
                job.history_cid = body.get("history_cid")
                job.history = {str(k): [float(x) for x in v if isinstance(x, (int, float))]
                               for k, v in (body.get("history") or {}).items()}
                job.seconds = float(body["seconds"])
                self._finish(job, "done", None)
            elif kind == p.REFUSED:
                self._finish(job, "failed", JobRefused(job.id, body["reason"], body["error"],
                                                       sender))
            elif kind == p.FAILED:
                if body["reason"] in p.RETRYABLE:
                    log.warning("job %s: %s on %s (%s); re-offering", job.id, body["reason"],
                                sender, body["error"])
                    if body["reason"] == "busy":  # a claim it cannot honour counts against it
                        job.busy[sender] = job.busy.get(sender, 0) + 1
                        if job.busy[sender] >= MAX_BUSY:
                            job.exclude.add(sender)
                    if body["reason"] == "shutdown":
                        job.exclude.add(sender)
                    if self._reset(job, f"{body['reason']} on {sender[:16]}"):
                        reoffer = job
                else:
                    self._finish(job, "failed", JobFailed(job.id, body["reason"], body["error"],
                                                          sender))
        if reoffer is not None:
            self._offer(reoffer)
