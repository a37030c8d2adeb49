"""`gridd lab --transport memory`: every peer in this process on one in-memory network.

Peers are stepped from one loop (no threads): in each round every peer, in a seeded random
order, reads what has arrived and, with probability ACTIVE_QUOTA, makes one training attempt.
Time is modelled by `overlap`: a published message reaches the others only after `overlap`
more trainings have started, as on a network where trainings run at the same time. overlap=0
is strictly one-after-another (the tangle becomes a chain); overlap=N-1 is the pessimistic
case of synchronized rounds in which every peer trains on the same snapshot. The default, 2,
gives the median staleness (see staleness.py) measured with 10 real Kubo peers training
every 0.5 s on this 2-core machine: 1 transaction.
An observer (a TreePeer that never trains; see partition.observer_data) follows the tangle;
its reference model is the consensus scored on the held-out test set after each round.
"""

from __future__ import annotations

import itertools
import random
import resource
import time
from collections.abc import Callable

from gridd.lab.attackers import RandomWeightsAttacker
from gridd.lab.options import LabOptions, LabResult, Point, digits_recipe, holdout_accuracy
from gridd.lab.partition import LabData, observer_data
from gridd.lab.staleness import median_staleness
from gridd.transport import Broker, Inbox, MemoryNetwork, Sink
from gridd.tree.genesis import create_genesis
from gridd.tree.notebook import make_observer
from gridd.tree.peer import TreePeer

MAX_IDLE_ROUNDS = 50  # rounds in which nobody trained before a lab gives up
LAB_EPOCH = 1_700_000_000.0  # a lab's simulated clock starts here (unix seconds)
Progress = Callable[[int, float, int], None]  # (client_epochs, accuracy, transactions)


class OverlapBroker(Broker):
    """Holds each published message back until `overlap` more trainings have started.

    This is how the in-memory lab models time: on a real network a training overlaps with
    the trainings of others that started before its result arrived. overlap=0 delivers at
    once (peers train strictly one after another); overlap=N-1 makes a round of N peers
    train on the same snapshot of the tangle, like synchronized FedAvg rounds.
    """

    def __init__(self, inner: Broker, clock: OverlapClock) -> None:
        self.inner = inner
        self.clock = clock
        self.peer_id = inner.peer_id
        self.max_message_size = inner.max_message_size
        self.blocking = inner.blocking

    def publish(self, topic: str, data: bytes) -> None:
        self.check_size(data)
        self.clock.hold(self.inner, topic, data)

    def subscribe(self, topic: str, sink: Sink | None = None) -> Inbox:
        return self.inner.subscribe(topic, sink)

    def topic_peers(self, topic: str) -> list[str]:
        return self.inner.topic_peers(topic)

    def sign(self, data: bytes) -> bytes:
        return self.inner.sign(data)

    def verify(self, author: str, data: bytes, signature: bytes) -> bool:
        return self.inner.verify(author, data, signature)


class OverlapClock:
    """Counts training starts and releases held messages when their time has come."""

    def __init__(self, overlap: int) -> None:
        self.overlap = overlap
        self.started = 0
        self._held: list[tuple[int, Broker, str, bytes]] = []

    def hold(self, broker: Broker, topic: str, data: bytes) -> None:
        self._held.append((self.started + self.overlap, broker, topic, data))
        self.release()

    def tick(self) -> None:
        self.started += 1
        self.release()

    def release(self, everything: bool = False) -> None:
        due = [h for h in self._held if everything or h[0] <= self.started]
        self._held = [h for h in self._held if h not in due]
        for _, broker, topic, data in due:
            broker.publish(topic, data)


class MemoryLab:
    """The in-memory lab as an object: open(), then one `round()` at a time, then close().

    `run_memory_lab` drives it to the client-epoch budget; tests and the view benchmark
    step it themselves (a lab that stays up while a browser or Prometheus looks at it).
    """

    def __init__(self, opts: LabOptions, data: LabData) -> None:
        self.opts = opts
        self.data = data
        self.started = time.monotonic()
        self.net = MemoryNetwork()
        self.recipe = digits_recipe()
        # Simulated issue times: transaction ids hash their time, and ids break ties in tip
        # and reference selection, so wall-clock times made a seeded lab differ run to run.
        ticks = itertools.count()
        self.now = lambda: LAB_EPOCH + 0.001 * next(ticks)
        self.genesis_id = create_genesis(self.net.store(), self.recipe, init_seed=opts.seed,
                                         issuer="lab", created_at=self.now())
        settings = opts.tree_settings("memory")
        self.clock = OverlapClock(opts.overlap)
        self.peers: list[TreePeer | RandomWeightsAttacker] = []
        for i, dataset in enumerate(data.peers):
            broker = OverlapBroker(self.net.broker(f"peer-{i:03d}"), self.clock)
            if i in data.malicious and data.attack == "random":
                self.peers.append(RandomWeightsAttacker(self.genesis_id, broker,
                                                        self.net.store(), opts.seed + i,
                                                        clock=self.now))
            else:
                self.peers.append(TreePeer(
                    genesis_id=self.genesis_id, broker=broker, store=self.net.store(),
                    dataset=dataset, settings=settings, seed=opts.seed + i,
                    prefer="numpy" if opts.model == "no_tf" else "keras", clock=self.now))
        self.observer = make_observer(self.genesis_id, self.net.broker("observer"),
                                      self.net.store(), observer_data(data), settings,
                                      seed=opts.seed + 10_000)
        self.trainers = [p for p in self.peers if isinstance(p, TreePeer)]
        self.rng = random.Random(opts.seed)
        self.epochs = 0

    def open(self) -> Point:
        for p in (*self.peers, self.observer):
            p.open()
        return Point(0.0, 0, len(self.observer.tangle), self.test_accuracy())

    def test_accuracy(self) -> float:
        """The observer's consensus model scored on the held-out test set."""
        return holdout_accuracy(self.recipe, self.observer.consensus_weights(),
                                self.data.x_test, self.data.y_test)

    def round(self, budget: int | None = None) -> Point:
        """Every peer, in a seeded order, reads its messages and (with ACTIVE_QUOTA) trains
        once, until `budget` client-epochs are spent; then the observer catches up."""
        opts = self.opts
        budget = opts.budget if budget is None else budget
        order = list(self.peers)
        self.rng.shuffle(order)
        for peer in order:
            peer.process_messages()
            if self.rng.random() < opts.active_quota and self.epochs < budget:
                self.clock.tick()
                peer.process_messages()
                peer.train_step()
                self.epochs = sum(p.client_epochs for p in self.trainers)
        self.observer.process_messages()
        return Point(time.monotonic() - self.started, self.epochs, len(self.observer.tangle),
                     self.test_accuracy())

    def close(self) -> None:
        for p in (*self.peers, self.observer):
            p.close()


def run_memory_lab(opts: LabOptions, data: LabData, progress: Progress | None = None,
                   on_ready: Callable[[MemoryLab], None] | None = None,
                   on_point: Callable[[Point], None] | None = None) -> LabResult:
    """Run the lab to its client-epoch budget. `on_ready(lab)` once every peer is open
    (the CLI starts the web view and metrics there); `on_point` after each round, from this
    thread (the observer's)."""
    lab = MemoryLab(opts, data)
    result = LabResult(opts, lab.genesis_id)
    try:
        result.timeline.append(lab.open())
        if on_ready is not None:
            on_ready(lab)
        idle = 0
        while lab.epochs < opts.budget:
            before = lab.epochs
            point = lab.round()
            idle = idle + 1 if lab.epochs == before else 0
            if idle >= MAX_IDLE_ROUNDS:  # no peer could train: report, do not spin forever
                result.notes.append(f"stopped: no training for {idle} rounds "
                                    f"({lab.epochs} of {opts.budget} client-epochs)")
                break
            result.timeline.append(point)
            if on_point is not None:
                on_point(point)
            if progress is not None:
                progress(point.client_epochs, point.consensus_accuracy, point.transactions)
        result.staleness_median = median_staleness(lab.observer.tangle)
    finally:
        lab.close()
    result.wall_seconds = time.monotonic() - lab.started
    result.peak_memory_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result
