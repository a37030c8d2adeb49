"""One per Client: federated messages from the dispatcher's loop to the jobs they concern.

Workers' updates and declines about this client's jobs go to the open round's collector;
anyone's progress events are remembered (the most recent 1,024 jobs, each by its owner,
the verified author of its events) for `Client.jobs()` and handed to followers. Everything
here runs on the dispatcher's loop thread and only does bookkeeping.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from gridd.compute.dispatch import Dispatcher
from gridd.federated import messages as m
from gridd.federated.collector import RoundCollector
from gridd.metrics import FederatedMetrics
from gridd.runtime import BoundedMap
from gridd.transport import Store

if TYPE_CHECKING:
    from gridd.federated.coordinator import FederatedJob
    from gridd.federated.follow import JobFollower

log = logging.getLogger(__name__)

MAX_SEEN_JOBS = 1_024


class FederatedHub:
    """See the module docstring."""

    def __init__(self, dispatcher: Dispatcher, store: Store, metrics: FederatedMetrics) -> None:
        self.dispatcher = dispatcher
        self.store = store
        self.metrics = metrics
        self.peer_id = dispatcher.peer_id
        self.jobs: dict[str, FederatedJob] = {}  # this session's, by id
        self.seen: BoundedMap[tuple[str, str], dict[str, Any]] = BoundedMap(MAX_SEEN_JOBS,
                                                                            lru=True)
        self._rounds: dict[str, RoundCollector] = {}
        self._followers: list[JobFollower] = []
        self._lock = threading.Lock()
        dispatcher.route(m.UPDATE, self._on_worker)
        dispatcher.route(m.DECLINED, self._on_worker)
        dispatcher.route(m.PROGRESS, self._on_progress)

    # -- what jobs call -------------------------------------------------------------------

    def add(self, job: FederatedJob) -> None:
        with self._lock:
            if job.id in self.jobs and not self.jobs[job.id].finished:
                raise ValueError(f"federated job {job.id} is already running in this session")
            self.jobs[job.id] = job

    def open_round(self, job: str, collector: RoundCollector) -> None:
        with self._lock:
            self._rounds[job] = collector

    def close_round(self, job: str, collector: RoundCollector) -> None:
        with self._lock:
            if self._rounds.get(job) is collector:
                del self._rounds[job]

    def wake(self, job: str) -> None:
        with self._lock:
            collector = self._rounds.get(job)
        if collector is not None:
            collector.wake()

    def publish(self, data: bytes) -> None:
        self.dispatcher.node.publish(data)

    def alive(self, peer_id: str) -> bool:
        return self.dispatcher.is_live(peer_id)

    def unpin(self, cid: str) -> None:
        try:
            self.store.unpin(cid)
        except Exception as e:  # already gone, daemon restarted: nothing left to release
            log.info("could not unpin %s: %s", cid, e)

    def record(self, owner: str, body: dict[str, Any]) -> None:
        """A progress event (ours, or another coordinator's, verified as its owner's)."""
        event = {**body, "owner": owner, "seen": time.time()}
        with self._lock:
            self.seen[(owner, str(body["job"]))] = event
            followers = [f for f in self._followers if f.job == body["job"]]
        for f in followers:
            f.deliver(owner, event)

    def follow(self, follower: JobFollower) -> None:
        with self._lock:
            self._followers.append(follower)
            known = [e for (owner, job), e in self.seen.items() if job == follower.job]
        for event in known:
            follower.deliver(event["owner"], event)

    def unfollow(self, follower: JobFollower) -> None:
        with self._lock:
            if follower in self._followers:
                self._followers.remove(follower)

    # -- the dispatcher loop's calls -------------------------------------------------------

    def _on_worker(self, sender: str, kind: str, body: dict[str, Any]) -> None:
        if body["owner"] != self.peer_id:
            return  # about another coordinator's job
        with self._lock:
            collector = self._rounds.get(str(body["job"]))
            ours = str(body["job"]) in self.jobs
        if collector is None:
            if ours:
                self.metrics.updates.labels(outcome="rejected", reason="late").inc()
            return
        if kind == m.UPDATE:
            collector.on_update(sender, body)
        else:
            collector.on_declined(sender, body)

    def _on_progress(self, sender: str, kind: str, body: dict[str, Any]) -> None:
        self.record(sender, body)
