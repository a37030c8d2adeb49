"""Shared builders and brute-force oracles for the tangle tests.

The oracles work on a plain {id: parents} map with naive set traversals, deliberately
sharing no code with the library, so a test compares two independent computations.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from hypothesis import strategies as st

from tangle import Tangle, Transaction


def make_tx(parents: Iterable[str], i: int, **fields: object) -> Transaction:
    """A transaction with unique content per i (so ids never collide)."""
    values: dict[str, object] = {
        "weights_cid": f"bafy-{i}",
        "issuer": f"peer-{i % 3}",
        "created_at": float(i),
        "tag": f"round-{i // 5}",
        "metadata": {"accuracy": (i % 10) / 10},
    }
    values.update(fields)
    return Transaction.create(tuple(parents), **values)  # type: ignore[arg-type]


def genesis() -> Transaction:
    return Transaction.genesis("bafy-genesis")


def chain(length: int) -> tuple[Tangle, list[Transaction]]:
    """genesis <- t1 <- t2 ... : `length` transactions in all."""
    txs = [genesis()]
    for i in range(1, length):
        txs.append(make_tx((txs[-1].id,), i))
    tangle = Tangle(txs[0])
    for tx in txs[1:]:
        tangle.add(tx)
    return tangle, txs


def random_dag(rng: random.Random, size: int, max_parents: int = 3) -> list[Transaction]:
    """A random DAG in creation order: each new tx approves 1..max_parents earlier ones."""
    txs = [genesis()]
    for i in range(1, size):
        k = rng.randint(1, min(max_parents, len(txs)))
        parents = rng.sample([tx.id for tx in txs], k)
        txs.append(make_tx(parents, i))
    return txs


@st.composite
def dags(draw: st.DrawFn, max_size: int = 30) -> list[Transaction]:
    """Hypothesis strategy: random DAGs (creation order), shrinking towards small ones."""
    size = draw(st.integers(min_value=1, max_value=max_size))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    return random_dag(random.Random(seed), size)


def build(txs: Sequence[Transaction]) -> Tangle:
    tangle = Tangle(txs[0])
    for tx in txs[1:]:
        tangle.add(tx)
    return tangle


# ------------------------------------------------------------------ oracles
def parent_map(txs: Iterable[Transaction]) -> dict[str, tuple[str, ...]]:
    return {tx.id: tx.parents for tx in txs}


def children_map(parents: dict[str, tuple[str, ...]]) -> dict[str, set[str]]:
    children: dict[str, set[str]] = {x: set() for x in parents}
    for x, ps in parents.items():
        for p in ps:
            children[p].add(x)
    return children


def reach(start: str, links: dict[str, set[str]] | dict[str, tuple[str, ...]]) -> set[str]:
    """Everything reachable from start (excluded) by following links, naively."""
    found: set[str] = set()
    frontier = set(links[start])
    while frontier:
        found |= frontier
        frontier = {y for x in frontier for y in links[x]} - found
    return found


def longest(start: str, links: dict[str, set[str]] | dict[str, tuple[str, ...]]) -> int:
    """Longest path length from start following links (by repeated relaxation)."""
    level = 0
    frontier = {start}
    while True:
        frontier = {y for x in frontier for y in links[x]}
        if not frontier:
            return level
        level += 1
