"""Compute mode end to end: real Kubo daemons, real `start_worker --compute` processes."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest
from compute_helpers import Grid, mlp

from gridd import Client
from gridd.compute import protocol as p
from gridd.compute.dispatch import JobCancelled, JobRefused
from gridd.ipfs import IPFSUnreachable

pytestmark = [pytest.mark.kubo, pytest.mark.tf]


@pytest.fixture(scope="module")
def client(grid: Grid):
    c = Client(grid.api(0), topic=grid.topic, lease=3.0, reoffer_every=0.5)
    c.workers(wait=30, min_workers=2)
    yield c
    c.close()


def test_client_without_kubo_says_how_to_start_it() -> None:
    with pytest.raises(IPFSUnreachable, match="start_ipfs"):
        Client("/ip4/127.0.0.1/tcp/9")


def test_workers_table_lists_live_workers(client: Client, grid: Grid) -> None:
    table = client.workers()
    assert len(table) == 2
    assert {r["tf"] for r in table} != {"-"}
    assert all(r["slots"] == 1 and r["cpus"] >= 1 for r in table)
    assert "peer_id" in repr(table) and "<table>" in table._repr_html_()


def test_fit_round_trip_trains_remotely(client: Client, grid: Grid, digits_small) -> None:
    x, y, xt, yt = digits_small
    model = mlp()
    before = model.evaluate(xt, yt, verbose=0, return_dict=True)
    sent = [w.copy() for w in model.get_weights()]
    trained, history = client.fit(model, x, y, epochs=5, batch_size=64,
                                  validation_data=(xt, yt), progress=False, timeout=120)
    after = trained.evaluate(xt, yt, verbose=0, return_dict=True)
    assert after["accuracy"] > before["accuracy"] + 0.3
    assert after["loss"] < before["loss"]
    assert any(not np.allclose(a, b) for a, b in zip(sent, trained.get_weights(), strict=True))
    assert all(np.allclose(a, b) for a, b in zip(sent, model.get_weights(), strict=True))
    assert history.epoch == [0, 1, 2, 3, 4] and len(history.history["val_accuracy"]) == 5
    assert history.worker is not None and history.params["epochs"] == 5
    jobs = client.jobs()
    assert jobs[-1]["status"] == "done"
    ran = next(w for w in grid.workers if w.metric("gridd_jobs_completed_total") >= 1)
    assert ran.metric("gridd_jobs_accepted_total") >= 1
    assert ran.metric("gridd_ipfs_fetch_bytes_total") > x.nbytes
    assert ran.metric("gridd_training_seconds_count") >= 1
    assert ran.metric("gridd_jobs_running") == 0


def test_lambda_model_is_refused_with_a_clear_error(client: Client, grid: Grid,
                                                    digits_small) -> None:
    x, y, _, _ = digits_small
    before = sum(w.metric("gridd_jobs_refused_total", reason="unsafe_model")
                 for w in grid.workers)
    with pytest.raises(JobRefused, match="Lambda") as err:
        client.fit(mlp(lambda_layer=True), x, y, epochs=1, progress=False, timeout=60)
    assert err.value.reason == "unsafe_model"
    after = sum(w.metric("gridd_jobs_refused_total", reason="unsafe_model")
                for w in grid.workers)
    assert after == before + 1


def test_bad_messages_are_counted_and_workers_keep_serving(client: Client, grid: Grid,
                                                           digits_small) -> None:
    seal = p.sealer(client.broker.sign, client.peer_id)  # signed: past the signature check

    def bad() -> list[bytes]:  # fresh each round: a resent identical message is a replay
        return [
            b"\xc1 definitely not msgpack",
            b"\x00" * (p.MAX_COMPUTE_MESSAGE + 10),  # oversized
            seal(msgpack.packb({"t": p.OFFER, "v": 1, "b": {"job": "x", "epochs": "many"}})),
            seal(p.pack(p.OFFER, job="evil", attempt=0, model="bafy" + "a" * 20,  # wants code
                        data={"x": "bafy" + "b" * 20, "y": "bafy" + "c" * 20},
                        fit={"epochs": 1, "callbacks": ["rm -rf"]}, bytes=10, exclude=[])),
            p.pack(p.CANCEL, job="x"),  # well formed but not signed
        ]

    reasons = ("malformed", "oversized", "schema", "bad_fit_args", "unsigned")
    # oversized messages are dropped by the runtime before they are queued or decoded
    metric = {r: "gridd_jobs_refused_total" for r in reasons} | {
        "oversized": "gridd_inbox_dropped_total"}
    deadline = time.monotonic() + 20
    next_publish = 0.0
    while True:
        counts = {r: [w.metric(metric[r], reason=r) for w in grid.workers] for r in reasons}
        missing = [data for data, r in zip(bad(), reasons, strict=True) if min(counts[r]) < 1]
        if not missing or time.monotonic() > deadline:
            break
        if time.monotonic() >= next_publish:  # pubsub is best-effort: resend what was missed
            for data in missing:
                client.broker.publish(grid.topic, data)
            next_publish = time.monotonic() + 3.0
        time.sleep(0.2)
    assert all(c >= 1 for cs in counts.values() for c in cs), counts
    x, y, _, _ = digits_small
    trained, history = client.fit(mlp(), x, y, epochs=1, progress=False, timeout=120)
    assert len(history.history["loss"]) == 1
    assert all(w.proc is not None and w.proc.poll() is None for w in grid.workers)


def test_accept_from_refuses_other_peers(grid: Grid, digits_small) -> None:
    topic = grid.topic + "-private"
    x, y, _, _ = digits_small
    stranger = Client(grid.api(0), topic=topic, reoffer_every=0.5)
    ally = Client(grid.api(1), topic=topic, reoffer_every=0.5)
    w = grid.spawn(2, topic, "--accept-from", ally.peer_id)  # the notebook's own identity
    try:
        w.wait_ready()
        assert stranger.workers(wait=20, min_workers=1)[0]["restricted"] is True
        with pytest.raises(JobRefused, match="not_allowed"):
            stranger.fit(mlp(), x, y, epochs=1, progress=False, timeout=60)
        assert w.metric("gridd_jobs_refused_total", reason="not_allowed") >= 1
        assert w.metric("gridd_jobs_accepted_total") == 0
        ally.workers(wait=20, min_workers=1)
        _, history = ally.fit(mlp(), x, y, epochs=1, progress=False, timeout=120)
        assert len(history.history["loss"]) == 1
    finally:
        stranger.close()
        ally.close()
        w.stop()
        grid.workers.remove(w)


def test_sweep_runs_configurations_on_both_workers(client: Client, digits_small) -> None:
    x, y, xt, yt = digits_small
    result = client.sweep(lambda hidden, lr: mlp(hidden, lr), {"hidden": [8, 32], "lr": [0.01]},
                          x, y, epochs=3, batch_size=64, validation_data=(xt, yt),
                          progress=False)
    assert [r["status"] for r in result.table] == ["done", "done"]
    scores = [r["val_accuracy"] for r in result.table]
    assert scores == sorted(scores, reverse=True)
    assert result.best_model is not None and result.best_config is not None
    assert len({r["worker"] for r in result.table}) == 2


def test_cancel_stops_the_remote_training(client: Client, grid: Grid, digits_small) -> None:
    x, y, _, _ = digits_small
    before = sum(w.metric("gridd_jobs_failed_total", reason="cancelled") for w in grid.workers)
    job = client.fit(mlp(), x, y, epochs=500, batch_size=16, progress=False, wait=False)
    deadline = time.monotonic() + 60
    while not job.logs:
        assert time.monotonic() < deadline, f"job never started training: {job}"
        time.sleep(0.05)
    job.cancel()
    with pytest.raises(JobCancelled):
        job.result(timeout=5)
    deadline = time.monotonic() + 15
    while sum(w.metric("gridd_jobs_failed_total", reason="cancelled")
              for w in grid.workers) < before + 1:
        assert time.monotonic() < deadline, "the worker kept training a cancelled job"
        time.sleep(0.1)
    assert client.jobs()[-1]["status"] == "cancelled"


@pytest.mark.slow
def test_sigkill_mid_job_finishes_on_the_other_worker(client: Client, grid: Grid,
                                                      digits_small) -> None:
    """Last in the module: it kills one of the shared workers."""
    x, y, xt, yt = digits_small
    job = client.fit(mlp(), x, y, epochs=30, batch_size=16, progress=False, wait=False)
    deadline = time.monotonic() + 60
    while len(job.logs) < 2:
        assert time.monotonic() < deadline, f"job never started training: {job}"
        time.sleep(0.05)
    first = job.worker
    victim = next(w for w in grid.workers[:2] if f"READY {first}" in w.log())  # its identity
    victim.kill()
    model, history = job.result(timeout=180)
    assert job.worker != first and job.remote.attempt == 1
    assert len(history.history["loss"]) == 30
    assert model.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"] > 0.8
    assert [j["job"] for j in client.jobs()].count(job.id) == 1 and job.status == "done"


def test_recorded_offers_replayed_after_a_worker_restart_are_refused(grid: Grid,
                                                                     digits_small) -> None:
    """Kubo's seen-cache is gone after a restart; the worker's persisted replay marks are
    not: a client's recorded offers, re-published from its own daemon (valid signature),
    start nothing on the restarted worker."""
    from gridd.ipfs import Subscription

    topic = grid.topic + "-replay"
    state = grid.tmp / "replay-state"
    worker = grid.spawn(2, topic, "--state-dir", str(state))
    worker.wait_ready()
    recorder = Subscription(grid.cluster.clients[1], topic)  # a third party listening
    x, y, _, _ = digits_small
    client = Client(grid.api(0), topic=topic, reoffer_every=0.5)
    try:
        recorder.wait_ready()
        client.fit(mlp(), x, y, epochs=1, progress=False, timeout=120)
    finally:
        client.close()
    recorded = []
    while (m := recorder.get(timeout=0.5)) is not None:
        envelope, _, author = p.unseal(m.data)
        kind, _ = p.unpack(envelope)
        if kind == p.OFFER and author == client.peer_id:
            recorded.append(m.data)
    recorder.close()
    assert recorded
    worker.stop()
    assert (state / "replay.json").exists()
    again = grid.spawn(2, topic, "--state-dir", str(state))
    again.wait_ready()
    sender = grid.cluster.clients[0]  # the client's own daemon: the signatures check out
    deadline = time.monotonic() + 30
    while again.metric("gridd_jobs_refused_total", reason="replayed") < 1:
        assert time.monotonic() < deadline, again.log()[-3000:]
        for data in recorded:
            sender.pubsub_pub(topic, data)
        time.sleep(1.0)  # pubsub is best-effort: resend until one arrives
    assert again.metric("gridd_jobs_accepted_total") == 0
    assert again.alive
