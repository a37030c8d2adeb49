"""What the web view shows, copied out of a TreePeer without slowing it down.

A TreePeer is single-threaded (its tangle has no locks), and the web server answers from
other threads. So the peer's own thread calls `TangleFeed.refresh()` (a node tick, or the
lab's loop), which copies what is new into structures the server threads only read:

- `rows`: one small dict per transaction, appended in tangle insertion order (which is
  topological) and never changed afterwards, so a row's position is its cursor;
- `measured`: accuracy on the viewer's validation data, by id (single writes and `.get` are
  atomic in CPython, so readers need no lock);
- `snapshot`: an immutable `Snapshot` (tips, reference set, peers, rejections, consensus
  history) replaced by one attribute assignment.

A refresh costs O(new transactions + tips + peers) and runs at most every `min_interval`
seconds; the consensus is recomputed at most every `consensus_every` seconds and only when
the tangle grew, with the feed's own random stream (the peer's seeded stream is untouched).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gridd.tree.peer import TreePeer

MAX_CLOCK_AHEAD = 600.0  # seconds: issue times further ahead are drawn at now + this
MAX_CONSENSUS_POINTS = 2_000
MAX_LAB_POINTS = 5_000
MAX_REJECTED_SHOWN = 50
MAX_TIPS_SHOWN = 1_000
RESCAN_RECENT = 500  # rows whose cached score is looked up again on each refresh
SCORE_BUDGET = 0.02  # seconds per refresh an observer spends scoring new transactions
SELF_REPORTED = "self-reported"
VALIDATION = "validation"


@dataclass(frozen=True)
class PeerRow:
    """One issuer as this viewer knows it."""

    peer: str
    transactions: int
    last_tx: str | None
    last_time: float | None
    last_accuracy: float | None
    vetted_out: int
    seen: float | None

    def to_json(self) -> dict[str, Any]:
        return {"peer": self.peer, "transactions": self.transactions, "last_tx": self.last_tx,
                "last_time": self.last_time, "last_accuracy": self.last_accuracy,
                "vetted_out": self.vetted_out, "seen": self.seen}


@dataclass(frozen=True)
class Snapshot:
    """An immutable copy of everything but the rows; replaced as a whole."""

    count: int = 0
    updated: float = 0.0
    tips: frozenset[str] = frozenset()
    reference: tuple[str, ...] = ()
    consensus: tuple[dict[str, Any], ...] = ()
    peers: tuple[PeerRow, ...] = ()
    rejected_by_reason: dict[str, float] = field(default_factory=dict)
    rejected_recent: tuple[dict[str, str], ...] = ()
    pending: int = 0
    accuracy_source: str = SELF_REPORTED
    vet_ratio: float = 0.0


@dataclass
class _IssuerStats:
    transactions: int = 0
    last_tx: str | None = None
    last_time: float | None = None
    last_accuracy: float | None = None


class TangleFeed:
    """See the module docstring. `refresh()` only from the peer's own thread."""

    def __init__(self, peer: TreePeer, *, score_new: bool | None = None,
                 min_interval: float = 0.5, consensus_every: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.peer = peer
        self.peer_id = peer.peer_id
        self.genesis_id = peer.genesis_id
        self.min_interval = min_interval
        self.consensus_every = consensus_every
        self.clock = clock
        # An observer has time to spare; a training peer only shows scores it made anyway.
        self.score_new = peer.observer if score_new is None else score_new
        self.rows: list[dict[str, Any]] = []
        self.measured: dict[str, float] = {}
        self.snapshot = Snapshot()
        self.lab_test: list[dict[str, float]] = []  # held-out accuracy, set by the lab
        self.lab_baseline: list[dict[str, float]] = []  # FedAvg on the same data
        self.lab_info: dict[str, Any] = {}
        self._rng = random.Random(0x5EE)
        self._issuers: dict[str, _IssuerStats] = {}
        self._unscored: deque[str] = deque(maxlen=10_000)
        self._consensus: deque[dict[str, Any]] = deque(maxlen=MAX_CONSENSUS_POINTS)
        self._last_refresh = -math.inf
        self._last_consensus = -math.inf
        self._consensus_version = -1
        self._reference: tuple[str, ...] = ()
        self.refresh_seconds = 0.0  # total time spent in refresh (the view's cost)

    # -- writer side (the peer's thread) ---------------------------------------------------

    def refresh(self, force: bool = False) -> bool:
        """Copy what changed since the last refresh; False when it was too early."""
        now = time.monotonic()
        if not force and now - self._last_refresh < self.min_interval:
            return False
        self._last_refresh = now
        started = time.perf_counter()
        tangle = self.peer.tangle
        for node in range(len(self.rows), len(tangle)):
            self._ingest(node)
        self._score(started)
        if (tangle.version != self._consensus_version
                and now - self._last_consensus >= self.consensus_every) or force:
            self._update_consensus()
            self._last_consensus = now
            self._consensus_version = tangle.version
        self.snapshot = self._make_snapshot()
        self.refresh_seconds += time.perf_counter() - started
        return True

    def add_lab_point(self, client_epochs: int, accuracy: float, seconds: float,
                      transactions: int) -> None:
        """The lab's held-out test accuracy at this point (shown under the tangle)."""
        if len(self.lab_test) < MAX_LAB_POINTS and math.isfinite(accuracy):
            self.lab_test.append({"client_epochs": client_epochs, "accuracy": accuracy,
                                  "seconds": seconds, "transactions": transactions})

    def set_baseline(self, points: list[tuple[int, float]], label: str) -> None:
        self.lab_baseline = [{"client_epochs": e, "accuracy": a} for e, a in points]
        self.lab_info["baseline"] = label

    def _ingest(self, node: int) -> None:
        tangle = self.peer.tangle
        tx = tangle.tx_at(node)
        reported = tx.metadata.get("accuracy")
        if isinstance(reported, bool) or not isinstance(reported, (int, float)) \
                or not math.isfinite(reported):
            reported = None
        links = [tangle.index_of(p) for p in tx.parents if p in tangle]
        # created_at is the issuer's claim: a time far in the future (or before 1970) would
        # squeeze everyone else's transactions into a corner of the time axis, so it is
        # drawn at the nearest sane time and the claim kept next to it.
        shown = min(max(tx.created_at, 0.0), self.clock() + MAX_CLOCK_AHEAD)
        self.rows.append({
            "i": node, "id": tx.id, "issuer": tx.issuer, "t": shown,
            "t_claimed": None if shown == tx.created_at else tx.created_at,
            "parents": list(tx.parents), "p": links, "h": tangle.height(tx.id),
            "cid": tx.weights_cid, "reported": reported,
            "epochs": tx.metadata.get("client_epochs"),
            "own": tx.issuer == self.peer_id,
        })
        stats = self._issuers.get(tx.issuer)
        if stats is None:
            stats = self._issuers[tx.issuer] = _IssuerStats()
        stats.transactions += 1
        stats.last_tx, stats.last_time, stats.last_accuracy = tx.id, shown, reported
        if node > 0:
            self._unscored.append(tx.id)

    def _score(self, started: float) -> None:
        """Pick up scores the peer made; an observer also scores new ones, newest first,
        within SCORE_BUDGET seconds."""
        peer = self.peer
        for row in self.rows[-RESCAN_RECENT:]:
            if row["id"] not in self.measured:
                value = peer.measured_accuracy(row["id"])
                if value is not None:
                    self.measured[row["id"]] = value
        if not self.score_new:
            return
        while self._unscored and time.perf_counter() - started < SCORE_BUDGET:
            tx_id = self._unscored.pop()
            if tx_id in self.measured:
                continue
            value = peer.measured_accuracy(tx_id, compute=True)
            if value is not None:
                self.measured[tx_id] = value

    def _update_consensus(self) -> None:
        peer = self.peer
        try:
            ids = tuple(peer.reference_ids(rng=self._rng))
        except Exception:  # a tangle with nothing loadable yet: keep the last one
            return
        self._reference = ids
        accuracy, source = None, SELF_REPORTED
        try:
            scores = peer.evaluate(peer.average(ids)) if ids else None
        except Exception:
            scores = None
        if scores is not None:
            accuracy, source = float(scores.accuracy), VALIDATION
        else:
            reported = [r for r in (self._row(i).get("reported") for i in ids) if r is not None]
            accuracy = sum(reported) / len(reported) if reported else None
        if accuracy is not None and math.isfinite(accuracy):
            self._consensus.append({"time": self.clock(), "accuracy": accuracy,
                                    "transactions": len(peer.tangle), "source": source})

    def _row(self, tx_id: str) -> dict[str, Any]:
        node = self.peer.tangle.index_of(tx_id)
        return self.rows[node] if node < len(self.rows) else {}

    def _make_snapshot(self) -> Snapshot:
        peer = self.peer
        tangle = peer.tangle
        consensus = tuple(self._consensus)
        source = consensus[-1]["source"] if consensus else (
            VALIDATION if peer.dataset is not None else SELF_REPORTED)
        ratio = peer.settings.vet_ratio
        vetted: dict[str, int] = {}
        if peer.dataset is not None:  # O(measured), not O(tangle): few are measured
            for tx_id in list(self.measured):
                row = self._row(tx_id)
                if row and vetted_out(row, self.rows, self.measured, ratio):
                    vetted[row["issuer"]] = vetted.get(row["issuer"], 0) + 1
        seen = dict(peer.counters.peers_seen)
        names = set(self._issuers) | set(seen)
        peers = []
        for name in names:
            stats = self._issuers.get(name, _IssuerStats())
            peers.append(PeerRow(name, stats.transactions, stats.last_tx, stats.last_time,
                                 stats.last_accuracy, vetted.get(name, 0), seen.get(name)))
        peers.sort(key=lambda p: (-p.transactions, p.peer))
        rejected = list(peer.builder.rejected.items())[-MAX_REJECTED_SHOWN:]
        return Snapshot(
            count=len(self.rows), updated=self.clock(),
            tips=frozenset(tangle.tips()[-MAX_TIPS_SHOWN:]), reference=self._reference,
            consensus=consensus, peers=tuple(peers),
            rejected_by_reason=_rejections(peer),
            rejected_recent=tuple({"id": i, "reason": r} for i, r in rejected),
            pending=tangle.pending_count, accuracy_source=source, vet_ratio=ratio,
        )


def _rejections(peer: TreePeer) -> dict[str, float]:
    """gridd_tx_rejected_total by reason, from the peer's metrics registry."""
    out: dict[str, float] = {}
    for family in peer.metrics.tx_rejected.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.value:
                out[sample.labels.get("reason", "")] = sample.value
    return out


def vetted_out(row: dict[str, Any], rows: list[dict[str, Any]], measured: dict[str, float],
               ratio: float) -> bool:
    """Would a peer with the viewer's data vet this transaction out? True when, measured
    on that data, it does worse than VET_RATIO times the best of the parents it approves
    (it made the model it started from clearly worse: noise, poison, a bad update)."""
    mine = measured.get(row["id"])
    if mine is None or not row["p"]:
        return False
    parents = [measured.get(rows[i]["id"]) for i in row["p"] if i < len(rows)]
    known = [v for v in parents if v is not None]
    return bool(known) and mine < ratio * max(known)
