"""Fixtures of the compute tests: a module-wide grid of real daemons and worker processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from compute_helpers import Grid

from gridd.ipfs.cluster import LocalCluster


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    """3 connected daemons; a worker process on daemons 1 and 2; clients use daemon 0."""
    tmp = tmp_path_factory.mktemp("compute")
    cluster = LocalCluster(3).start()
    g = Grid(cluster, f"gridd-test-compute-{uuid.uuid4().hex[:8]}", [], tmp)
    try:
        for i in (1, 2):
            g.spawn(i)
        for w in g.workers:
            w.wait_ready()
        yield g
    finally:
        for w in g.workers:
            w.stop()
        cluster.stop()


@pytest.fixture(scope="session")
def digits_small() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from gridd.data import load_digits_split

    return load_digits_split()
