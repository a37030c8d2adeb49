"""Shared fixtures: real Kubo daemons on 127.0.0.1 (test profile, random ports)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from gridd.ipfs.cluster import LocalCluster
from gridd.ipfs.daemon import KuboNotInstalled, find_ipfs


def _require_kubo() -> None:
    try:
        find_ipfs()
    except KuboNotInstalled as e:  # ./bin/test installs it; a bare pytest run may not have it
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def kubo3() -> Iterator[LocalCluster]:
    """Three connected daemons shared by the tests that do not restart them."""
    _require_kubo()
    with LocalCluster(3) as cluster:
        yield cluster


@pytest.fixture
def kubo_cluster() -> Iterator[Callable[[int], LocalCluster]]:
    """Factory for a private cluster of N daemons, torn down after the test."""
    _require_kubo()
    made: list[LocalCluster] = []

    def make(n: int) -> LocalCluster:
        c = LocalCluster(n).start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def topic() -> str:
    return f"gridd-test-{uuid.uuid4().hex[:12]}"
