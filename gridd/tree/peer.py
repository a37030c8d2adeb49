"""A tree-mode peer: follows one tangle, trains on local data, publishes when it does better.

The peer runs on the node runtime (gridd.runtime.Node): `process_messages` is one step of
it (handle queued messages, run finished fetches' callbacks, queue due fetches),
`train_step` makes one synchronous training attempt, `announce` re-announces the tips.
`run` registers training and announcing as the node's ticks and runs its loop (one
thread, so the tangle needs no locks). The lab steps a hundred in-memory peers from one
loop without calling `run`; on the in-memory network the runtime starts no thread.

One training attempt (issue 14 measured each part; see docs/architecture.md):
- walks (NUM_OF_SAMPLING_ROUND x 4 of them) find the tips they reach: the frontier;
- the acceptable ones (gridd.tree.vetting: judged by what they do to an average, so
  specialists of other labels stay and noise goes), at most NUM_OF_TIPS, are averaged
  (FedAvg weights) - with many concurrent tips this is a FedAvg round;
- MOMENTUM extrapolates that average along the network's last step (the average of the
  tips minus the average of their parents), as FedAvgM's server would;
- train for the recipe's local epochs and publish a transaction approving those tips if
  the result beats the model it started from on the local validation split.
The reference (consensus) model averages the top max(REFERENCE_TOP, tips used) transactions
of the confidence ranking, vetted the same way. A published transaction is stored, pinned
and logged *before* it is announced, so an announced transaction is never lost by its issuer.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gridd import pins
from gridd.data import DataError, Dataset
from gridd.metrics import TreeMetrics
from gridd.models.base import check_xy
from gridd.runtime import InboxLimits, Node
from gridd.strategies import FedAvg, Update
from gridd.transport import Broker, Message, Store
from gridd.tree import messages
from gridd.tree.builder import TangleBuilder
from gridd.tree.genesis import Genesis, load_genesis, put_record
from gridd.tree.keeper import StorageKeeper
from gridd.tree.retention import Policy
from gridd.tree.settings import TreeSettings
from gridd.tree.state import LOG_FILE, PeerState, load_state, save_state
from gridd.tree.trainer import LocalTrainer, Scores
from gridd.tree.vetting import Verdict, extrapolate, judge
from gridd.tree.weights import WeightsBank, weights_cap
from gridd.wire import WireError
from tangle import (
    AccuracyWalkSelector,
    RandomWalkSelector,
    Tangle,
    TangleLog,
    TipSelector,
    Transaction,
    UniformSelector,
    frontier,
    rebuild,
    reference,
)

log = logging.getLogger(__name__)

MAX_TREE_MESSAGE = messages.MAX_RECORD_BYTES + 16 * 1024  # a tx with its record, enveloped
HELLO_ANSWER_GAP = 1.0  # seconds: answer hellos with our heads at most this often
HELLO_ANSWERS = 3  # expected number of peers answering one hello
HELLO_RETRY_WINDOW = 30.0  # seconds after open() in which a hello waits for a listener
HELLO_RETRY_GAP = 0.5  # while nobody is subscribed
HELLO_REPEAT_GAP = 2.0  # while nobody has answered
MAX_PEERS_SEEN = 10_000
MAX_SCORES = 4_096
MAX_PUBLISHED_KEPT = 1_000
DRAWS_PER_ROUND = 4  # walks per NUM_OF_SAMPLING_ROUND, for the frontier and the ranking
FRONTIER_LIMIT = 24  # distinct tips considered per step (attackers can make tips cheaply)


@dataclass(frozen=True)
class StepResult:
    """Outcome of one training attempt."""

    published: bool
    reason: str  # published | not_better (than its start) | observer | weights_unavailable
    tx_id: str | None = None
    parents: tuple[str, ...] = ()
    local: Scores | None = None
    reference: Scores | None = None
    reference_ids: tuple[str, ...] = ()
    seconds: float = 0.0
    start: Scores | None = None  # the model training started from (what it must beat)

    @property
    def local_accuracy(self) -> float | None:
        return None if self.local is None else self.local.accuracy

    @property
    def reference_accuracy(self) -> float | None:
        return None if self.reference is None else self.reference.accuracy


@dataclass
class _Counters:
    published: int = 0
    received: int = 0
    messages: int = 0
    hello_answered: int = 0
    peers_seen: dict[str, float] = field(default_factory=dict)


class TreePeer:
    """One peer of one tangle; see the module docstring. Not thread-safe: one driver."""

    def __init__(
        self,
        *,
        genesis_id: str,
        broker: Broker,
        store: Store,
        dataset: Dataset | None,
        settings: TreeSettings,
        state_dir: Path | None = None,
        metrics: TreeMetrics | None = None,
        seed: int | None = None,
        prefer: str = "auto",
        observer: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """observer=True: a peer that follows and scores (with `dataset` as validation data
        when given) but never trains or publishes, and whose data size does not count in
        sample-weighted averaging (it trains on nothing)."""
        self.genesis_id = genesis_id
        self.topic = messages.topic_for(genesis_id)  # refuses a malformed id early
        self.broker = broker
        self.store = pins.NamedPins(store, pins.tree(genesis_id, "record"))  # see gridd.pins
        self.dataset = dataset
        self.settings = settings
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.metrics = metrics if metrics is not None else TreeMetrics()
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        self.prefer = settings.prefer if prefer == "auto" else prefer
        self.observer = observer
        self.rng = random.Random(self.seed)
        self.clock = clock  # issue times of our transactions (a lab's is simulated)
        self.peer_id = broker.peer_id
        self.genesis: Genesis | None = None
        self.counters = _Counters()
        self.last_step: StepResult | None = None
        self._tangle: Tangle | None = None
        self._node: Node | None = None
        self._txlog: TangleLog | None = None
        self._builder: TangleBuilder | None = None
        self._keeper: StorageKeeper | None = None
        self._bank: WeightsBank | None = None
        self._trainer: LocalTrainer | None = None
        self._selector: TipSelector | None = None
        self._state = PeerState(genesis_id)
        self._scores: dict[str, float] = _BoundedScores(MAX_SCORES)  # tx id -> local score
        self._losses: dict[str, float] = _BoundedScores(MAX_SCORES)  # tx id -> local loss
        self._trusted: list[np.ndarray] | None = None  # own last model / observer's consensus
        self._last_reference: list[str] = []
        self.last_verdict: Verdict | None = None
        self._last_announce = -float("inf")
        self._hello_until = 0.0
        self._next_hello_check = 0.0
        self._nonce = random.SystemRandom().randrange(2**62)  # tells our hello from others'

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Fetch the genesis, load persisted state, subscribe. Starts no thread of its own."""
        s = self.settings
        genesis = load_genesis(self.store, self.genesis_id, timeout=s.timeout)
        self.genesis = genesis
        if self.dataset is not None:
            _check_dataset(genesis, self.dataset)
        txs: list[Transaction] = []
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._state = load_state(self.state_dir, self.genesis_id)
            if self._state.peer_id and self._state.peer_id != self.peer_id:
                log.warning("state in %s was written by peer %s; this daemon is %s",
                            self.state_dir, self._state.peer_id, self.peer_id)
            self._state.peer_id = self.peer_id
            self._txlog = TangleLog(self.state_dir / LOG_FILE)
            txs = self._txlog.load()
            stats = self._txlog.last_load
            if stats is not None and (stats.corrupt or stats.invalid or stats.torn_bytes):
                log.warning("tangle log: %d records, %d corrupt, %d invalid, %d torn bytes "
                            "(ignored)", stats.records, stats.corrupt, stats.invalid,
                            stats.torn_bytes)
            save_state(self.state_dir, self._state)
        self._tangle = rebuild(genesis.transaction, txs, max_pending=s.max_pending,
                               horizon=self._txlog.horizon if self._txlog else None)
        if txs:
            log.info("resumed tangle %s: %d transactions, %d pending", self.genesis_id[:12],
                     len(self._tangle), self._tangle.pending_count)
        self._bank = WeightsBank(
            self.store, genesis.spec, weights_cap(genesis.weights_size), timeout=s.timeout,
            cache_size=s.weights_cache, metrics=self.metrics,
            pin_name=pins.tree(self.genesis_id, "weights"),
            own_name=pins.own(self.genesis_id, self.peer_id),
        )
        node = Node(self.broker, self.topic, self._on_message, name="tree",
                    limits=InboxLimits(max_message_bytes=MAX_TREE_MESSAGE),
                    metrics=self.metrics.runtime,
                    fetch_workers=None if self.store.blocking else 0)
        node.after_step(self._after_step)
        self._node = node
        self._builder = TangleBuilder(
            self._tangle, self._bank, self.store, node.fetcher, timeout=s.timeout,
            txlog=self._txlog, metrics=self.metrics, on_insert=self._count_received,
            verify=self.broker.verify,
        )
        self._keeper = StorageKeeper(
            genesis_id=self.genesis_id, peer_id=self.peer_id, store=self.store, node=node,
            policy=Policy(s.retention_window, s.retention_own, s.reference_window),
            txlog=self._txlog, compact_bytes=s.log_compact_bytes, timeout=max(60.0, s.timeout))
        if self.dataset is not None:
            self._trainer = LocalTrainer(genesis, self.dataset, self.prefer, seed=self.seed)
        self._selector = self._make_selector()
        node.start(ready_timeout=min(10.0, s.timeout))
        if node.blocking:
            node.maintain()  # learn whether anyone listens before the first hello
        self._hello_until = time.monotonic() + HELLO_RETRY_WINDOW
        self._say_hello()
        self._update_gauges()

    def _say_hello(self) -> None:
        """Ask for heads. Pubsub drops a message nobody is subscribed to yet (a new Kubo
        subscription takes a moment to propagate), and only a few peers answer a hello, so
        until the first heads arrive it is repeated from process_messages (for at most
        HELLO_RETRY_WINDOW seconds after open)."""
        node = self.node
        if node.blocking:  # Kubo: the count comes from the watchdog; publishing is queued
            listeners = bool(node.topic_peer_count)
        else:
            try:
                listeners = bool(self.broker.topic_peers(self.topic))
            except Exception:
                listeners = False
            if not listeners:
                self._next_hello_check = time.monotonic() + HELLO_RETRY_GAP
                return
        gap = HELLO_REPEAT_GAP if listeners else HELLO_RETRY_GAP
        self._next_hello_check = time.monotonic() + gap
        self._publish(messages.hello_message(len(self.tangle), self._nonce))

    def close(self) -> None:
        if self._node is not None:
            self._node.close()
            self._node = None
        if self.state_dir is not None and self.genesis is not None:
            try:
                save_state(self.state_dir, self._state)
            except OSError as e:
                log.warning("could not save state: %s", e)
        if self._txlog is not None:
            self._txlog.close()
            self._txlog = None

    def __enter__(self) -> TreePeer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- views -------------------------------------------------------------------------------

    @property
    def tangle(self) -> Tangle:
        if self._tangle is None:
            raise RuntimeError("TreePeer.open() first")
        return self._tangle

    @property
    def client_epochs(self) -> int:
        """Local epochs this peer has trained so far (persisted across restarts)."""
        return self._state.client_epochs

    @property
    def published(self) -> list[str]:
        """Ids of the transactions this peer published (the most recent ones)."""
        return list(self._state.published)

    @property
    def peers_seen(self) -> list[str]:
        """Peer ids heard on the topic or seen as issuers, this one included if it spoke."""
        return sorted(self.counters.peers_seen)

    @property
    def node(self) -> Node:
        assert self._node is not None, "TreePeer.open() first"
        return self._node

    @property
    def builder(self) -> TangleBuilder:
        assert self._builder is not None, "TreePeer.open() first"
        return self._builder

    @property
    def bank(self) -> WeightsBank:
        assert self._bank is not None, "TreePeer.open() first"
        return self._bank

    def weights_of(self, tx_id: str) -> list[np.ndarray]:
        """Weights of one transaction of the tangle (cached, else reloaded by CID)."""
        return self.bank.get(self.tangle[tx_id].weights_cid)

    def reference_ids(self, rng: random.Random | None = None,
                      breadth: int | None = None) -> list[str]:
        """The transactions the reference model averages: the top max(REFERENCE_TOP,
        `breadth`) of the sampled ranking, vetted, at most NUM_OF_TIPS. `breadth` defaults
        to the number of acceptable frontier tips, so that with many concurrent tips the
        consensus averages all of them (a FedAvg round), not a few specialists. If none is
        acceptable: the last reference, else this peer's last transaction, else genesis.
        `rng`: sample with it instead of the peer's own stream (a read-only viewer must not
        change what a seeded peer does next; nor does it change the peer's state)."""
        s = self.settings
        own_stream = rng is None
        rng = self.rng if rng is None else rng
        if breadth is None:
            breadth = len(self.vet(self.frontier(rng), remember=own_stream))
        ids = reference(
            self.tangle, self._sampler(), rounds=s.num_of_sampling_round,
            top=max(s.reference_top, breadth), rng=rng, count=DRAWS_PER_ROUND,
            window=s.reference_window,
        )
        kept = self.vet(ids, remember=own_stream)[:s.num_of_tips] or self._fallback()
        if own_stream:
            self._last_reference = kept
            if self.observer or self._trusted is None:
                self._trusted = self._try_average(kept)
        return kept

    def frontier(self, rng: random.Random | None = None) -> list[str]:
        """Distinct tips the walks reach, most reached first (at most FRONTIER_LIMIT)."""
        s = self.settings
        return frontier(self.tangle, self._sampler(), s.num_of_sampling_round * DRAWS_PER_ROUND,
                        self.rng if rng is None else rng, FRONTIER_LIMIT)

    def _fallback(self) -> list[str]:
        """What to build on when no candidate is acceptable (see reference_ids)."""
        last = [i for i in self._last_reference if i in self.tangle]
        own = [i for i in self._state.published[-1:] if i in self.tangle]
        return last or own or [self.genesis_id]

    def _try_average(self, tx_ids: Sequence[str]) -> list[np.ndarray] | None:
        try:
            return self.average(tx_ids)
        except Exception:  # nothing loadable: keep trusting what we trusted
            return self._trusted

    def vet(self, tx_ids: Sequence[str], remember: bool = True) -> list[str]:
        """The candidates this peer may average, in the order given (gridd.tree.vetting).

        A walk must move to an approver even when it is the only one, so a noise model that
        approves a good transaction can end a walk, and attackers make tips cheaply. With
        TIP_SELECTOR accuracy each candidate is judged on local validation data by what it
        does to an average (VET_TOLERANCE, MAX_DEVIATION), against the best of the
        candidates and this peer's trusted model; the result may be empty. Candidates
        whose weights cannot be had are dropped. Other selectors keep everything (they
        promise no defence).
        """
        if self.settings.tip_selector != "accuracy" or self._trainer is None:
            return list(tx_ids)
        ids, weights = self._loadable(list(dict.fromkeys(tx_ids)), quiet=True)
        s = self.settings
        trainer = self._trainer
        verdict = judge(ids, weights, lambda w: trainer.evaluate(w).loss,
                        trusted=self._trusted, tolerance=s.vet_tolerance,
                        max_deviation=s.max_deviation, own_loss=self._cached_loss)
        if s.vet_own_accuracy and verdict.kept:
            verdict = self._own_accuracy_gate(verdict)
        if remember:
            self.last_verdict = verdict
            for reason in verdict.rejected.values():
                self.metrics.tips_vetted_out.labels(reason).inc()
        return verdict.kept

    def _own_accuracy_gate(self, verdict: Verdict) -> Verdict:
        """VET_OWN_ACCURACY: also drop candidates whose own accuracy on local data is under
        that share of the best (candidates and this peer's trusted model). It stops label
        flippers where peers hold most labels, and drops specialists where they do not."""
        scores = {i: self._cached_score(i) for i in verdict.kept}
        trusted = self.evaluate(self._trusted) if self._trusted is not None else None
        best = max([*scores.values(), trusted.accuracy if trusted else 0.0])
        floor = self.settings.vet_own_accuracy * best
        low = {i: "own_accuracy" for i, v in scores.items() if v < floor}
        return Verdict([i for i in verdict.kept if i not in low], verdict.anchor_loss,
                       verdict.mix_loss, {**verdict.rejected, **low})

    def measured_accuracy(self, tx_id: str, compute: bool = False) -> float | None:
        """Accuracy of a transaction's model on this peer's validation data: the cached
        score, or with `compute` scored now (and cached); None without data, when not
        scored yet, or when its weights cannot be loaded. For viewers (gridd.web)."""
        if self._trainer is None or tx_id not in self.tangle:
            return None
        value = self._scores.get(tx_id)
        if value is None and compute:
            value = self._cached_score(tx_id)
        return None if value is None or value == float("-inf") else value

    def evaluate(self, weights: list[np.ndarray]) -> Scores | None:
        """Loss and accuracy of `weights` on this peer's validation data (None without)."""
        return None if self._trainer is None else self._trainer.evaluate(weights)

    def _cached_loss(self, tx_id: str, weights: Sequence[np.ndarray]) -> float:
        value = self._losses.get(tx_id)
        if value is None:
            assert self._trainer is not None
            loss = self._trainer.evaluate(weights).loss
            value = self._losses[tx_id] = loss if np.isfinite(loss) else float("inf")
        return value

    def _cached_score(self, tx_id: str) -> float:
        value = self._scores.get(tx_id)
        if value is None:
            value = self._scores[tx_id] = self._score(self.tangle[tx_id])
        return value

    def consensus_weights(self) -> list[np.ndarray]:
        """The reference model's weights: the average of `reference_ids()`."""
        return self.average(self.reference_ids())

    def average(self, tx_ids: Sequence[str]) -> list[np.ndarray]:
        """Average the weights of transactions, by the samples their issuers trained on.

        As in FedAvg, a model trained on more data counts for more (on the digits benchmark
        this is worth about 3 points of accuracy under non-IID splits). The claimed sample
        counts are not verifiable, so each is clipped to SAMPLE_WEIGHT_CAP times the median
        claim among the averaged transactions and this peer's own count: a peer lying about
        its data gains at most that factor over an honest one. SAMPLE_WEIGHT_CAP 0 turns
        weighting off (plain mean).
        """
        tx_ids, weights = self._loadable(tx_ids)
        coef = [1.0] * len(weights)
        cap = self.settings.sample_weight_cap
        if cap > 0 and len(weights) >= 2:
            claims = [_claimed_samples(self.tangle[i]) for i in tx_ids]
            known = [c for c in claims if c is not None]
            if self._trainer is not None and not self.observer:
                known.append(float(self._trainer.samples))
            if known:
                limit = cap * float(np.median(known))
                floor = min(known)
                coef = [min(c, limit) if c is not None else floor for c in claims]
        updates = [Update(w, c, i) for w, c, i in zip(weights, coef, tx_ids, strict=True)]
        return FedAvg().aggregate(weights[0] if weights else [], updates)

    def _loadable(self, tx_ids: Sequence[str], quiet: bool = False
                  ) -> tuple[list[str], list[list[np.ndarray]]]:
        """The transactions whose weights can be had, with their weights. A blob that left
        this peer's retention window is fetched again; one nobody serves is skipped (an
        error only if none is left), so a training step goes on with what there is."""
        ids: list[str] = []
        weights: list[list[np.ndarray]] = []
        error: Exception | None = None
        for i in tx_ids:
            try:
                weights.append(self.weights_of(i))
            except Exception as e:
                error = e
                continue
            ids.append(i)
        if not ids and error is not None and not quiet:
            raise error
        if error is not None:
            log.info("averaging %d of %d transactions: %s", len(ids), len(tx_ids), error)
        return ids, weights

    # -- messages ----------------------------------------------------------------------------

    def process_messages(self, timeout: float = 0.0) -> int:
        """One step of the node: handle every queued message (waiting up to `timeout` for
        the first), then queue the fetches of missing ancestors and weights and take in
        what arrived. Returns the number of messages handled; bad input is counted and
        logged, never raised."""
        if self._node is None:
            raise RuntimeError("TreePeer.open() first")
        return self._node.step(timeout)

    def _after_step(self, handled: int) -> None:
        self.counters.messages += handled
        now = time.monotonic()
        if now < self._hello_until and now >= self._next_hello_check:
            self._say_hello()
        self.builder.pump()
        self._update_gauges()

    def _on_message(self, msg: Message) -> None:
        self._handle(msg.data, msg.sender)

    def _handle(self, data: bytes, sender: str) -> None:
        if sender != self.peer_id:
            self._saw(sender)
        try:
            kind, body = messages.parse(data)
        except WireError as e:
            self.builder.reject("malformed", f"message from {sender[:60]}: {e}")
            return
        if kind == messages.TX:
            # Our own echo is a known id and costs one decode; no shortcut by sender, since
            # a notebook observer may share its Kubo daemon (and peer id) with a worker.
            if sender != self.peer_id:
                self._hello_until = 0.0  # live peers: their heads will come anyway
            self.builder.offer_record(body["record"], sender=sender)  # inserts via on_insert
        elif kind == messages.HEADS:
            if sender != self.peer_id:
                self._hello_until = 0.0  # someone answered (or announced): no more hellos
            self.builder.want(body["heads"], rumour=True, origin=sender)
        elif kind == messages.HELLO and body.get("nonce") != self._nonce:
            self._answer_hello(body.get("size", 0))

    def _answer_hello(self, their_size: int) -> None:
        """Send our heads to a joining peer, if we know more than it does.

        With a hundred peers on a topic, everyone answering every hello would be ten
        thousand messages at a lab's start; so only peers ahead of the newcomer answer, and
        each with a probability that gives about HELLO_ANSWERS answers in all. Periodic
        re-announcements cover the unlucky case.
        """
        if len(self.tangle) <= their_size:
            return
        if time.monotonic() - self._last_announce < HELLO_ANSWER_GAP:
            return
        others = max(1, len(self.counters.peers_seen))
        if self.rng.random() >= HELLO_ANSWERS / others:
            return
        self.counters.hello_answered += 1
        self.announce()

    def _count_received(self, inserted: Sequence[Transaction]) -> None:
        for tx in inserted:
            self._saw(tx.issuer)
        self.counters.received += len(inserted)
        if inserted:
            self.metrics.tx_received.inc(len(inserted))

    def _saw(self, peer: str) -> None:
        seen = self.counters.peers_seen
        if peer not in seen and len(seen) >= MAX_PEERS_SEEN:
            seen.pop(next(iter(seen)))
        seen[peer] = time.time()

    def announce(self) -> None:
        """Re-announce our tips, so peers that missed a message (or just joined) catch up."""
        self._last_announce = time.monotonic()
        tips = self.tangle.tips()[-messages.MAX_HEADS:]
        self._publish(messages.heads_message(tips, len(self.tangle)))

    def _publish(self, data: bytes) -> bool:
        """Best effort (queued by the runtime): heads re-announce whatever was missed."""
        return self.node.publish(data)

    # -- training ----------------------------------------------------------------------------

    def train_step(self) -> StepResult:
        """One training attempt (see the module docstring); never publishes worse models."""
        if self._trainer is None or self.observer:
            return self._remember(StepResult(False, "observer"))
        start = time.perf_counter()
        s = self.settings
        assert self._selector is not None
        candidates = self.frontier()
        tips: tuple[str, ...] = ()
        try:
            tips = tuple(self.vet(candidates)[:s.num_of_tips])
            ref_ids = tuple(self.reference_ids(breadth=len(tips)))
            ref = self._trainer.evaluate(self.average(ref_ids))
            # Build only on tips worth building on; if none is, on the reference itself.
            tips = tips or ref_ids
            start_weights = self._start_weights(tips)
        except Exception as e:  # pinned content should not vanish; if it does, skip a round
            log.warning("weights unavailable for training: %s", e)
            return self._remember(StepResult(False, "weights_unavailable", parents=tips))
        trained, seconds = self._trainer.train(start_weights, seed=self.rng.randrange(2**31))
        self._trusted = trained
        self.metrics.trainings.inc()
        self.metrics.training_seconds.observe(seconds)
        self._state.trainings += 1
        self._state.client_epochs += self._trainer.recipe.local_epochs
        local = self._trainer.evaluate(trained)
        before = self._trainer.evaluate(start_weights)
        m = self.metrics
        m.local_accuracy.set(local.accuracy)
        m.local_loss.set(local.loss)
        m.consensus_accuracy.set(ref.accuracy)
        m.consensus_loss.set(ref.loss)
        tx_id = None
        if local.beats(before, s.min_improvement):
            tx_id = self._publish_tx(tips, trained, local, ref)
        if self.state_dir is not None:
            save_state(self.state_dir, self._state)
        result = StepResult(
            tx_id is not None, "published" if tx_id else "not_better", tx_id, tips, local, ref,
            ref_ids, time.perf_counter() - start, before,
        )
        log.info("step: local acc %.4f vs its start %.4f (consensus %.4f, %d tips) -> %s%s",
                 local.accuracy, before.accuracy, ref.accuracy, len(set(tips)), result.reason,
                 f" {tx_id[:12]}" if tx_id else "")
        self._update_gauges()
        return self._remember(result)

    def _start_weights(self, tips: Sequence[str]) -> list[np.ndarray]:
        """The average of `tips`, carried MOMENTUM further along the network's last step
        (that average minus the average of the tips' parents). Only over two or more tips:
        one tip's step is one peer's update, and extrapolating a specialist's update
        under label skew (peers training one after another) cost 35 points on the bench.
        Without the parents' weights, or at genesis, the plain average."""
        current = self.average(list(dict.fromkeys(tips)))
        momentum = self.settings.momentum
        parents = list(dict.fromkeys(p for t in tips for p in self.tangle[t].parents
                                     if p in self.tangle))
        if not momentum or not parents or len(set(tips)) < 2:
            return current
        try:
            previous = self.average(parents)
        except Exception as e:  # parents outside retention and nobody serves them
            log.info("no momentum this step: %s", e)
            return current
        return extrapolate(current, previous, momentum)

    def _remember(self, result: StepResult) -> StepResult:
        self.last_step = result
        return result

    def _publish_tx(self, tips: tuple[str, ...], weights: list[np.ndarray], local: Scores,
                    ref: Scores) -> str:
        assert self._trainer is not None
        weights_cid = self.bank.put(weights)
        unsigned = Transaction.create(
            tips, weights_cid, self.peer_id, self.clock(),
            metadata={
                "accuracy": round(local.accuracy, 6),
                "loss": round(local.loss, 6) if np.isfinite(local.loss) else None,
                "reference_accuracy": round(ref.accuracy, 6),
                "client_epochs": self._state.client_epochs,
                "samples": self._trainer.samples,
            },
        )
        tx = unsigned.signed(self.broker.sign(unsigned.signing_bytes()))
        put_record(self.store, tx)
        self.tangle.add(tx)
        if self._txlog is not None:
            self._txlog.append(tx, sync=True)
        self._state.published.append(tx.id)
        del self._state.published[:-MAX_PUBLISHED_KEPT]
        if self.state_dir is not None:
            save_state(self.state_dir, self._state)
        self._publish(messages.tx_message(tx))
        self.counters.published += 1
        self.metrics.tx_published.inc()
        return tx.id

    def _make_selector(self) -> TipSelector:
        s = self.settings
        seed = self.rng.randrange(2**31)
        if s.tip_selector == "uniform":
            return UniformSelector(seed=seed)
        if s.tip_selector == "accuracy" and self._trainer is not None:
            return AccuracyWalkSelector(self._score, alpha=s.alpha, seed=seed,
                                        cache=self._scores)
        return RandomWalkSelector(alpha=s.alpha if s.tip_selector == "random_walk" else 0.001,
                                  seed=seed)

    def _sampler(self) -> TipSelector:
        assert self._selector is not None, "TreePeer.open() first"
        return self._selector

    def _score(self, tx: Transaction) -> float:
        assert self._trainer is not None
        try:
            return self._trainer.evaluate(self.bank.get(tx.weights_cid)).accuracy
        except Exception:
            return float("-inf")

    # -- daemon loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The daemon: every TRAINING_INTERVAL train with probability ACTIVE_QUOTA,
        re-announce tips every ANNOUNCE_INTERVAL, and read messages in between (even with
        TRAINING_INTERVAL 0). Returns when `stop` is set."""
        s = self.settings
        node = self.node
        node.every(s.announce_interval, self.announce, name="announce")
        node.every(s.training_interval, self._maybe_train, name="train",
                   first=s.training_interval * self.rng.uniform(0.5, 1.0))
        if self.keeper.enabled:
            node.every(s.retention_interval, self.prune_storage, name="retention",
                       first=s.retention_interval)
        node.run(stop)

    @property
    def keeper(self) -> StorageKeeper:
        assert self._keeper is not None, "TreePeer.open() first"
        return self._keeper

    def prune_storage(self) -> None:
        """Apply the retention policy now: unpin weights outside RETENTION_WINDOW (in the
        fetch pool; with an in-memory store it completes before this returns), and compact
        tangle.log if it grew past LOG_COMPACT_BYTES. See gridd.tree.retention."""
        self.keeper.maybe_compact(self.tangle)
        self.keeper.prune(self.tangle, lambda: self._state.published)
        if self.node.fetcher.inline:
            self.node.fetcher.run_callbacks()

    def _maybe_train(self) -> None:
        if self.rng.random() < self.settings.active_quota:
            self.train_step()

    def _update_gauges(self) -> None:
        if self._tangle is None:
            return
        m = self.metrics
        m.pending.set(self._tangle.pending_count)
        m.tangle_size.set(len(self._tangle))
        m.peers_seen.set(len(self.counters.peers_seen))


class _BoundedScores(dict):  # type: ignore[type-arg]
    """Accuracy scores by transaction id, dropping the oldest beyond `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: str, value: float) -> None:
        if key not in self and len(self) >= self.limit:
            del self[next(iter(self))]
        super().__setitem__(key, value)


def _claimed_samples(tx: Transaction) -> float | None:
    """The `samples` an issuer reported, if it is a usable positive number."""
    value = tx.metadata.get("samples")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if np.isfinite(value) and value >= 1 else None


def _check_dataset(genesis: Genesis, dataset: Dataset) -> None:
    """DataError in a sentence when the data does not fit the tangle's recipe."""
    recipe = genesis.recipe
    for name, x, y in (("x", dataset.x, dataset.y), ("x_val", dataset.x_val, dataset.y_val)):
        try:
            check_xy(recipe, x, y)
        except ValueError as e:
            raise DataError(
                f"data does not fit tangle {genesis.id[:12]} (input shape "
                f"{recipe.input_shape}, {recipe.classes} classes): {name}/{e}"
            ) from None
