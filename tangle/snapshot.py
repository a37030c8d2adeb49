"""Snapshots: the recent part of a tangle, with its boundary treated as roots.

A peer's log of every transaction it accepted grows for ever, and so does the time to
replay it at start. A compacted log holds a snapshot instead: what the peer needs to go on.

What does a restarted peer need? Its walks start at particles at most a few dozen levels
below the tips and move towards the tips; its reference model is chosen among transactions
within REFERENCE_WINDOW of the tips. So it needs the recent window and nothing below it,
plus what it issued itself (it must never lose its own transactions). "Own transactions and
their ancestors" would not bound anything: the past cone of a recent transaction is nearly
the whole tangle, since every transaction approves (indirectly) almost everything older.

So a snapshot keeps every transaction within `depth` of the tips, the ones listed in `keep`
(the peer's own) and the genesis, and records the boundary:

* `below`: parents of kept transactions that were dropped. A restored tangle takes them as
  present (Tangle.extend_horizon), so kept transactions, and new ones that approve the
  boundary, enter without waiting for a history that is deliberately gone;
* `sealed`: kept transactions whose approvers were dropped (the genesis and old own
  transactions). Without their approvers they would look like tips; sealed, they are never
  tips and are at least `depth + 1` deep, so walk windows shallower than that leave them out.

Depth only grows as a tangle grows, so what is deeper than `depth` now stays deeper: a
snapshot at `depth` at least as large as every window the peer uses loses nothing it uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tangle.errors import TangleError
from tangle.graph import Tangle
from tangle.transaction import Transaction

SNAPSHOT_KEY = "tangle.snapshot"
"""The key of a compacted log's header frame (a transaction record never has it)."""


@dataclass(frozen=True)
class Horizon:
    """What a compacted log says about the transactions it no longer holds."""

    depth: int
    below: frozenset[str] = frozenset()
    sealed: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {SNAPSHOT_KEY: {"version": 1, "depth": self.depth, "below": sorted(self.below),
                               "sealed": dict(sorted(self.sealed.items()))}}

    @classmethod
    def from_dict(cls, data: Any) -> Horizon:
        """ValueError unless `data` is a header written by to_dict."""
        body = data.get(SNAPSHOT_KEY) if isinstance(data, dict) and len(data) == 1 else None
        if not isinstance(body, dict) or body.get("version") != 1:
            raise ValueError("not a tangle snapshot header")
        depth, below, sealed = body.get("depth"), body.get("below"), body.get("sealed")
        if not isinstance(depth, int) or not isinstance(below, list) \
                or not isinstance(sealed, dict):
            raise ValueError("malformed tangle snapshot header")
        if not all(isinstance(i, str) for i in below) or not all(
                isinstance(k, str) and isinstance(v, int) and v >= 1 for k, v in sealed.items()):
            raise ValueError("malformed tangle snapshot header")
        return cls(depth, frozenset(below), dict(sealed))


def take_snapshot(tangle: Tangle, depth: int,
                  keep: Iterable[str] = ()) -> tuple[Horizon, list[Transaction]]:
    """The transactions a compacted log keeps (parents first, genesis left out: it is the
    root every restore starts from) and its horizon; see the module docstring."""
    if depth < 1:
        raise ValueError("snapshot depth must be >= 1")
    window = tangle.window(depth)
    kept = set(window.order)
    kept.add(0)  # the genesis
    for tx_id in keep:
        if tx_id in tangle:
            kept.add(tangle.index_of(tx_id))
    kept_ids = {tangle.id_of(node) for node in kept}
    txs = [tangle.tx_at(node) for node in sorted(kept) if node != 0]  # insertion order
    below = frozenset(p for tx in txs for p in tx.parents if p not in kept_ids)
    floors = tangle.sealed
    sealed: dict[str, int] = {}
    for node in kept:
        if node in window:  # approvers are shallower: all of them are kept too
            continue
        tx_id = tangle.id_of(node)
        sealed[tx_id] = max(depth + 1, floors.get(tx_id, 0))
    return Horizon(depth, below, sealed), txs


def restore(tangle: Tangle, horizon: Horizon, txs: Iterable[Transaction]) -> None:
    """Replay a snapshot's transactions onto a fresh tangle (rooted at the same genesis).

    Duplicates and transactions the tangle refuses are skipped, as in `rebuild`.
    """
    tangle.extend_horizon(horizon.below)
    for tx in txs:
        try:
            tangle.add(tx)
        except TangleError:
            continue
    for tx_id, floor in horizon.sealed.items():
        if tx_id in tangle:
            tangle.seal(tx_id, floor)
