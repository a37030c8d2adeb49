"""Federated jobs against real Kubo daemons and real `start_worker --compute` processes."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fed_helpers import digits_parts, digits_test, mlp

from gridd import Client
from gridd.compute.local import WorkerProcess
from gridd.ipfs.cluster import LocalCluster
from gridd.strategies import Krum

pytestmark = [pytest.mark.kubo, pytest.mark.tf, pytest.mark.slow]


class FedGrid:
    """Daemon 0: the notebook. Daemons 1-3: one honest worker each, keeping a Dirichlet(0.5)
    share of digits as `digits` and a near-IID one as `iid`. Daemon 3 hosts extra workers."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cluster = LocalCluster(4).start()
        self.topic = f"gridd-test-fed-{uuid.uuid4().hex[:8]}"
        (tmp / "skewed").mkdir()
        (tmp / "iid").mkdir()
        self.skewed = digits_parts(4, tmp / "skewed", alpha=0.5)
        self.iid = digits_parts(4, tmp / "iid", alpha=100.0)
        self.workers: list[WorkerProcess] = []
        self.extra: list[WorkerProcess] = []

    def spawn(self, daemon: int, part: int, attack: str | None = None) -> WorkerProcess:
        program = None if attack is None else [
            sys.executable, "-m", "gridd.bench.fed_attacker", "--attack", attack]
        args = ["--dataset", f"digits={self.skewed[part]}", "--dataset", f"iid={self.iid[part]}"]
        return WorkerProcess(self.cluster.clients[daemon].address.multiaddr, self.topic, args,
                             program=program).start(self.tmp)

    def client(self, daemon: int = 0, **kw) -> Client:
        return Client(self.cluster.clients[daemon].address.multiaddr, topic=self.topic, **kw)

    def stop_extra(self) -> None:
        for w in self.extra:
            w.stop()
        self.extra.clear()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FedGrid]:
    g = FedGrid(tmp_path_factory.mktemp("federated"))
    try:
        g.workers = [g.spawn(i, i - 1) for i in (1, 2, 3)]
        for w in g.workers:
            w.wait_ready()
        yield g
    finally:
        for w in g.workers + g.extra:
            w.stop()
        g.cluster.stop()


@pytest.fixture
def extra(fed: FedGrid) -> Iterator[FedGrid]:
    try:
        yield fed
    finally:
        fed.stop_extra()


def test_three_workers_train_and_a_third_party_follows(fed: FedGrid) -> None:
    with fed.client() as grid, fed.client(3) as watcher:
        table = grid.workers(wait=10, min_workers=3)
        assert all("digits(" in row["datasets"] for row in table)  # described, never sent
        port = grid.serve_metrics()
        job = grid.federated_fit(mlp(), "digits", rounds=6, batch_size=16, min_workers=3,
                                 validation_data=digits_test(), wait=False)
        follower = watcher.follow(job.id)
        model, history = job.result(300)
        acc = history.history["val_accuracy"]
        assert acc[-1] > 0.7, acc  # chance: 0.1
        assert history.history["workers"] == [3.0] * 6
        assert np.isfinite(history.history["eval_accuracy"]).all()
        last = follower.wait(timeout=30)
        assert last is not None and last["state"] == "done" and last["round"] == 6
        assert follower.owner == grid.peer_id
        followed = follower.model()
        assert followed.evaluate(*digits_test(), verbose=0)[1] == pytest.approx(acc[-1],
                                                                                abs=1e-6)
        rows = [r for r in grid.jobs() if r["job"] == job.id]
        assert rows and rows[0]["status"] == "done" and rows[0]["kind"] == "federated"
        assert any(r["job"] == job.id for r in watcher.jobs())  # seen through its progress
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'gridd_fed_rounds_total{outcome="completed"} 6.0' in metrics
        assert model.evaluate(*digits_test(), verbose=0)[1] == pytest.approx(acc[-1], abs=1e-6)


def test_a_worker_killed_mid_round_does_not_stop_the_job(extra: FedGrid) -> None:
    doomed = extra.spawn(3, 3)
    extra.extra.append(doomed)
    doomed.wait_ready()
    with extra.client() as grid:
        grid.workers(wait=10, min_workers=4)

        def kill_after_round_2(job, entry) -> None:
            if entry["round"] == 2:
                doomed.kill()  # its ads stop; it is still chosen for round 3 and never answers

        _, history = grid.federated_fit(
            mlp(), "digits", rounds=5, batch_size=16, min_workers=3, progress=False,
            round_timeout=60, on_round=kill_after_round_2)
    workers = history.history["workers"]
    assert workers[:2] == [4.0, 4.0] and workers[2:] == [3.0, 3.0, 3.0], workers
    assert history.rounds[2]["asked"] == 4  # the dead worker was asked, and not waited for
    assert history.rounds[2]["round_seconds"] < 30


@pytest.mark.parametrize("attack,reason", [("nan", "nan"), ("wrong_shape", "wrong_shape")])
def test_nan_or_wrong_shape_updates_are_rejected_and_the_job_completes(
        extra: FedGrid, attack: str, reason: str) -> None:
    bad = extra.spawn(3, 3, attack=attack)
    extra.extra.append(bad)
    bad.wait_ready()
    with extra.client() as grid:
        grid.workers(wait=10, min_workers=4)
        _, history = grid.federated_fit(mlp(), "digits", rounds=3, batch_size=16,
                                        min_workers=3, progress=False,
                                        validation_data=digits_test())
        refused = grid.metrics.updates.labels(outcome="rejected", reason=reason)._value.get()
    assert refused == 3
    assert all(list(r["rejected"].values()) == [reason] for r in history.rounds)
    assert history.history["workers"] == [3.0, 3.0, 3.0]
    assert history.history["val_accuracy"][-1] > 0.5


def test_a_resumed_job_continues_from_its_checkpoint_round(fed: FedGrid, tmp_path) -> None:
    ck = tmp_path / "run.ckpt"
    with fed.client() as grid:
        first = grid.federated_fit(mlp(), "digits", rounds=2, batch_size=16, min_workers=3,
                                   checkpoint=ck, wait=False)
        first.result(300)
    # a new kernel: a new Client, the same model code and the same checkpoint path
    with fed.client() as grid:
        again = grid.federated_fit(mlp(), "digits", rounds=4, batch_size=16, min_workers=3,
                                   checkpoint=ck, wait=False, validation_data=digits_test())
        _, history = again.result(300)
        completed = grid.metrics.rounds.labels(outcome="completed")._value.get()
    assert again.id == first.id
    assert [r["round"] for r in history.rounds] == [1, 2, 3, 4]
    assert history.rounds[0]["train"] == first.history.rounds[0]["train"]
    assert completed == 2  # only rounds 3 and 4 ran in the new session
    assert history.history["val_accuracy"][-1] > 0.5


def test_krum_with_one_attacker_of_four_stays_near_the_clean_accuracy(extra: FedGrid) -> None:
    with extra.client() as grid:
        grid.workers(wait=10, min_workers=3)
        _, clean = grid.federated_fit(mlp(), "iid", rounds=10, batch_size=16, min_workers=3,
                                      progress=False, validation_data=digits_test())
    bad = extra.spawn(3, 3, attack="random")
    extra.extra.append(bad)
    bad.wait_ready()
    with extra.client() as grid:
        grid.workers(wait=10, min_workers=4)
        krum = Krum(m=2)
        _, attacked = grid.federated_fit(mlp(), "iid", rounds=10, batch_size=16, min_workers=4,
                                         strategy=krum, progress=False,
                                         validation_data=digits_test())
    reference = clean.history["val_accuracy"][-1]
    got = attacked.history["val_accuracy"][-1]
    # Multi-Krum averages 2 of the 3 honest updates, so it learns a little slower than clean
    # FedAvg over 3 (a CI run at 6 rounds: 0.825 vs 0.881); plain FedAvg under the same
    # attack falls to chance (test_federated_memory, the benchmark: 0.20)
    assert got > 0.8 and got > reference - 0.06, (got, reference)
    assert len(krum.last_selected) == 2 and all(
        s in {w for r in clean.rounds for w in r["per_worker"]} for s in krum.last_selected)
