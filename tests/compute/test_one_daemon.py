"""One Kubo daemon per machine is the normal case: a notebook and two compute workers on
the same daemon are three distinct peers, see each other, and train (issue: workers on
the notebook's own daemon were invisible, dropped as the notebook's own echo)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from compute_helpers import mlp

from gridd import Client
from gridd.compute.local import WorkerProcess
from gridd.ipfs.cluster import LocalCluster

pytestmark = [pytest.mark.kubo, pytest.mark.tf]


@pytest.fixture(scope="module")
def one_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list]]:
    tmp = tmp_path_factory.mktemp("one-daemon")
    cluster = LocalCluster(1).start()
    api = cluster.clients[0].address.multiaddr
    workers = [WorkerProcess(api, "gridd-test-one-daemon").start(tmp) for _ in range(2)]
    try:
        for w in workers:
            w.wait_ready()
        yield api, workers
    finally:
        for w in workers:
            w.stop()
        cluster.stop()


def test_notebook_and_two_workers_on_one_daemon(one_daemon, digits_small,
                                                tmp_path: Path) -> None:
    api, workers = one_daemon
    x, y, _, _ = digits_small
    with Client(api, topic="gridd-test-one-daemon") as grid:
        table = grid.workers(wait=30, min_workers=2)
        ids = {row["peer_id"] for row in table}
        assert len(ids) == 2 and grid.peer_id not in ids
        daemon = grid.kubo.id().peer_id
        assert daemon not in ids and grid.peer_id != daemon  # role keys, not the daemon's
        trained, history = grid.fit(mlp(), x, y, epochs=1, progress=False, timeout=120)
        assert len(history.history["loss"]) == 1 and history.worker in ids
