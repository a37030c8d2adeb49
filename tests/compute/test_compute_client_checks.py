"""Issue 11, the compute client: what a newcomer hit in the first hour, each point with a
test that would have caught it. In memory (MemoryNetwork with the job protocol) and, for
the input checks, real Keras; the one Kubo test is in test_compute_client_kubo.py.

5: workers(wait=...) listens for the whole wait, not until the first ad.
6: workers advertise their limits; the client refuses a job none can take before it
   uploads anything, and unpins a job's uploads when the job ends.
7: input mistakes are found in the client, with a message that says how to fix them.
8: no_worker_timeout is the client's to set, and no_workers names the likely causes.
10: RemoteHistory.plot().
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from compute_helpers import mlp
from test_compute_hostile import Spy
from test_compute_protocol import FakeTrainer, start_worker

from gridd.compute import protocol as p
from gridd.compute.checks import (
    JobSize,
    WorkerLimitError,
    check_inputs,
    check_limits,
    loss_name,
    npy_size,
)
from gridd.compute.dispatch import Dispatcher, JobCancelled, JobFailed
from gridd.compute.remote import RemoteHistory, Uploader, array_bytes, submit_fit
from gridd.compute.table import workers_table
from gridd.transport import MemoryNetwork
from gridd.wire import WireError


def until(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait for a condition another thread makes true (polled; fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not cond():
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        pause.wait(0.01)


@pytest.fixture
def net() -> MemoryNetwork:
    return MemoryNetwork()


@pytest.fixture
def dispatcher(net: MemoryNetwork) -> Iterator[Dispatcher]:
    d = Dispatcher(net.broker("client"), lease=2.0, reoffer_every=0.2).start()
    yield d
    d.close()


@pytest.fixture
def workers() -> Iterator[list]:
    started: list = []
    yield started
    for w in started:
        w.stop()


AD = {"slots": 1, "free": 1, "cpus": 2, "memory": 2.0**30, "gpus": [], "tf": "2.21",
      "load": 0.1, "running": [], "interval": 0.1, "restricted": False}
LIMITS = {"max_job_bytes": 256 * 2**20, "max_epochs": 1000, "max_wall_seconds": 3600.0,
          "max_params": 50_000_000}


# -- 5: listening for the whole wait ----------------------------------------------------------


def test_ads_carry_limits_and_ads_without_them_still_parse() -> None:
    for body in (AD, {**AD, **LIMITS}):
        kind, got = p.unpack(p.pack(p.AD, **body))
        assert kind == p.AD and {k: got.get(k) for k in LIMITS} == \
            {k: body.get(k) for k in LIMITS}
    for bad in ({"max_epochs": 0}, {"max_job_bytes": "big"}, {"max_wall_seconds": -1.0}):
        with pytest.raises(WireError, match=next(iter(bad))):
            p.pack(p.AD, **{**AD, **bad})


def test_workers_wait_listens_for_the_whole_wait(net: MemoryNetwork, dispatcher: Dispatcher,
                                                  workers: list) -> None:
    """The grid has two workers whose ads arrive at different times: a wait that stopped at
    the first ad listed one of them (issue 11 saw 2, 2, then 1 of 2 over three runs)."""
    workers.append(start_worker(net, "w1"))
    until(lambda: len(dispatcher.workers()) == 1, what="the first ad")
    workers.append(start_worker(net, "w2"))  # advertises a moment later
    listed = dispatcher.wait_workers(1.5)
    assert sorted(a.peer_id for a in listed) == ["w1", "w2"]
    assert dispatcher.listened() >= 1.5  # it listened for the whole wait
    before = time.monotonic()
    assert len(dispatcher.wait_workers(1.5)) == 2  # already listened that long: at once
    assert time.monotonic() - before < 0.5


def test_min_workers_returns_as_soon_as_they_are_live(net: MemoryNetwork,
                                                      dispatcher: Dispatcher,
                                                      workers: list) -> None:
    workers += [start_worker(net, "w1"), start_worker(net, "w2")]
    listed = dispatcher.wait_workers(30.0, min_workers=2)
    assert len(listed) == 2 and dispatcher.listened() < 10.0


# -- 6: limits in ads, checked before upload, uploads unpinned at the end ---------------------


def test_workers_table_shows_the_advertised_limits(net: MemoryNetwork, dispatcher: Dispatcher,
                                                   workers: list) -> None:
    workers.append(start_worker(net, "new", max_job_bytes=3 * 2**20, max_epochs=7,
                                max_wall_seconds=90.0, max_params=12_345))
    Spy(net, "old").publish(p.AD, **AD)  # a worker from before limits were advertised
    until(lambda: len(dispatcher.workers()) == 2, what="both ads")
    rows = {r["peer_id"]: r for r in workers_table(dispatcher.workers())}
    assert {k: rows["new"][k] for k in ("max_job_mb", "max_epochs", "max_wall_s",
                                        "max_params")} == \
        {"max_job_mb": 3.0, "max_epochs": 7, "max_wall_s": 90.0, "max_params": 12_345}
    assert rows["old"]["max_job_mb"] is None and rows["old"]["max_epochs"] is None
    assert "max_job_mb" in repr(workers_table(dispatcher.workers()))


def test_npy_size_is_what_np_save_writes() -> None:
    for a in (np.zeros((1797, 64)), np.arange(10, dtype=np.int8), np.float32(3.0),
              np.ones((3, 4, 5), dtype=np.float16, order="F"), np.zeros((0, 64)),
              np.zeros((1,) * 32, dtype=bool)):
        assert npy_size(a) == len(array_bytes(a, "x"))


def test_check_limits_names_the_limit_and_the_size() -> None:
    big = JobSize(model_bytes=2**20, data_bytes=316 * 2**20, epochs=20, params=1210)
    ads = {"w1": {**AD, **LIMITS}, "w2": {**AD, **LIMITS, "max_job_bytes": 128 * 2**20}}
    with pytest.raises(WorkerLimitError) as err:
        check_limits(big, ads)
    e = err.value
    assert (e.limit, e.needed, e.allowed) == ("max_job_bytes", 317 * 2**20, 256 * 2**20)
    msg = str(e)
    assert "317.0 MiB" in msg and "256.0 MiB" in msg and "Nothing was uploaded" in msg
    assert "--max-job-bytes" in msg and "2 live workers" in msg
    # one worker that can take it is enough; so is one too old to say (unknown limits)
    check_limits(big, {**ads, "w3": {**AD, **LIMITS, "max_job_bytes": 2**30}})
    check_limits(big, {**ads, "old": dict(AD)})
    check_limits(big, {})  # nobody to judge by: the caller waits for workers
    with pytest.raises(WorkerLimitError, match="max_epochs") as err:
        check_limits(JobSize(10, 10, 5000, 10), ads)
    assert err.value.needed == 5000 and "--max-epochs" in str(err.value)
    with pytest.raises(WorkerLimitError, match="each is over one of its limits"):
        check_limits(JobSize(10, 10, 50, 10), {"a": {**AD, "max_epochs": 5},
                                               "b": {**AD, "max_params": 5}})


def test_uploader_unpins_when_the_last_reference_is_released() -> None:
    store = MemoryNetwork().store()
    up = Uploader(store)
    a, _ = up.put(b"shared by two jobs")
    assert up.put(b"shared by two jobs")[0] == a  # added once, two references
    kept, _ = up.put(b"published")  # never released, as Client.publish()
    assert up.release([a]) == [] and a in store.pinned
    assert up.hold([a, "bafynotours"]) == [a]  # a sweep's trial; unknown CIDs are not held
    assert up.release([a, a]) == [a] and a not in store.pinned
    assert kept in store.pinned and up.pinned() == {kept: 1}
    assert up.release([a]) == []  # nothing left to give back
    assert up.put(b"shared by two jobs")[0] == a and a in store.pinned  # put again: pinned
    assert up.release([a]) == [a]
    up.repin([a])  # its job is offered again after all (a result refused after done)
    assert a in store.pinned and up.pinned()[a] == 1


@pytest.mark.tf
def test_a_job_no_worker_can_take_is_refused_before_anything_is_uploaded(
        net: MemoryNetwork, dispatcher: Dispatcher, workers: list) -> None:
    """Issue 11: 317 MB uploaded and pinned, then refused by every worker (too_large)."""
    workers += [start_worker(net, "w1", max_job_bytes=256 * 1024),
                start_worker(net, "w2", max_job_bytes=128 * 1024)]
    until(lambda: len(dispatcher.workers()) == 2, what="both ads")
    store = net.store()
    blobs = len(net._blobs)
    x, y = np.zeros((1000, 64)), np.zeros(1000, dtype=np.int64)  # 512 KiB of x
    with pytest.raises(WorkerLimitError, match=r"over the largest max_job_bytes") as err:
        submit_fit(dispatcher, Uploader(store), mlp(), x, y, epochs=1)
    assert err.value.limit == "max_job_bytes" and err.value.allowed == 256 * 1024
    assert err.value.needed > 512_000 and "--max-job-bytes" in str(err.value)
    with pytest.raises(WorkerLimitError, match="max_epochs"):
        submit_fit(dispatcher, Uploader(store), mlp(), x[:10], y[:10], epochs=5000)
    assert len(net._blobs) == blobs and not store.pinned  # not a byte was put
    assert all(w.metrics.jobs_refused.labels(reason="too_large")._value.get() == 0
               for w in workers)


@pytest.mark.tf
def test_a_job_goes_ahead_when_one_worker_can_take_it(net: MemoryNetwork,
                                                      dispatcher: Dispatcher,
                                                      workers: list) -> None:
    workers += [start_worker(net, "small", max_job_bytes=4096),
                start_worker(net, "big")]
    until(lambda: len(dispatcher.workers()) == 2, what="both ads")
    job = submit_fit(dispatcher, Uploader(net.store()), mlp(), np.zeros((100, 64)),
                     np.zeros(100, dtype=np.int64), epochs=2)
    assert job.remote.result_cid_or_raise(timeout=5) and job.worker == "big"


@pytest.mark.tf
@pytest.mark.parametrize("end", ["done", "failed", "cancelled"])
def test_uploads_are_unpinned_when_the_job_ends(end: str, net: MemoryNetwork,
                                                dispatcher: Dispatcher, workers: list) -> None:
    gate = threading.Event()
    trainer = FakeTrainer(pause=0.05, gate=gate if end == "cancelled" else None)
    workers.append(start_worker(net, "w1", trainer,
                                **({"max_wall_seconds": 0.2} if end == "failed" else {})))
    store = net.store()
    x, y = np.ones((50, 64)), np.arange(50) % 10
    job = submit_fit(dispatcher, Uploader(store), mlp(), x, y, epochs=50 if end != "done" else 2,
                     validation_data=(x[:5], y[:5]))
    assert set(job.uploads) == store.pinned and len(job.uploads) == 5  # model + 4 arrays
    if end == "cancelled":
        until(lambda: job.status == "training", what="training")
        job.cancel()
    try:
        if end == "done":
            job.remote.result_cid_or_raise(timeout=5)
        else:
            with pytest.raises(JobCancelled if end == "cancelled" else JobFailed):
                job.remote.result_cid_or_raise(timeout=5)
    finally:
        gate.set()
    assert job.unpinned.wait(5) and job.status == ("failed" if end == "failed" else end)
    assert store.pinned == set()


@pytest.mark.tf
def test_uploads_two_jobs_share_stay_pinned_until_both_end(net: MemoryNetwork,
                                                           dispatcher: Dispatcher,
                                                           workers: list) -> None:
    gate = threading.Event()
    workers += [start_worker(net, "w1", FakeTrainer(pause=0.01)),
                start_worker(net, "w2", FakeTrainer(pause=0.01, gate=gate))]
    store = net.store()
    up = Uploader(store)
    model, x, y = mlp(), np.ones((20, 64)), np.arange(20) % 10
    first = submit_fit(dispatcher, up, model, x, y, epochs=1)
    until(lambda: first.worker is not None, what="the first job assigned")
    second = submit_fit(dispatcher, up, model, x, y, epochs=1)  # the same bytes: not re-put
    assert second.uploads == first.uploads
    try:
        ended, running = (first, second) if first.worker == "w1" else (second, first)
        ended.remote.result_cid_or_raise(timeout=5)
        assert ended.unpinned.wait(5)
        assert store.pinned == set(running.uploads)  # still needed by the running job
    finally:
        gate.set()
    running.remote.result_cid_or_raise(timeout=5)
    assert running.unpinned.wait(5) and store.pinned == set()


# -- 8: no workers ----------------------------------------------------------------------------


def check_causes(message: str, topic: str) -> None:
    for cause in ("start_worker --compute", p.TOPIC_ENV, repr(topic), "gridd peers",
                  "per-role identities"):
        assert cause in message, cause


def test_no_workers_failure_names_the_likely_causes(net: MemoryNetwork) -> None:
    d = Dispatcher(net.broker("client"), topic="my/topic", reoffer_every=0.1,
                   trusted=frozenset({"friend"})).start()  # default no_worker_timeout: 60 s
    try:
        store = net.store()
        job = d.submit(store.put(b"m" * 20), {"x": store.put(b"x" * 20),
                                             "y": store.put(b"y" * 20)},
                       {"epochs": 1}, 60, no_worker_timeout=0.3)  # per-job override
        with pytest.raises(JobFailed) as err:
            job.result_cid_or_raise(timeout=5)
    finally:
        d.close()
    assert err.value.reason == "no_workers"
    check_causes(err.value.message, "my/topic")
    assert "trusts only 1 peer id" in err.value.message


@pytest.mark.tf
def test_no_workers_fails_after_no_worker_timeout_before_uploading(net: MemoryNetwork) -> None:
    d = Dispatcher(net.broker("client"), no_worker_timeout=0.3).start()
    store = net.store()
    try:
        started = time.monotonic()
        with pytest.raises(JobFailed) as err:
            submit_fit(d, Uploader(store), mlp(), np.zeros((10, 64)), np.zeros(10), epochs=1)
        assert 0.3 <= time.monotonic() - started < 3.0
        with pytest.raises(JobFailed, match="for 0s"):  # a per-call override
            submit_fit(d, Uploader(store), mlp(), np.zeros((10, 64)), np.zeros(10),
                       no_worker_timeout=0.0)
    finally:
        d.close()
    assert err.value.reason == "no_workers" and not store.pinned and not net._blobs
    check_causes(err.value.message, p.TOPIC)


# -- 7: input checks in the client ------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    return mlp()  # 64 inputs, 10 softmax outputs, sparse_categorical_crossentropy


X, Y = np.zeros((30, 64), dtype=np.float32), np.arange(30) % 10


@pytest.mark.tf
def test_good_inputs_pass(model) -> None:
    check_inputs(model, X, Y, validation_data=(X[:5], Y[:5]), epochs=3, batch_size=8)
    check_inputs(model, X, Y.reshape(-1, 1).astype(np.float32))  # (n, 1) float indices


@pytest.mark.tf
@pytest.mark.parametrize("x, y, val, expected", [
    (np.zeros((30, 63)), Y, None,
     r"x has shape \(30, 63\).*expects samples of shape \(64,\).*give x 64 features per "
     r"sample, or build the model with keras.Input\(shape=\(63,\)\)"),
    (np.zeros((30, 8, 8)), Y, None, r"x has shape \(30, 8, 8\).*reshape x to \(samples, 64\)"),
    (X, np.eye(10)[Y], None,
     r"y looks one-hot \(shape \(30, 10\)\).*sparse_categorical_crossentropy.*"
     r"y.argmax\(axis=1\).*loss='categorical_crossentropy'"),
    (X, Y + 1, None, r"y holds class 10.*10 output units.*classes 0..9"),
    (X, -Y, None, r"y holds class -9"),
    (X, Y + 0.5, None, r"non-integer values.*astype\(int\)"),
    (X, Y[:20], None, r"x has 30 samples but y has 20"),
    (X, Y, (np.zeros((5, 63)), Y[:5]),
     r"validation_data x has shape \(5, 63\).*expects samples of shape \(64,\)"),
    (X, Y, (X[:5], np.eye(10)[Y[:5]]), r"validation_data y looks one-hot"),
    (X, Y, (X[:5], Y[:4]), r"validation_data x has 5 samples but validation_data y has 4"),
])
def test_input_mistakes_are_explained(model, x, y, val, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        check_inputs(model, x, y, validation_data=val)


@pytest.mark.tf
def test_labels_are_checked_against_the_compiled_loss() -> None:
    import keras

    m = mlp()
    m.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy())
    assert loss_name(m.loss) == "categorical_crossentropy"
    check_inputs(m, X, np.eye(10)[Y])
    with pytest.raises(ValueError, match=r"y holds class indices.*to_categorical\(y, 10\).*"
                                         r"loss='sparse_categorical_crossentropy'"):
        check_inputs(m, X, Y)
    with pytest.raises(ValueError, match=r"one-hot rows of shape \(samples, 10\)"):
        check_inputs(m, X, np.eye(12)[Y])
    m.compile(optimizer="adam", loss=keras.losses.sparse_categorical_crossentropy)
    assert loss_name(m.loss) == "sparse_categorical_crossentropy"
    assert loss_name("SparseCategoricalCrossentropy") == "sparse_categorical_crossentropy"
    with pytest.raises(ValueError, match="looks one-hot"):
        check_inputs(m, X, np.eye(10)[Y])
    with pytest.raises(ValueError, match="validation_split"):
        check_inputs(m, X, Y, validation_split=1.0)
    with pytest.raises(ValueError, match="epochs"):
        check_inputs(m, X, Y, epochs=0)


@pytest.mark.tf
def test_input_mistakes_are_found_before_anything_is_uploaded(net: MemoryNetwork,
                                                              dispatcher: Dispatcher,
                                                              workers: list) -> None:
    workers.append(start_worker(net, "w1"))
    store = net.store()
    with pytest.raises(ValueError, match="63"):
        submit_fit(dispatcher, Uploader(store), mlp(), np.zeros((30, 63)), Y, epochs=1)
    assert not net._blobs and not store.pinned


# -- 10: RemoteHistory.plot -------------------------------------------------------------------


def test_history_plot_draws_one_line_per_metric_val_dashed() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = RemoteHistory({"loss": [2.0, 1.0, 0.5], "accuracy": [0.3, 0.6, 0.8],
                          "val_loss": [2.1, 1.2, 0.9], "val_accuracy": [0.3, 0.5, 0.7]},
                         {}, "job1", "12D3KooWworker", 1.0)
    ax = hist.plot()
    try:
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert set(lines) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        assert [lines[k].get_linestyle() for k in ("loss", "val_loss")] == ["-", "--"]
        assert lines["val_loss"].get_color() == lines["loss"].get_color()
        assert lines["val_accuracy"].get_color() == lines["accuracy"].get_color()
        assert lines["loss"].get_color() != lines["accuracy"].get_color()
        assert list(lines["loss"].get_xdata()) == [1, 2, 3]
        assert ax.get_xlabel() == "epoch" and ax.figure is not None
        only = hist.plot(metrics=["loss"])
        assert len(only.get_lines()) == 1
    finally:
        plt.close("all")
