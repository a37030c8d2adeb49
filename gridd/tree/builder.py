"""Brings transactions from the network into a peer's tangle, only when they are complete.

A transaction enters when its record is valid, its weights were fetched and passed the
checks, and all its parents are present. Until the parents are there it waits in the
tangle's pending set while the builder fetches each missing parent's record by id (see
gridd.tree.messages: the record CID is derived from the id) and repeats the same steps for
it, down to transactions the peer already has. So a late joiner that hears one head pulls
the whole history it lacks.

Nothing here waits on the network. Fetches run in the node's fetch pool (gridd.runtime),
each attributed to the peer whose announcement caused it; results come back as callbacks
on the loop thread. Everything remembered is bounded (`BoundedMap`) and pruned:

* content that can never be valid (weights of the wrong shape, NaN/inf, oversized,
  undecodable, or a transaction approving such a one) is rejected for good: counted with
  its reason, logged once, remembered so it is never fetched again;
* a transaction without a valid signature of its issuer (over its signing bytes) is
  rejected for good (`unsigned`, `bad_signature`): whoever relayed it, pubsub or IPFS, the
  record is attributable to the key that signed it, and its id commits to the signature;
* (without signature checks) a message that lies about its sender is dropped (counted)
  but its id is *not* remembered, so nobody can block an honest transaction by replaying
  it first;
* content that is unavailable (timeout, no provider) is retried with backoff, then given
  up: weights after MAX_WEIGHT_ATTEMPTS, a head named by someone after
  MAX_RUMOUR_ATTEMPTS, a missing parent after MAX_PARENT_ATTEMPTS (the transactions
  waiting for it are dropped from the pending set). Given-up ids are ignored for
  GIVE_UP_SECONDS, after which an announcement may name them again;
* a sender whose announcements keep naming content nobody serves collects strikes (they
  decay with a half-life); over STRIKE_LIMIT its announcements are ignored and its queued
  fetches dropped, so it cannot keep the pool busy with timeouts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gridd.metrics import TreeMetrics
from gridd.runtime import BoundedMap, FetchPool, FetchResult
from gridd.transport import Store
from gridd.tree.genesis import put_record
from gridd.tree.messages import MAX_RECORD_BYTES, decode_record, record_cid
from gridd.tree.weights import RejectedWeights, WeightsBank
from tangle import DuplicateTransaction, InvalidTransaction, Tangle, TangleLog, Transaction

log = logging.getLogger(__name__)

MAX_REJECTED = 100_000
MAX_AWAITING = 1_024  # transactions whose weights are being fetched
MAX_WANTED = 4_096  # records to fetch (missing parents and named heads)
MAX_RUMOURS = 1_024  # of which named only in someone's heads
MAX_WEIGHT_ATTEMPTS = 6
MAX_RUMOUR_ATTEMPTS = 4
MAX_PARENT_ATTEMPTS = 8
GIVE_UP_SECONDS = 600.0
BACKOFF_START = 0.5
BACKOFF_MAX = 60.0
STRIKE_LIMIT = 8.0
STRIKE_HALF_LIFE = 120.0  # seconds
MAX_SENDERS = 4_096
MAX_PUMP_ROUNDS = 10_000  # inline fetches (memory store) cascade within one pump
QUEUE_FULL_PAUSE = 1.0  # seconds before a want refused by a full fetch queue is tried again

Inserted = Callable[[list[Transaction]], None]
Verifier = Callable[[str, bytes, bytes], bool]  # (author, data, signature) -> valid


@dataclass
class _Retry:
    attempts: int = 0
    next_try: float = 0.0

    def failed(self, now: float) -> None:
        self.attempts += 1
        self.next_try = now + min(BACKOFF_MAX, BACKOFF_START * 2 ** (self.attempts - 1))


@dataclass
class _Awaiting:
    """A transaction waiting for its weights."""

    tx: Transaction
    origin: str | None
    retry: _Retry = field(default_factory=_Retry)


@dataclass
class _Wanted:
    """A record to fetch: a missing parent, or a head someone named (`rumour`)."""

    origin: str | None
    rumour: bool
    retry: _Retry = field(default_factory=_Retry)


@dataclass
class _Strikes:
    count: float
    stamp: float


class TangleBuilder:
    """Inserts offered or fetched transactions into `tangle`; see the module docstring."""

    def __init__(
        self,
        tangle: Tangle,
        bank: WeightsBank,
        store: Store,
        fetcher: FetchPool,
        *,
        timeout: float,
        txlog: TangleLog | None = None,
        metrics: TreeMetrics | None = None,
        on_insert: Inserted | None = None,
        verify: Verifier | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`verify` checks issuers' signatures (Broker.verify); None accepts unsigned
        transactions (tools that read a tangle they already trust)."""
        self.tangle = tangle
        self.bank = bank
        self.store = store
        self.fetcher = fetcher
        self.timeout = timeout
        self.txlog = txlog
        self.metrics = metrics
        self.on_insert = on_insert
        self.verify = verify
        self.clock = clock
        self.rejected: BoundedMap[str, str] = BoundedMap(MAX_REJECTED)
        self._awaiting: BoundedMap[str, _Awaiting] = BoundedMap(MAX_AWAITING)
        self._wanted: BoundedMap[str, _Wanted] = BoundedMap(MAX_WANTED)
        self._given_up: BoundedMap[str, float] = BoundedMap(MAX_REJECTED)  # id -> until
        self._strikes: BoundedMap[str, _Strikes] = BoundedMap(MAX_SENDERS, lru=True)
        self._logged: BoundedMap[tuple[str, str], None] = BoundedMap(MAX_REJECTED)
        self.inserted_from_network = 0

    # -- rejection bookkeeping -------------------------------------------------------------

    def reject(self, reason: str, message: str, tx_id: str | None = None,
               remember: bool = True) -> None:
        """Count (metric label `reason`), log once, and remember the id if it is bad for good."""
        if self.metrics:
            self.metrics.tx_rejected.labels(reason=reason).inc()
        key = (reason, tx_id or message)
        if key not in self._logged:
            self._logged[key] = None
            log.warning("rejected (%s): %s", reason, message)
        if tx_id is not None:
            self._awaiting.pop(tx_id, None)
            self._wanted.pop(tx_id, None)
            if remember:
                self.rejected[tx_id] = reason
                for child in self.tangle.discard_waiting_on(tx_id):  # approve bad content
                    self.reject("bad_parent", f"{child[:12]} approves rejected {tx_id[:12]}",
                                child)

    def knows(self, tx_id: str) -> bool:
        t = self.tangle
        return (tx_id in t or t.is_pending(tx_id) or tx_id in self.rejected
                or tx_id in self._awaiting)

    @property
    def outstanding(self) -> int:
        """Records or weights still to fetch."""
        return len(self._wanted) + len(self._awaiting)

    @property
    def wanted_count(self) -> int:
        return len(self._wanted)

    # -- senders that name content nobody serves --------------------------------------------

    def strikes(self, sender: str | None) -> float:
        if sender is None:
            return 0.0
        s = self._strikes.get(sender)
        if s is None:
            return 0.0
        now = self.clock()
        s.count *= 0.5 ** (max(0.0, now - s.stamp) / STRIKE_HALF_LIFE)
        s.stamp = now
        return s.count

    def throttled(self, sender: str | None) -> bool:
        return self.strikes(sender) >= STRIKE_LIMIT

    def _strike(self, sender: str | None) -> None:
        if sender is None:
            return
        was = self.throttled(sender)
        s = self._strikes.get(sender)
        if s is None:
            self._strikes[sender] = _Strikes(1.0, self.clock())
        else:
            s.count += 1.0
        if not was and self.throttled(sender):
            log.warning("throttling %s: its announcements keep naming content nobody serves",
                        sender[:60])
            self._wanted.prune(lambda _, w: w.rumour and w.origin == sender)

    def _credit(self, sender: str | None) -> None:
        s = self._strikes.get(sender) if sender is not None else None
        if s is not None:
            s.count = max(0.0, s.count - 1.0)

    def _refuse_throttled(self, sender: str | None) -> bool:
        if not self.throttled(sender):
            return False
        if self.metrics:
            self.metrics.runtime.senders_throttled.inc()
        return True

    # -- offering ------------------------------------------------------------------------------

    def offer(self, tx: Transaction, *, sender: str | None = None,
              origin: str | None = None) -> list[Transaction]:
        """Try to bring `tx` in; returns what entered the tangle now (usually nothing: the
        weights are fetched in the pool, and `on_insert` reports the insertion later).

        With `verify`, a transaction is its issuer's if the issuer signed it, whoever
        relayed it (several gridd processes share a daemon, and peers re-announce each
        other's heads). Without it, `sender` (the verified pubsub sender of a `tree.tx`)
        must equal the issuer. Fetching is attributed to `origin` (the sender, or the peer
        whose announcement led to it) for throttling.
        """
        if sender is not None and tx.issuer != sender and self.verify is None:
            self.reject("bad_issuer", f"{tx.id[:12]} claims issuer {tx.issuer[:60]!r} but was "
                        f"sent by {sender[:60]!r}", tx.id, remember=False)
            return []
        origin = sender if sender is not None else origin
        if self.knows(tx.id):
            return []
        if not tx.parents:
            self.reject("bad_record", f"{tx.id[:12]} is a second genesis", tx.id)
            return []
        if self.verify is not None:
            if not tx.signature:
                self.reject("unsigned", f"{tx.id[:12]} (issuer {tx.issuer[:60]}) carries no "
                            f"signature (from {str(origin)[:60]})", tx.id)
                return []
            if not self.verify(tx.issuer, tx.signing_bytes(), tx.signature):
                self.reject("bad_signature", f"{tx.id[:12]} claims issuer {tx.issuer[:60]} "
                            f"but is not signed by it (from {str(origin)[:60]})", tx.id)
                return []
        bad_parent = next((p for p in tx.parents if p in self.rejected), None)
        if bad_parent is not None:
            self.reject("bad_parent", f"{tx.id[:12]} approves rejected {bad_parent[:12]}", tx.id)
            return []
        if self._refuse_throttled(origin):
            return []
        self._wanted.pop(tx.id, None)
        if self.bank.cached(tx.weights_cid) is not None:
            return self._insert(tx, origin)
        self._awaiting[tx.id] = _Awaiting(tx, origin)
        self._request_weights(tx.weights_cid, origin)
        return []

    def offer_record(self, data: bytes, *, sender: str | None = None,
                     expect_id: str | None = None) -> list[Transaction]:
        try:
            tx = decode_record(data, expect_id=expect_id)
        except InvalidTransaction as e:
            self.reject("bad_record", f"record from {str(sender)[:60]}: {e}", None)
            return []
        return self.offer(tx, sender=sender)

    def _request_weights(self, cid: str, origin: str | None) -> None:
        self.fetcher.submit(("weights", cid), lambda left: self.bank.load(cid, left),
                            timeout=self.timeout, done=self._weights_fetched, sender=origin)

    def _weights_fetched(self, result: FetchResult) -> None:
        cid = result.key[1]  # type: ignore[index]
        waiting = [a for a in self._awaiting.values() if a.tx.weights_cid == cid]
        if result.ok:
            self.bank.remember(cid, result.value)
            for a in waiting:
                self._awaiting.pop(a.tx.id, None)
                self._credit(a.origin)
                self._insert(a.tx, a.origin)
            return
        error = result.error
        for a in waiting:
            if isinstance(error, RejectedWeights):
                self.reject(error.reason, f"transaction {a.tx.id[:12]} from "
                            f"{a.tx.issuer[:60]}: {error}", a.tx.id)
                continue
            self._strike(a.origin)
            a.retry.failed(self.clock())
            if a.retry.attempts >= MAX_WEIGHT_ATTEMPTS:
                # not remembered: the content may come back (a provider restarts), and a
                # child naming this transaction will start the fetch again
                self.reject("unavailable", f"weights of {a.tx.id[:12]} unavailable after "
                            f"{a.retry.attempts} attempts: {error}", a.tx.id, remember=False)
            else:
                log.debug("weights of %s not available yet (%s); will retry", a.tx.id[:12],
                          error)

    def _insert(self, tx: Transaction, origin: str | None) -> list[Transaction]:
        bad_parent = next((p for p in tx.parents if p in self.rejected), None)
        if bad_parent is not None:  # rejected while this one's weights were being fetched
            self.reject("bad_parent", f"{tx.id[:12]} approves rejected {bad_parent[:12]}", tx.id)
            return []
        try:
            inserted = self.tangle.add(tx)
        except DuplicateTransaction:
            return []
        except InvalidTransaction as e:
            self.reject("bad_record", f"{tx.id[:12]}: {e}", tx.id)
            return []
        # Pin the weights and serve the record to peers catching up (a local Kubo call, in
        # the pool so the loop never waits on it); only inserted transactions are logged,
        # so pending ones (which anyone can invent) never reach the disk.
        self.fetcher.submit(("keep", tx.id), lambda _left: self._keep(tx), timeout=self.timeout,
                            done=_ignore)
        if self.txlog is not None:
            for t in inserted:
                self.txlog.append(t, sync=True)
        if not inserted:
            self.want((p for p in tx.parents if p not in self.tangle), origin=origin)
        self.inserted_from_network += len(inserted)
        if inserted and self.on_insert is not None:
            self.on_insert(inserted)
        return inserted

    def _keep(self, tx: Transaction) -> None:
        try:
            self.bank.pin(tx.weights_cid)
            put_record(self.store, tx)
        except Exception as e:  # keep going: pinning is protection, not a precondition
            log.warning("could not pin %s: %s", tx.id[:12], e)

    # -- fetching what is missing ----------------------------------------------------------

    def want(self, ids: Iterable[str], *, rumour: bool = False,
             origin: str | None = None) -> None:
        """Remember ids whose records should be fetched (see the module docstring)."""
        if rumour and self._refuse_throttled(origin):
            return
        now = self.clock()
        rumours = sum(1 for w in self._wanted.values() if w.rumour) if rumour else 0
        for tx_id in ids:
            if self.knows(tx_id) or tx_id in self._wanted:
                continue
            until = self._given_up.get(tx_id)
            if until is not None:
                if until > now:
                    continue
                del self._given_up[tx_id]
            if rumour:
                if rumours >= MAX_RUMOURS:
                    return
                rumours += 1
            self._wanted[tx_id] = _Wanted(origin, rumour)

    def pump(self) -> None:
        """Queue the fetches that are due and run finished fetches' callbacks.

        With an inline pool (the in-memory store) fetches complete at once, so this loops
        until nothing due is left: history arrives one generation per round.
        """
        for _ in range(MAX_PUMP_ROUNDS):
            ran = self.fetcher.run_callbacks()
            submitted = self._schedule()
            ran += self.fetcher.run_callbacks()
            if not self.fetcher.inline or (ran == 0 and submitted == 0):
                return

    def _schedule(self) -> int:
        missing = self.tangle.missing_parents()
        self.want(missing)
        # Parents nobody pending needs any more (their children were evicted or given up)
        self._wanted.prune(lambda i, w: not w.rumour and i not in missing)
        now = self.clock()
        submitted = 0
        full: set[str | None] = set()  # senders whose fetch queue is full for this round
        for tx_id, w in list(self._wanted.items()):
            if w.retry.next_try > now or w.origin in full or self.fetcher.busy(("record", tx_id)):
                continue
            if self.throttled(w.origin):
                continue
            refused = self._fetch_record(tx_id, w)
            if refused is None:
                submitted += 1
            elif refused in ("sender_queue_full", "queue_full"):
                # not an attempt: try again a little later, not on every step
                w.retry.next_try = now + QUEUE_FULL_PAUSE
                full.add(w.origin)
        for a in list(self._awaiting.values()):
            if a.retry.attempts and a.retry.next_try <= now and not self.throttled(a.origin) \
                    and not self.fetcher.busy(("weights", a.tx.weights_cid)):
                a.retry.next_try = now + self.timeout  # until the result says otherwise
                self._request_weights(a.tx.weights_cid, a.origin)
                submitted += 1
        return submitted

    def _fetch_record(self, tx_id: str, want: _Wanted) -> str | None:
        def fetch(left: float) -> bytes:
            data = self.store.get(record_cid(tx_id), max_size=MAX_RECORD_BYTES, timeout=left)
            if self.metrics:
                self.metrics.bytes_fetched.inc(len(data))
            return data

        return self.fetcher.submit(("record", tx_id), fetch, timeout=self.timeout,
                                   done=self._record_fetched, sender=want.origin)

    def _record_fetched(self, result: FetchResult) -> None:
        tx_id = result.key[1]  # type: ignore[index]
        want = self._wanted.get(tx_id)
        if not result.ok:
            if self.metrics:
                self.metrics.fetch_errors.inc()
            if want is None:
                return
            self._strike(want.origin)
            want.retry.failed(self.clock())
            log.debug("record of %s not available (%s), attempt %d", tx_id[:12], result.error,
                      want.retry.attempts)
            limit = MAX_RUMOUR_ATTEMPTS if want.rumour else MAX_PARENT_ATTEMPTS
            if want.retry.attempts >= limit:
                self._give_up(tx_id, want)
            return
        self._wanted.pop(tx_id, None)
        origin = want.origin if want is not None else None
        self._credit(origin)
        try:
            tx = decode_record(result.value, expect_id=tx_id)
        except InvalidTransaction as e:  # the preimage of tx_id is not a transaction
            self.reject("bad_record", f"record of {tx_id[:12]}: {e}", tx_id)
            return
        self.offer(tx, origin=origin)

    def _give_up(self, tx_id: str, want: _Wanted) -> None:
        self._wanted.pop(tx_id, None)
        self._given_up[tx_id] = self.clock() + GIVE_UP_SECONDS
        if want.rumour:
            log.info("gave up fetching %s (named in heads, unavailable)", tx_id[:12])
            return
        for child in self.tangle.discard_waiting_on(tx_id):
            self.reject("unavailable_parent", f"{child[:12]} waits for {tx_id[:12]}, which "
                        f"nobody serves", child, remember=False)


def _ignore(_result: FetchResult) -> None:
    """Callback of fire-and-forget pool work (pinning): errors are logged where they occur."""
