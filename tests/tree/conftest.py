"""Fixtures for tree-mode tests: digits shards, a genesis, peers on one MemoryNetwork."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from tree_helpers import DIGITS, make_peer

from gridd.data import Dataset, dirichlet_partition, load_digits_split
from gridd.transport import MemoryNetwork
from gridd.tree.genesis import create_genesis
from gridd.tree.peer import TreePeer


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return load_digits_split()


@pytest.fixture(scope="session")
def shards(digits: tuple[np.ndarray, ...]) -> list[Dataset]:
    """Four non-IID shards of the digits training split, each with its own validation part."""
    x, y = digits[0], digits[1]
    out = []
    for idx in dirichlet_partition(y, 4, alpha=1.0, seed=0):
        cut = int(len(idx) * 0.8)
        out.append(Dataset(x[idx[:cut]], y[idx[:cut]], x[idx[cut:]], y[idx[cut:]]))
    return out


@pytest.fixture
def memnet() -> MemoryNetwork:
    return MemoryNetwork()


@pytest.fixture
def genesis_id(memnet: MemoryNetwork) -> str:
    return create_genesis(memnet.store(), DIGITS, init_seed=3)


@pytest.fixture
def peers_factory(memnet: MemoryNetwork, genesis_id: str, shards: list[Dataset]
                  ) -> Iterator[Callable[..., TreePeer]]:
    made: list[TreePeer] = []

    def make(i: int, dataset: Dataset | None | str = "shard", **kw: object) -> TreePeer:
        data = shards[i % len(shards)] if dataset == "shard" else dataset
        peer = make_peer(genesis_id, memnet.broker(f"peer{i}"), memnet.store(),
                         data, seed=i, **kw)  # type: ignore[arg-type]
        made.append(peer)
        return peer

    yield make
    for p in made:
        p.close()
