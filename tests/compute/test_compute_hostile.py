"""The job protocol against hostile peers on the in-memory network (no Kubo, no TF): fast.

Each test plays a sender that knows the protocol and abuses it: reusing a victim's job id,
forging results, claiming and answering `busy` for ever, never finishing. The honest job
must still end (done, or a clean JobFailed) within bounded time.
"""

from __future__ import annotations

import threading
import time

import pytest
from test_compute_protocol import FakeTrainer, start_worker, submit

from gridd.compute import protocol as p
from gridd.compute.dispatch import Dispatcher, JobFailed
from gridd.transport import MemoryNetwork, Message


@pytest.fixture
def net() -> MemoryNetwork:
    return MemoryNetwork()


class Spy:
    """Records every message on the compute topic (what an attacker sees)."""

    def __init__(self, net: MemoryNetwork, name: str) -> None:
        self.broker = net.broker(name)
        self.seen: list[tuple[str, str, dict]] = []
        self._inbox = self.broker.subscribe(p.TOPIC, sink=self._on)

    def _on(self, msg: Message) -> None:
        try:
            envelope, _, author = p.unseal(msg.data)
            kind, body = p.unpack(envelope)
        except Exception:
            return
        self.seen.append((author, kind, body))

    def first(self, kind: str, timeout: float = 3.0) -> tuple[str, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for sender, k, body in list(self.seen):
                if k == kind:
                    return sender, body
            time.sleep(0.01)
        raise AssertionError(f"no {kind} seen")

    def publish(self, kind: str, **body: object) -> None:
        """Signed with the spy's own key: a peer with an identity, like any other."""
        body.pop("ts", None)
        seal = p.sealer(self.broker.sign, self.broker.peer_id)
        self.broker.publish(p.TOPIC, seal(p.pack(kind, **body)))


def test_reusing_a_victims_job_id_does_not_touch_the_victims_job(net: MemoryNetwork) -> None:
    gate = threading.Event()
    w = start_worker(net, "w1", FakeTrainer(pause=0.01, gate=gate))
    d = Dispatcher(net.broker("victim"), lease=2.0, reoffer_every=0.2).start()
    mallory = Spy(net, "mallory")
    try:
        job = submit(net, d, epochs=2)
        _, offer = mallory.first(p.OFFER)
        # the attacker re-offers the same job id with higher attempts, and cancels it
        for attempt in range(1, 6):
            mallory.publish(p.OFFER, **{**offer, "attempt": attempt})
        mallory.publish(p.CANCEL, job=job.id)
        gate.set()
        job.result_cid_or_raise(timeout=5)
        assert job.attempt == 0 and job.worker == "w1"
    finally:
        gate.set()
        d.close()
        w.stop()


def test_forged_results_and_claims_for_someone_elses_job_are_ignored(net: MemoryNetwork
                                                                     ) -> None:
    gate = threading.Event()
    w = start_worker(net, "w1", FakeTrainer(pause=0.01, gate=gate))
    d = Dispatcher(net.broker("victim"), lease=2.0, reoffer_every=0.2).start()
    mallory = Spy(net, "mallory")
    try:
        job = submit(net, d, epochs=1)
        mallory.first(p.CLAIM)
        fake = net.store().put(b"poisoned model")
        for owner in ("victim", "someone-else"):
            mallory.publish(p.DONE, job=job.id, attempt=job.attempt, owner=owner, model=fake,
                            seconds=1.0)
            mallory.publish(p.FAILED, job=job.id, attempt=job.attempt, owner=owner,
                            reason="error", error="forged")
        gate.set()
        cid = job.result_cid_or_raise(timeout=5)
        assert cid != fake and job.worker == "w1"
        assert job.ignored >= 2  # the forged DONE/FAILED from the wrong sender
    finally:
        gate.set()
        d.close()
        w.stop()


def busy_claimer(net: MemoryNetwork, name: str, stop: threading.Event) -> threading.Thread:
    """Claims every offer at once and answers every assignment with `busy`."""
    spy = Spy(net, name)

    def loop() -> None:
        done: set[tuple[str, str, int, str]] = set()
        while not stop.is_set():
            for sender, kind, body in list(spy.seen):
                key = (sender, body.get("job", ""), body.get("attempt", -1), kind)
                if key in done:
                    continue
                done.add(key)
                if kind == p.OFFER:
                    spy.publish(p.CLAIM, job=body["job"], attempt=body["attempt"], owner=sender)
                elif kind == p.ASSIGN and body["worker"] == name:
                    spy.publish(p.FAILED, job=body["job"], attempt=body["attempt"],
                                owner=sender, reason="busy", error="always busy")
            stop.wait(0.005)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def test_a_busy_looping_claimer_is_excluded_and_the_job_runs(net: MemoryNetwork) -> None:
    stop = threading.Event()
    busy_claimer(net, "a-busy", stop)
    d = Dispatcher(net.broker("victim"), lease=2.0, reoffer_every=0.2).start()
    w = None
    try:
        job = submit(net, d, epochs=1)
        deadline = time.monotonic() + 5
        while "a-busy" not in job.exclude and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "a-busy" in job.exclude and job.attempt <= 2
        w = start_worker(net, "w1")
        job.result_cid_or_raise(timeout=5)
        assert job.worker == "w1"
    finally:
        stop.set()
        d.close()
        if w is not None:
            w.stop()


def test_attempts_are_bounded_and_end_in_a_clean_failure(net: MemoryNetwork) -> None:
    stop = threading.Event()
    for i in range(6):  # more busy claimers than the job has attempts for
        busy_claimer(net, f"busy-{i}", stop)
    d = Dispatcher(net.broker("victim"), lease=2.0, reoffer_every=0.2, max_attempts=4).start()
    try:
        job = submit(net, d, epochs=1)
        with pytest.raises(JobFailed, match="too_many_attempts"):
            job.result_cid_or_raise(timeout=10)
        assert job.attempt == 3 and job.status == "failed"
    finally:
        stop.set()
        d.close()


def test_an_overall_deadline_ends_a_job_that_never_finishes(net: MemoryNetwork) -> None:
    gate = threading.Event()  # the worker keeps beating but never trains
    w = start_worker(net, "w1", FakeTrainer(gate=gate))
    d = Dispatcher(net.broker("victim"), lease=5.0, deadline=0.8).start()
    try:
        job = submit(net, d, epochs=1)
        with pytest.raises(JobFailed, match="deadline"):
            job.result_cid_or_raise(timeout=5)
    finally:
        gate.set()
        d.close()
        w.stop()


def test_trusted_workers_only(net: MemoryNetwork) -> None:
    """Client(workers=[...]): a stranger's claim is never assigned, a friend runs the job."""
    stop = threading.Event()
    busy_claimer(net, "a-stranger", stop)
    d = Dispatcher(net.broker("victim"), lease=2.0, reoffer_every=0.2,
                   trusted=frozenset({"friend"})).start()
    w = start_worker(net, "friend")
    try:
        job = submit(net, d, epochs=1)
        job.result_cid_or_raise(timeout=5)
        assert job.worker == "friend" and job.attempt == 0
        assert [a.peer_id for a in d.wait_workers(2.0)] == ["friend"]
    finally:
        stop.set()
        d.close()
        w.stop()


def test_offers_per_owner_are_capped_on_the_worker(net: MemoryNetwork) -> None:
    from gridd.compute import worker as wk

    gate = threading.Event()
    w = start_worker(net, "w1", FakeTrainer(gate=gate))  # one slot, kept busy
    flood = Spy(net, "flooder")
    store = net.store()
    cid = store.put(b"m")
    try:
        for i in range(wk.MAX_OFFERS_PER_OWNER + 10):
            flood.publish(p.OFFER, job=f"j{i}", attempt=0, model=cid,
                          data={"x": cid, "y": cid}, fit={"epochs": 1}, bytes=1, exclude=[])
        deadline = time.monotonic() + 3
        refused = w.metrics.jobs_refused.labels(reason="queue_full")
        while refused._value.get() < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert refused._value.get() >= 10
        with w._lock:
            mine = {k for k in (*w._offers, *w._claims, *w._running) if k[0] == "flooder"}
        assert len(mine) <= wk.MAX_OFFERS_PER_OWNER
    finally:
        gate.set()
        w.stop()
