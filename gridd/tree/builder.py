"""Brings transactions from the network into a peer's tangle, only when they are complete.

A transaction enters when its record is valid, its weights were fetched and passed the
checks, and all its parents are present. Until the parents are there it waits in the
tangle's pending set while the builder fetches each missing parent's record by id (see
gridd.tree.messages: the record CID is derived from the id) and repeats the same steps for
it, down to transactions the peer already has. So a late joiner that hears one head pulls
the whole history it lacks.

Failures are kept apart by cause:
* content that can never be valid (weights of the wrong shape, NaN/inf, oversized,
  undecodable, or a transaction approving such a one) is rejected for good: counted with
  its reason, logged once, remembered so it is never fetched again;
* a message that lies about its sender is dropped (counted) but its id is *not*
  remembered, so nobody can block an honest transaction by replaying it first;
* content that is unavailable right now (timeout, no provider) is retried with backoff,
  then dropped (counted as "unavailable") until something names it again.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gridd.metrics import TreeMetrics
from gridd.transport import Store
from gridd.tree.genesis import put_record
from gridd.tree.messages import MAX_RECORD_BYTES, decode_record, record_cid
from gridd.tree.weights import RejectedWeights, WeightsBank
from tangle import DuplicateTransaction, InvalidTransaction, Tangle, TangleLog, Transaction

log = logging.getLogger(__name__)

MAX_REJECTED = 100_000
MAX_WEIGHT_ATTEMPTS = 6
MAX_RUMOUR_ATTEMPTS = 4
MAX_RUMOURS = 4_096
BACKOFF_START = 0.5
BACKOFF_MAX = 60.0


@dataclass
class _Retry:
    attempts: int = 0
    next_try: float = 0.0

    def failed(self, now: float) -> None:
        self.attempts += 1
        self.next_try = now + min(BACKOFF_MAX, BACKOFF_START * 2 ** (self.attempts - 1))


class TangleBuilder:
    """Inserts offered or fetched transactions into `tangle`; see the module docstring."""

    def __init__(
        self,
        tangle: Tangle,
        bank: WeightsBank,
        store: Store,
        *,
        timeout: float,
        txlog: TangleLog | None = None,
        metrics: TreeMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tangle = tangle
        self.bank = bank
        self.store = store
        self.timeout = timeout
        self.txlog = txlog
        self.metrics = metrics
        self.clock = clock
        self.rejected: OrderedDict[str, str] = OrderedDict()
        self._wanted: dict[str, _Retry] = {}  # ids whose records we still need
        self._rumours: set[str] = set()  # wanted only because someone's heads named them
        self._given_up: OrderedDict[str, None] = OrderedDict()
        self._stalled: dict[str, tuple[Transaction, _Retry]] = {}  # weights not fetched yet
        self._logged: set[tuple[str, str]] = set()
        self.inserted_from_network = 0

    # -- rejection bookkeeping -------------------------------------------------------------

    def reject(self, reason: str, message: str, tx_id: str | None = None,
               remember: bool = True) -> None:
        """Count (metric label `reason`), log once, and remember the id if it is bad for good."""
        if self.metrics:
            self.metrics.tx_rejected.labels(reason=reason).inc()
        key = (reason, tx_id or message)
        if key not in self._logged:
            if len(self._logged) > MAX_REJECTED:
                self._logged.clear()
            self._logged.add(key)
            log.warning("rejected (%s): %s", reason, message)
        if remember and tx_id is not None:
            self.rejected[tx_id] = reason
            while len(self.rejected) > MAX_REJECTED:
                self.rejected.popitem(last=False)
            self._wanted.pop(tx_id, None)
            self._rumours.discard(tx_id)
            self._stalled.pop(tx_id, None)

    def knows(self, tx_id: str) -> bool:
        t = self.tangle
        return tx_id in t or t.is_pending(tx_id) or tx_id in self.rejected or tx_id in self._stalled

    # -- offering ------------------------------------------------------------------------------

    def offer(self, tx: Transaction, *, sender: str | None = None) -> list[Transaction]:
        """Try to bring `tx` in; returns the transactions that entered the tangle (in order).

        `sender` (the verified pubsub sender of a `tree.tx` announcement) must equal the
        issuer; fetched history (sender None) is authenticated by its hash chain only.
        """
        if sender is not None and tx.issuer != sender:
            self.reject("bad_issuer", f"{tx.id[:12]} claims issuer {tx.issuer[:60]!r} but was "
                        f"sent by {sender[:60]!r}", tx.id, remember=False)
            return []
        if self.knows(tx.id):
            return []
        if not tx.parents:
            self.reject("bad_record", f"{tx.id[:12]} is a second genesis", tx.id)
            return []
        bad_parent = next((p for p in tx.parents if p in self.rejected), None)
        if bad_parent is not None:
            self.reject("bad_parent", f"{tx.id[:12]} approves rejected {bad_parent[:12]}", tx.id)
            return []
        return self._with_weights(tx)

    def offer_record(self, data: bytes, *, sender: str | None = None,
                     expect_id: str | None = None) -> list[Transaction]:
        try:
            tx = decode_record(data, expect_id=expect_id)
        except InvalidTransaction as e:
            self.reject("bad_record", f"record from {str(sender)[:60]}: {e}", None)
            return []
        return self.offer(tx, sender=sender)

    def _with_weights(self, tx: Transaction) -> list[Transaction]:
        try:
            self.bank.get(tx.weights_cid)
        except RejectedWeights as e:
            self.reject(e.reason, f"transaction {tx.id[:12]} from {tx.issuer[:60]}: {e}", tx.id)
            return []
        except Exception as e:  # unavailable now (timeout, IPFS down): retry later
            _, retry = self._stalled.get(tx.id, (tx, _Retry()))
            retry.failed(self.clock())
            if retry.attempts >= MAX_WEIGHT_ATTEMPTS:
                # not remembered: the content may come back (a provider restarts), and a
                # child naming this parent will start the fetch again
                self._stalled.pop(tx.id, None)
                self.reject("unavailable", f"weights of {tx.id[:12]} unavailable after "
                            f"{retry.attempts} attempts: {e}", tx.id, remember=False)
            else:
                self._stalled[tx.id] = (tx, retry)
                log.debug("weights of %s not available yet (%s); will retry", tx.id[:12], e)
            return []
        self._stalled.pop(tx.id, None)
        self._wanted.pop(tx.id, None)
        self._rumours.discard(tx.id)
        try:
            self.bank.pin(tx.weights_cid)
            put_record(self.store, tx)  # so we serve this record to peers catching up
        except Exception as e:  # keep going: pinning is protection, not a precondition
            log.warning("could not pin %s: %s", tx.id[:12], e)
        try:
            inserted = self.tangle.add(tx)
        except DuplicateTransaction:
            return []
        except InvalidTransaction as e:
            self.reject("bad_record", f"{tx.id[:12]}: {e}", tx.id)
            return []
        if self.txlog is not None:
            self.txlog.append(tx, sync=True)
        if not inserted:
            self.want(p for p in tx.parents if p not in self.tangle)
        self.inserted_from_network += len(inserted)
        return inserted

    # -- fetching what is missing ----------------------------------------------------------

    def want(self, ids: Iterable[str], *, rumour: bool = False) -> None:
        """Remember ids whose records should be fetched.

        Missing parents of transactions we hold are fetched until they arrive. Heads named
        by other peers (`rumour=True`) are cheaper to invent: one that stays unavailable
        for MAX_RUMOUR_ATTEMPTS fetches is given up and ignored when named again, so made-up
        ids cannot keep a peer busy with timeouts.
        """
        for tx_id in ids:
            if self.knows(tx_id) or tx_id in self._wanted:
                continue
            if rumour:
                if tx_id in self._given_up or len(self._rumours) >= MAX_RUMOURS:
                    continue
                self._rumours.add(tx_id)
            self._wanted[tx_id] = _Retry()

    @property
    def outstanding(self) -> int:
        """Records or weights still to fetch."""
        return len(self._wanted) + len(self._stalled)

    def fetch_missing(self, budget: int = 100_000, seconds: float | None = None
                      ) -> list[Transaction]:
        """Fetch wanted records (and retry stalled weights) that are due; returns inserts.

        Loops until nothing due is left (history fetched one generation at a time), or
        `budget` fetches were made, or `seconds` passed: unavailable content costs a timeout
        per attempt, and the caller has messages to read too. The rest waits for next time.
        """
        inserted: list[Transaction] = []
        deadline = None if seconds is None else self.clock() + seconds
        while budget > 0 and (deadline is None or self.clock() < deadline):
            self.want(self.tangle.missing_parents())
            now = self.clock()
            due = [i for i, r in self._wanted.items() if r.next_try <= now]
            stalled = [tx for tx, r in self._stalled.values() if r.next_try <= now]
            if not due and not stalled:
                break
            for tx in stalled:
                budget -= 1
                inserted.extend(self._with_weights(tx))
            for tx_id in due:
                if budget <= 0 or (deadline is not None and self.clock() >= deadline):
                    break
                budget -= 1
                inserted.extend(self._fetch_record(tx_id))
        return inserted

    def _fetch_record(self, tx_id: str) -> list[Transaction]:
        retry = self._wanted.get(tx_id)
        if retry is None or self.knows(tx_id):
            self._wanted.pop(tx_id, None)
            self._rumours.discard(tx_id)
            return []
        try:
            data = self.store.get(record_cid(tx_id), max_size=MAX_RECORD_BYTES,
                                  timeout=self.timeout)
        except Exception as e:
            if self.metrics:
                self.metrics.fetch_errors.inc()
            retry.failed(self.clock())
            if tx_id in self._rumours and retry.attempts >= MAX_RUMOUR_ATTEMPTS:
                self._forget_rumour(tx_id)
            log.debug("record of %s not available (%s), attempt %d", tx_id[:12], e, retry.attempts)
            return []
        if self.metrics:
            self.metrics.bytes_fetched.inc(len(data))
        self._wanted.pop(tx_id, None)
        self._rumours.discard(tx_id)
        try:
            tx = decode_record(data, expect_id=tx_id)
        except InvalidTransaction as e:  # the preimage of tx_id is not a transaction
            self.reject("bad_record", f"record of {tx_id[:12]}: {e}", tx_id)
            return []
        return self.offer(tx)

    def _forget_rumour(self, tx_id: str) -> None:
        self._wanted.pop(tx_id, None)
        self._rumours.discard(tx_id)
        self._given_up[tx_id] = None
        while len(self._given_up) > MAX_REJECTED:
            self._given_up.popitem(last=False)
        log.info("gave up fetching %s (named in heads, unavailable)", tx_id[:12])
