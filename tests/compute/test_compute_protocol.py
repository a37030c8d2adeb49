"""The job protocol state machine on the in-memory network (no Kubo, no TF): fast."""

from __future__ import annotations

import threading
import time

import msgpack
import pytest

from gridd.compute import protocol as p
from gridd.compute.dispatch import Dispatcher, JobCancelled, JobRefused
from gridd.compute.jobs import JobContext, TrainResult
from gridd.compute.settings import ComputeSettings
from gridd.compute.sysinfo import MachineInfo
from gridd.compute.worker import ComputeWorker
from gridd.metrics import ComputeMetrics
from gridd.transport import MemoryNetwork
from gridd.wire import encode

INFO = MachineInfo(2, 2**30, (), "test")


class FakeTrainer:
    """Fetches the model, 'trains' `epochs` epochs of `pause` s each, returns model+b'!'."""

    def __init__(self, pause: float = 0.01, gate: threading.Event | None = None) -> None:
        self.pause = pause
        self.gate = gate
        self.runs = 0

    def run(self, ctx: JobContext) -> TrainResult:
        self.runs += 1
        model = ctx.fetch(ctx.spec.model, "model")
        ctx.set_state("training")
        epochs = int(ctx.spec.fit.get("epochs", 1))
        for e in range(epochs):
            if self.gate is not None:
                self.gate.wait()
            time.sleep(self.pause)
            ctx.check_stop()
            ctx.report(p.PROGRESS, {"first": e, "logs": [{"loss": 1.0 / (e + 1)}],
                                    "epochs": epochs})
        return TrainResult(model + b"!", {"loss": [1.0 / (e + 1) for e in range(epochs)]})


def settings(**kw: object) -> ComputeSettings:
    kw.setdefault("heartbeat_interval", 0.1)
    return ComputeSettings(**kw)  # type: ignore[arg-type]


@pytest.fixture
def net() -> MemoryNetwork:
    return MemoryNetwork()


def start_worker(net: MemoryNetwork, name: str, trainer: FakeTrainer | None = None,
                 **kw: object) -> ComputeWorker:
    return ComputeWorker(net.broker(name), net.store(), settings(**kw), trainer or FakeTrainer(),
                         ComputeMetrics(), INFO).start()


def submit(net: MemoryNetwork, d: Dispatcher, epochs: int = 3, model: bytes = b"model-bytes"):
    store = net.store()
    cid = store.put(model)
    x, y = store.put(b"x" * 20), store.put(b"y" * 20)
    return d.submit(cid, {"x": x, "y": y}, {"epochs": epochs}, len(model) + 40)


def test_round_trip_and_worker_table(net: MemoryNetwork) -> None:
    w = start_worker(net, "w1")
    d = Dispatcher(net.broker("client"), lease=2.0).start()
    try:
        job = submit(net, d)
        cid = job.result_cid_or_raise(timeout=5)
        assert net.store().get(cid) == b"model-bytes!"
        assert job.history["loss"] == [1.0, 0.5, 1 / 3]
        assert len(job.logs) == 3 and job.worker == "w1"
        assert job.dispatch_latency is not None
        time.sleep(0.25)  # one more ad interval
        assert [a.peer_id for a in d.workers()] == ["w1"]
        assert w.metrics.jobs_completed._value.get() == 1
    finally:
        d.close()
        w.stop()


def test_silent_worker_loses_lease_and_late_result_is_ignored(net: MemoryNetwork) -> None:
    gate = threading.Event()
    slow = start_worker(net, "a-slow", FakeTrainer(gate=gate))
    d = Dispatcher(net.broker("client"), lease=0.6, reoffer_every=0.2).start()
    fast = None
    try:
        job = submit(net, d)
        deadline = time.monotonic() + 3
        while job.worker != "a-slow" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job.worker == "a-slow"
        slow._stop.set()  # freeze: no more beats, as if the machine had vanished
        fast = start_worker(net, "b-fast")
        cid = job.result_cid_or_raise(timeout=5)
        assert job.worker == "b-fast" and job.attempt == 1
        gate.set()  # the first worker wakes up and would finish attempt 0
        time.sleep(0.3)
        assert job.result_cid == cid and job.status == "done"
    finally:
        gate.set()
        d.close()
        slow.stop()
        if fast is not None:
            fast.stop()


def test_accept_from_refuses_other_peers(net: MemoryNetwork) -> None:
    w = start_worker(net, "w1", accept_from=("friend",))
    d = Dispatcher(net.broker("stranger"), lease=2.0, reoffer_every=0.2).start()
    try:
        time.sleep(0.3)  # let the worker's ad arrive so the client knows who is live
        job = submit(net, d)
        with pytest.raises(JobRefused, match="not_allowed"):
            job.result_cid_or_raise(timeout=5)
        assert w.metrics.jobs_refused.labels(reason="not_allowed")._value.get() == 1
        assert w.metrics.jobs_accepted._value.get() == 0
    finally:
        d.close()
        w.stop()


def test_limits_refuse_before_claiming(net: MemoryNetwork) -> None:
    w = start_worker(net, "w1", max_epochs=5)
    d = Dispatcher(net.broker("client"), lease=2.0, reoffer_every=0.2).start()
    try:
        time.sleep(0.3)
        job = submit(net, d, epochs=50)
        with pytest.raises(JobRefused, match="too_many_epochs"):
            job.result_cid_or_raise(timeout=5)
    finally:
        d.close()
        w.stop()


def test_bad_messages_are_counted_and_worker_keeps_serving(net: MemoryNetwork) -> None:
    w = start_worker(net, "w1")
    d = Dispatcher(net.broker("client"), lease=2.0).start()
    evil = net.broker("evil")
    try:
        seal = p.sealer(evil.sign, "evil")  # signed by evil: it gets as far as the schema checks
        evil.publish(p.TOPIC, b"\xc1 not msgpack")
        evil.publish(p.TOPIC, seal(encode("weights", {"arrays": []})))  # not a compute type
        evil.publish(p.TOPIC, b"\x00" * (p.MAX_COMPUTE_MESSAGE + 1))
        evil.publish(p.TOPIC, seal(msgpack.packb({"t": p.OFFER, "v": 1, "b": {"job": "j"}})))
        evil.publish(p.TOPIC, p.pack(p.CANCEL, job="j"))  # well formed, but not sealed
        job = submit(net, d)
        job.result_cid_or_raise(timeout=5)
        refused = w.metrics.jobs_refused
        assert refused.labels(reason="malformed")._value.get() == 1
        assert refused.labels(reason="schema")._value.get() == 2
        assert refused.labels(reason="unsigned")._value.get() == 1
        # oversized: dropped by the runtime before it is queued, never decoded
        dropped = w.metrics.runtime.messages_dropped
        assert dropped.labels(reason="oversized")._value.get() == 1
    finally:
        d.close()
        w.stop()


def test_cancel_stops_the_running_job(net: MemoryNetwork) -> None:
    w = start_worker(net, "w1", FakeTrainer(pause=0.05))
    d = Dispatcher(net.broker("client"), lease=2.0).start()
    try:
        job = submit(net, d, epochs=200)
        deadline = time.monotonic() + 3
        while not job.logs and time.monotonic() < deadline:
            time.sleep(0.02)
        job.cancel()
        with pytest.raises(JobCancelled):
            job.result_cid_or_raise(timeout=1)
        deadline = time.monotonic() + 3
        while w.metrics.jobs_failed.labels(reason="cancelled")._value.get() < 1:
            assert time.monotonic() < deadline, "worker did not stop the cancelled job"
            time.sleep(0.02)
        job2 = submit(net, d, epochs=1)  # and the slot is free again
        job2.result_cid_or_raise(timeout=5)
    finally:
        d.close()
        w.stop()


def test_jobs_spread_over_workers(net: MemoryNetwork) -> None:
    ws = [start_worker(net, f"w{i}", FakeTrainer(pause=0.05)) for i in range(3)]
    d = Dispatcher(net.broker("client"), lease=2.0, reoffer_every=0.2).start()
    try:
        jobs = [submit(net, d, epochs=4, model=b"m%d" % i) for i in range(6)]
        for j in jobs:
            j.result_cid_or_raise(timeout=10)
        assert len({j.worker for j in jobs}) == 3
        assert sum(w.metrics.jobs_completed._value.get() for w in ws) == 6
    finally:
        d.close()
        for w in ws:
            w.stop()


def test_fit_args_whitelist() -> None:
    ok = p.check_fit_args({"epochs": 3, "batch_size": 8, "class_weight": {"0": 1, "1": 2.5}}, 10)
    assert ok["class_weight"] == {0: 1.0, 1: 2.5}
    with pytest.raises(ValueError, match="not allowed"):
        p.check_fit_args({"epochs": 1, "callbacks": []}, 10)
    with pytest.raises(ValueError, match="limit"):
        p.check_fit_args({"epochs": 11}, 10)
    with pytest.raises(ValueError, match="validation_split"):
        p.check_fit_args({"validation_split": 1.5}, 10)


class ScaledTrainer(FakeTrainer):
    """Loss = (model bytes as a number) / (epoch + 1): trials differ by their 'model'."""

    def run(self, ctx: JobContext) -> TrainResult:
        base = float(ctx.fetch(ctx.spec.model, "model").decode())
        epochs = int(ctx.spec.fit.get("epochs", 1))
        losses = []
        for e in range(epochs):
            time.sleep(self.pause)
            ctx.check_stop()
            losses.append(base / (e + 1))
            ctx.report(p.PROGRESS, {"first": e, "logs": [{"loss": losses[-1]}],
                                    "epochs": epochs})
        return TrainResult(b"%g" % base, {"loss": losses})


def test_sweep_with_successive_halving_stops_poor_trials(net: MemoryNetwork) -> None:
    from gridd.compute.remote import Job
    from gridd.compute.sweep import run_sweep

    class BytesJob(Job):
        def result(self, timeout=None):  # the real one loads a .keras file
            return self.store.get(self.remote.result_cid_or_raise(timeout)), None

    ws = [start_worker(net, f"w{i}", ScaledTrainer(pause=0.05)) for i in range(2)]
    d = Dispatcher(net.broker("client"), lease=2.0, reoffer_every=0.2).start()
    store = net.store()
    x, y = store.put(b"x" * 8), store.put(b"y" * 8)

    def submit(model: bytes, config: dict) -> Job:
        remote = d.submit(store.put(model), {"x": x, "y": y}, {"epochs": 9}, 100)
        return BytesJob(remote, store, {"epochs": 9})

    try:
        result = run_sweep(submit, lambda base: b"%g" % base,
                           [{"base": b} for b in (5, 1, 9, 2, 8, 3)], metric="loss",
                           mode="min", max_concurrent=2, epochs=9, early_stopping=True,
                           min_epochs=1, eta=3, progress=False, poll=0.02)
    finally:
        d.close()
        for w in ws:
            w.stop()
    rows = result.table
    assert rows[0]["base"] == 1 and rows[0]["status"] == "done"
    assert result.best_model == b"1" and result.best_config == {"base": 1}
    statuses = {r["base"]: r["status"] for r in rows}
    assert "stopped" in statuses.values()
    assert statuses[1] == "done"


def test_a_long_history_travels_by_cid(net: MemoryNetwork) -> None:
    from gridd.compute.remote import Job

    class LongTrainer(FakeTrainer):
        def run(self, ctx: JobContext) -> TrainResult:
            ctx.fetch(ctx.spec.model, "model")
            hist = {f"metric_{i}": [0.5] * 1000 for i in range(10)}  # ~90 kB: over the cap
            return TrainResult(b"m", hist)

    w = start_worker(net, "w1", LongTrainer())
    d = Dispatcher(net.broker("client"), lease=2.0).start()
    try:
        remote = submit(net, d)
        remote.result_cid_or_raise(timeout=5)
        assert remote.history_cid is not None
        job = Job(remote, net.store(), {})
        assert len(job.history) == 10 and job.history["metric_3"] == [0.5] * 1000
    finally:
        d.close()
        w.stop()


def test_wall_time_limit_fails_the_job(net: MemoryNetwork) -> None:
    from gridd.compute.dispatch import JobFailed

    w = start_worker(net, "w1", FakeTrainer(pause=0.05), max_wall_seconds=0.3)
    d = Dispatcher(net.broker("client"), lease=2.0).start()
    try:
        job = submit(net, d, epochs=100)
        with pytest.raises(JobFailed, match="wall_time"):
            job.result_cid_or_raise(timeout=5)
        assert w.metrics.jobs_failed.labels(reason="wall_time")._value.get() == 1
    finally:
        d.close()
        w.stop()


def test_content_over_the_byte_limit_is_refused_even_if_the_offer_lies(
        net: MemoryNetwork) -> None:
    w = start_worker(net, "w1", max_job_bytes=2048)
    d = Dispatcher(net.broker("client"), lease=2.0, reoffer_every=0.2).start()
    try:
        time.sleep(0.3)
        honest = submit(net, d, model=b"m" * 4096)  # declares 4136 bytes: refused unfetched
        with pytest.raises(JobRefused, match="too_large"):
            honest.result_cid_or_raise(timeout=5)
        store = net.store()
        cid = store.put(b"m" * 4096)
        liar = d.submit(cid, {"x": store.put(b"x"), "y": store.put(b"y")}, {"epochs": 1}, 10)
        with pytest.raises(JobRefused, match="too_large"):
            liar.result_cid_or_raise(timeout=5)
        assert w.metrics.jobs_refused.labels(reason="too_large")._value.get() == 2
    finally:
        d.close()
        w.stop()
