"""Applies the retention policy to a running tree peer: unpins weights, compacts its log.

Unpinning takes Kubo RPCs, so it never runs on the message loop: the peer's pins are
listed in the node's fetch pool, the decision (gridd.tree.retention, which reads the
tangle) is made on the loop thread when the listing comes back, and the unpinning runs in
the pool again, within a deadline (what is left waits for the next round). The log is
compacted on the loop thread (a local file of the recent window, written once past
LOG_COMPACT_BYTES): see tangle.snapshot for what a compacted log keeps and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gridd import pins
from gridd.runtime import FetchResult, Node
from gridd.transport import Store
from gridd.tree import retention
from tangle import Tangle, TangleLog, take_snapshot

log = logging.getLogger(__name__)

SENDER = "gridd:retention"  # fetch-pool attribution: its own share, not the builder's
LIST_KEY = ("retention", "list")
UNPIN_KEY = ("retention", "unpin")


@dataclass(frozen=True)
class PruneReport:
    """One application of the policy: weights pins seen, kept, unpinned, failed."""

    pinned: int
    kept: int
    unpinned: int = 0
    failed: int = 0


class StorageKeeper:
    """Retention and log compaction for one peer of one tangle; see the module docstring."""

    def __init__(self, *, genesis_id: str, peer_id: str, store: Store, node: Node,
                 policy: retention.Policy, txlog: TangleLog | None, compact_bytes: int,
                 timeout: float = 60.0) -> None:
        self.peer_id = peer_id
        self.store = store
        self.node = node
        self.policy = policy
        self.txlog = txlog
        self.compact_bytes = compact_bytes
        self.timeout = timeout
        self.prefix = pins.tree_prefix(genesis_id)
        # others' own weights (peers of this tangle sharing the daemon) are theirs to judge
        self.names = (pins.tree(genesis_id, "weights"), pins.own(genesis_id, peer_id))
        self.last: PruneReport | None = None
        self.compactions = 0
        self._compacted_size = 0
        self._warned = False
        if policy.enabled and policy.window < policy.needed:
            log.warning("RETENTION_WINDOW %d is shallower than the %d levels this peer reads "
                        "weights from: it will fetch unpinned weights again", policy.window,
                        policy.needed)

    @property
    def enabled(self) -> bool:
        return self.policy.enabled

    # -- weights ---------------------------------------------------------------------------

    def prune(self, tangle: Tangle, own_ids: Callable[[], Sequence[str]]) -> bool:
        """Start one round (list, decide, unpin); False if off or a round is still busy."""
        if not self.enabled:
            return False
        fetcher = self.node.fetcher
        if fetcher.busy(LIST_KEY) or fetcher.busy(UNPIN_KEY):
            return False

        def listed(result: FetchResult) -> None:
            self._decide(result, tangle, own_ids())

        return self.node.fetch(LIST_KEY, lambda _left: self.store.pins(self.prefix),
                               timeout=self.timeout, done=listed, sender=SENDER) is None

    def _decide(self, result: FetchResult, tangle: Tangle, own_ids: Sequence[str]) -> None:
        if not result.ok:
            if not self._warned:
                self._warned = True
                log.warning("retention: cannot list pins (%s); will retry", result.error)
            return
        listed: dict[str, str] = result.value
        keep = retention.keep_weights(tangle, own_ids, self.policy)
        drop = retention.to_unpin(listed, keep, self.names)
        mine = sum(1 for name in listed.values() if name in self.names)
        self.last = PruneReport(mine, mine - len(drop))
        if not drop:
            return
        self.node.fetch(UNPIN_KEY, lambda left: self._unpin(drop, left), timeout=self.timeout,
                        done=self._unpinned, sender=SENDER)

    def _unpin(self, cids: list[str], left: float) -> tuple[int, int]:
        deadline = time.monotonic() + left
        done = failed = 0
        for cid in cids:
            if time.monotonic() >= deadline:
                break  # the rest waits for the next round
            try:
                self.store.unpin(cid)
                done += 1
            except Exception as e:  # already unpinned by hand, daemon restarting, ...
                failed += 1
                log.debug("retention: could not unpin %s: %s", cid, e)
        return done, failed

    def _unpinned(self, result: FetchResult) -> None:
        if not result.ok:
            log.warning("retention: unpinning failed: %s", result.error)
            return
        done, failed = result.value
        last = self.last or PruneReport(0, 0)
        self.last = PruneReport(last.pinned, last.kept, done, failed)
        log.info("retention: unpinned %d weights blobs, kept %d (window %d)", done, last.kept,
                 self.policy.window)

    # -- the log ---------------------------------------------------------------------------

    def maybe_compact(self, tangle: Tangle, force: bool = False) -> bool:
        """Compact tangle.log if it grew past LOG_COMPACT_BYTES (and twice its last compacted
        size, so a log that stays big after compaction is not rewritten on every call)."""
        if not self.enabled or self.txlog is None or (self.compact_bytes <= 0 and not force):
            return False
        size = self.txlog.size()
        if not force and size <= max(self.compact_bytes, 2 * self._compacted_size):
            return False
        own = [tx.id for tx in tangle.transactions() if tx.issuer == self.peer_id]
        horizon, txs = take_snapshot(tangle, self.policy.log_depth, own)
        self._compacted_size = self.txlog.compact(horizon, txs)
        self.compactions += 1
        log.info("compacted tangle.log: %d -> %d bytes (%d transactions, %d own, depth %d)",
                 size, self._compacted_size, len(txs), len(own), horizon.depth)
        return True
