"""Issue 11 against real Kubo, through `Client(api)` and `gridd compute workers`: a job no
worker can take is refused before upload and leaves nothing pinned; a job's uploads are
unpinned when it ends, a sweep's data when the sweep ends; no workers fails after
Client(no_worker_timeout=...) with the causes.

One daemon: the notebook and an in-process worker (Keras, a small byte limit) are distinct
peers on it, as on a newcomer's machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from click.testing import CliRunner
from compute_helpers import mlp
from test_compute_protocol import INFO

from gridd import Client
from gridd.cli import main as gridd_cli
from gridd.compute.checks import WorkerLimitError
from gridd.compute.dispatch import JobFailed
from gridd.compute.settings import ComputeSettings
from gridd.compute.trainer import KerasTrainer
from gridd.compute.worker import ComputeWorker
from gridd.ipfs import KuboClient
from gridd.ipfs.cluster import LocalCluster
from gridd.metrics import ComputeMetrics
from gridd.transport import IpfsBroker, IpfsStore

pytestmark = [pytest.mark.kubo, pytest.mark.tf]

LIMIT = 256 * 1024  # the worker's max_job_bytes: a digits-sized x (920 kB) is over it


@pytest.fixture(scope="module")
def daemon() -> Iterator[tuple[str, str, str]]:
    """(api, topic, worker peer id): one daemon, one in-process worker with a small limit."""
    cluster = LocalCluster(1).start()
    api = cluster.clients[0].address.multiaddr
    topic = f"gridd-test-client-{uuid.uuid4().hex[:8]}"
    kubo = KuboClient(api)
    settings = ComputeSettings(topic=topic, max_job_bytes=LIMIT, max_epochs=50,
                               heartbeat_interval=0.5)
    worker = ComputeWorker(IpfsBroker(kubo), IpfsStore(kubo), settings, KerasTrainer(),
                           ComputeMetrics(), INFO).start()
    try:
        yield api, topic, worker.peer_id
    finally:
        worker.stop()
        kubo.close()
        cluster.stop()


def test_refused_before_upload_leaves_nothing_pinned(daemon) -> None:
    api, topic, worker_id = daemon
    x, y = np.random.default_rng(0).random((1797, 64)), np.arange(1797) % 10
    with Client(api, topic=topic, no_worker_timeout=20) as grid:
        table = grid.workers(wait=1.5)
        assert [r["peer_id"] for r in table] == [worker_id]
        assert (table[0]["max_job_mb"], table[0]["max_epochs"]) == (0.2, 50)
        before = grid.kubo.pin_ls()
        with pytest.raises(WorkerLimitError, match="over the largest max_job_bytes") as err:
            grid.fit(mlp(), x, y, epochs=1, progress=False)
        assert err.value.allowed == LIMIT and err.value.needed > x.nbytes
        assert grid.kubo.pin_ls() == before
        # a job that fits runs, and its uploads are unpinned once it is done
        job = grid.fit(mlp(), x[:40], y[:40], epochs=2, wait=False, progress=False)
        assert set(job.uploads) <= grid.kubo.pin_ls()
        assert job.wait(30) and job.status == "done", job.remote.error
        assert job.unpinned.wait(10)
        after = grid.kubo.pin_ls()
        assert not set(job.uploads) & after
        assert after - before <= {job.remote.result_cid}  # the worker's result (same daemon)


def test_a_sweeps_data_is_unpinned_when_the_sweep_ends(daemon) -> None:
    api, topic, _ = daemon
    x, y = np.random.default_rng(1).random((260, 64)), np.arange(260) % 10
    with Client(api, topic=topic) as grid:
        before = grid.kubo.pin_ls()
        result = grid.sweep(lambda hidden: mlp(hidden), {"hidden": [8, 16]}, x[:200], y[:200],
                            epochs=1, validation_data=(x[200:], y[200:]), progress=False)
        assert [r["status"] for r in result.table] == ["done", "done"]
        assert all(t.job is not None and t.job.unpinned.wait(10) for t in result.trials)
        assert grid.uploader.pinned() == {}
        results = {t.job.remote.result_cid for t in result.trials if t.job is not None}
        assert grid.kubo.pin_ls() - before <= results  # trained models only, no uploads


def test_no_workers_fails_after_the_clients_timeout_with_the_causes(daemon) -> None:
    api, topic, _ = daemon
    empty = topic + "-nobody"
    with Client(api, topic=empty, no_worker_timeout=1.0) as grid:
        before = grid.kubo.pin_ls()
        with pytest.raises(JobFailed) as err:
            grid.fit(mlp(), np.zeros((10, 64)), np.zeros(10), epochs=1, progress=False)
        assert grid.kubo.pin_ls() == before
    assert err.value.reason == "no_workers" and "for 1s" in err.value.message
    for cause in ("start_worker --compute", "GRIDD_COMPUTE_TOPIC", repr(empty), "gridd peers"):
        assert cause in err.value.message


def test_cli_lists_workers_with_their_limits(daemon) -> None:
    api, topic, worker_id = daemon
    runner = CliRunner()
    out = runner.invoke(gridd_cli, ["compute", "workers", "--api", api, "--topic", topic,
                                    "--wait", "1.5"])
    assert out.exit_code == 0, out.output
    assert worker_id in out.output and "max_job_mb" in out.output
    assert "max_params" in out.output
    none = runner.invoke(gridd_cli, ["compute", "workers", "--api", api, "--topic",
                                     topic + "-nobody", "--wait", "0.5"])
    assert none.exit_code == 0 and "start_worker --compute" in none.output
