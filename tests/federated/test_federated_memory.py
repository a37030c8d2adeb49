"""Federated jobs end to end on the in-memory network: real Keras, real workers' code."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fed_helpers import digits_parts, digits_test, mlp

from gridd.bench.fed_attacker import tampered
from gridd.compute.dispatch import Dispatcher, JobCancelled
from gridd.compute.settings import ComputeSettings
from gridd.compute.sysinfo import machine_info
from gridd.compute.worker import ComputeWorker
from gridd.federated.checkpoint import CheckpointError
from gridd.federated.coordinator import FederatedError, FederatedJob, FederatedSettings
from gridd.federated.datasets import load_datasets
from gridd.federated.follow import JobFollower
from gridd.federated.hub import FederatedHub
from gridd.metrics import ComputeMetrics, FederatedMetrics
from gridd.strategies import Krum, resolve
from gridd.transport import MemoryNetwork

pytestmark = pytest.mark.tf


@dataclass
class MemoryGrid:
    net: MemoryNetwork
    workers: list[ComputeWorker]
    dispatcher: Dispatcher
    hub: FederatedHub
    parts: list[Path]

    def job(self, model=None, strategy=None, **kw) -> FederatedJob:
        kw.setdefault("batch_size", 16)
        kw.setdefault("rounds", 4)
        kw.setdefault("no_worker_timeout", 10.0)
        extra = {k: kw.pop(k) for k in ("checkpoint", "validation_data", "job_id", "on_round")
                 if k in kw}
        job = FederatedJob(self.hub, model or mlp(), FederatedSettings("digits", **kw),
                           resolve(strategy), **extra)
        self.hub.add(job)
        return job.start()

    def add_worker(self, name: str, part: Path, attack: str | None = None,
                   **settings) -> ComputeWorker:
        w = ComputeWorker(self.net.broker(name), self.net.store(),
                          ComputeSettings(heartbeat_interval=0.2, **settings), None,
                          ComputeMetrics(), machine_info(with_tf=False),
                          datasets=load_datasets([f"digits={part}"], 0.1)).start()
        if attack is not None:
            rng = np.random.default_rng(1)
            w.federated.outgoing = lambda ws: tampered(ws, attack, rng)  # type: ignore
        self.workers.append(w)
        return w


def _grid(tmp_path: Path, alpha: float) -> Iterator[MemoryGrid]:
    net = MemoryNetwork()
    d = Dispatcher(net.broker("client")).start()
    g = MemoryGrid(net, [], d, FederatedHub(d, net.store(), FederatedMetrics()),
                   digits_parts(4, tmp_path, alpha=alpha))
    for i in range(3):
        g.add_worker(f"w{i}", g.parts[i])
    try:
        yield g
    finally:
        d.close()
        for w in g.workers:
            w.stop()


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[MemoryGrid]:
    """Three workers with Dirichlet(0.5) shares of digits; a fourth share left for tests."""
    yield from _grid(tmp_path, 0.5)


@pytest.fixture
def iid_grid(tmp_path: Path) -> Iterator[MemoryGrid]:
    """The same with near-IID shares (Dirichlet(100)): robust rules are then not also
    fighting label skew, so what a test measures is the attacker's effect."""
    yield from _grid(tmp_path, 100.0)


def test_three_workers_train_well_above_chance_and_history_is_complete(grid) -> None:
    job = grid.job(rounds=6, min_workers=3, validation_data=digits_test())
    model, history = job.result(120)
    h = history.history
    assert len(h["accuracy"]) == 6 and h["workers"] == [3.0] * 6
    assert h["val_accuracy"][-1] > 0.7, h["val_accuracy"]  # chance is 0.1
    assert h["val_accuracy"][-1] > h["val_accuracy"][0]
    # federated evaluation: every round's model, the last one by a final evaluation round
    assert all(np.isfinite(v) for v in h["eval_accuracy"]) and history.initial_eval
    assert set(history.rounds[0]["per_worker"]) == {"w0", "w1", "w2"}
    assert model.evaluate(*digits_test(), verbose=0)[1] == pytest.approx(
        h["val_accuracy"][-1], abs=1e-6)
    assert job.status == "done" and grid.hub.metrics.rounds.labels(
        outcome="completed")._value.get() == 6


def test_seeded_job_selects_the_same_workers(grid) -> None:
    a = grid.job(rounds=2, fraction=0.5)
    a.result(60)
    b = grid.job(rounds=2, fraction=0.5)
    b.result(60)
    assert [sorted(r["per_worker"]) for r in a.history.rounds] == \
        [sorted(r["per_worker"]) for r in b.history.rounds]
    assert all(r["asked"] == 2 for r in a.history.rounds)  # ceil(0.5 * 3), distinct


@pytest.mark.parametrize("attack,reason", [("nan", "nan"), ("wrong_shape", "wrong_shape")])
def test_bad_updates_are_rejected_and_the_job_completes(grid, attack, reason) -> None:
    grid.add_worker("bad", grid.parts[3], attack=attack)
    job = grid.job(rounds=3, min_workers=3, validation_data=digits_test())
    _, history = job.result(120)
    assert all(r["rejected"] == {"bad": reason} for r in history.rounds)
    # no training update of it counted (its evaluation claims are recorded, as anyone's)
    assert all("samples" not in r["per_worker"].get("bad", {}) for r in history.rounds)
    assert grid.hub.metrics.updates.labels(outcome="rejected", reason=reason)._value.get() >= 3
    assert history.history["val_accuracy"][-1] > 0.5


def test_krum_with_one_attacker_of_four_stays_near_the_clean_accuracy(iid_grid) -> None:
    grid = iid_grid
    clean = grid.job(rounds=6, min_workers=3, validation_data=digits_test()).result(120)[1]
    grid.add_worker("bad", grid.parts[3], attack="random")
    krum = Krum(m=2)  # Multi-Krum: the 2 most central of 4 updates, averaged
    _, history = grid.job(rounds=6, min_workers=4, strategy=krum,
                          validation_data=digits_test()).result(120)
    assert "bad" not in krum.last_selected
    _, fooled = grid.job(rounds=6, min_workers=4,
                         validation_data=digits_test()).result(120)  # FedAvg, attacked
    attacked = history.history["val_accuracy"][-1]
    reference = clean.history["val_accuracy"][-1]
    assert attacked > reference - 0.05, (attacked, reference)
    assert fooled.history["val_accuracy"][-1] < reference - 0.2  # the attack is real


def test_too_few_updates_fails_with_the_reasons(grid) -> None:
    job = grid.job(rounds=2, min_workers=4, no_worker_timeout=1.0)
    with pytest.raises(FederatedError, match="1 live worker|can train on dataset"):
        job.result(60)
    assert job.error is not None and job.error.reason == "no_workers"


def test_no_worker_has_the_dataset(grid) -> None:
    job = FederatedJob(grid.hub, mlp(), FederatedSettings("cifar", no_worker_timeout=1.0),
                       resolve(None))
    grid.hub.add(job)
    with pytest.raises(FederatedError, match=r"no dataset 'cifar' \(has \['digits'\]\)"):
        job.start().result(60)


def test_a_model_that_does_not_fit_the_data_is_not_sent(grid) -> None:
    import keras

    model = keras.Sequential([keras.Input(shape=(8,)), keras.layers.Dense(10)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    job = grid.job(model=model, no_worker_timeout=1.0)
    with pytest.raises(FederatedError, match=r"features of shape \(64,\), the model takes "
                       r"\(8,\)"):
        job.result(60)


def test_resume_continues_from_the_checkpoint_round(grid, tmp_path) -> None:
    ck = tmp_path / "run.ckpt"
    first = grid.job(rounds=2, checkpoint=ck, strategy="fedadam")
    first.result(60)
    again = grid.job(rounds=4, checkpoint=ck, strategy="fedadam")  # a new kernel, same file
    _, history = again.result(60)
    assert again.id == first.id
    assert [r["round"] for r in history.rounds] == [1, 2, 3, 4]
    assert history.rounds[:2] == first.history.rounds[:2] or \
        [r["round"] for r in history.rounds[:2]] == [1, 2]
    assert grid.hub.metrics.rounds.labels(outcome="completed")._value.get() == 4
    done = grid.job(rounds=4, checkpoint=ck)  # nothing left to do: no new round
    done.result(60)
    assert grid.hub.metrics.rounds.labels(outcome="completed")._value.get() == 4


def test_a_checkpoint_of_another_model_is_refused(grid, tmp_path) -> None:
    ck = tmp_path / "run.ckpt"
    grid.job(rounds=1, checkpoint=ck).result(60)
    with pytest.raises(CheckpointError, match="another model"):
        FederatedJob(grid.hub, mlp(hidden=8), FederatedSettings("digits"), resolve(None),
                     checkpoint=ck)
    (tmp_path / "junk.ckpt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a gridd federated checkpoint|unreadable"):
        FederatedJob(grid.hub, mlp(), FederatedSettings("digits"), resolve(None),
                     checkpoint=tmp_path / "junk.ckpt")


def test_cancel_ends_the_job_and_tells_followers(grid) -> None:
    follower = JobFollower(grid.hub, "to-cancel")
    job = grid.job(rounds=500, job_id="to-cancel",
                   on_round=lambda j, entry: j.cancel() if entry["round"] == 2 else None)
    with pytest.raises(JobCancelled):
        job.result(60)
    assert job.status == "cancelled" and job.round == 2
    assert follower.wait(timeout=5)["state"] == "cancelled"


def test_a_follower_sticks_to_one_owner(grid) -> None:
    follower = JobFollower(grid.hub, "shared-id")
    grid.hub.record("alice", {"job": "shared-id", "round": 1, "rounds": 3, "state": "running",
                              "model": "x", "dataset": "d", "strategy": "fedavg",
                              "workers": 2, "metrics": {"accuracy": 0.5}})
    grid.hub.record("mallory", {"job": "shared-id", "round": 3, "rounds": 3, "state": "done",
                                "model": "x", "dataset": "d", "strategy": "fedavg",
                                "workers": 2, "metrics": {"accuracy": 1.0}})
    assert follower.owner == "alice" and follower.ignored == 1
    assert follower.latest["round"] == 1 and not follower.finished


def test_settings_are_checked_before_anything_is_sent() -> None:
    for bad in ({"rounds": 0}, {"fraction": 0}, {"min_workers": 3, "max_workers": 2},
                {"round_timeout": -1}):
        with pytest.raises(ValueError):
            FederatedSettings("digits", **bad).validate()
    with pytest.raises(ValueError, match="dataset"):
        FederatedSettings("no spaces please").validate()


def test_a_lost_update_is_asked_for_again_not_waited_for(grid) -> None:
    from gridd.federated import messages as m
    from gridd.wire import decode

    lossy = grid.workers[0].federated
    send = lossy.publish
    lost: list[int] = []

    def drop_first_update(data: bytes) -> object:
        if decode(data).type == m.UPDATE and not lost:
            lost.append(1)  # pubsub lost it: the coordinator never hears this one
            return None
        return send(data)

    lossy.publish = drop_first_update  # type: ignore[method-assign]
    job = grid.job(rounds=2, min_workers=3, round_timeout=60)
    _, history = job.result(60)
    assert lost == [1]
    assert history.history["workers"] == [3.0, 3.0]
    assert history.rounds[0]["round_seconds"] < 10  # asked again after 2 s, not 60
    # only the worker that owed an answer was asked again; the others did not repeat theirs
    assert grid.hub.metrics.updates.labels(outcome="rejected",
                                           reason="duplicate")._value.get() == 0
