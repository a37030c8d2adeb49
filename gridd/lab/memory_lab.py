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


def run_memory_lab(opts: LabOptions, data: LabData, progress: Progress | None = None) -> LabResult:
    started = time.monotonic()
    net = MemoryNetwork()
    recipe = digits_recipe()
    genesis_id = create_genesis(net.store(), recipe, init_seed=opts.seed, issuer="lab")
    settings = opts.tree_settings("memory")
    clock = OverlapClock(opts.overlap)
    peers: list[TreePeer | RandomWeightsAttacker] = []
    for i, dataset in enumerate(data.peers):
        broker = OverlapBroker(net.broker(f"peer-{i:03d}"), clock)
        if i in data.malicious and data.attack == "random":
            peers.append(RandomWeightsAttacker(genesis_id, broker, net.store(), opts.seed + i))
        else:
            peers.append(TreePeer(genesis_id=genesis_id, broker=broker, store=net.store(),
                                  dataset=dataset, settings=settings, seed=opts.seed + i,
                                  prefer="numpy" if opts.model == "no_tf" else "keras"))
    observer = make_observer(genesis_id, net.broker("observer"), net.store(),
                             observer_data(data), settings, seed=opts.seed + 10_000)
    for p in (*peers, observer):
        p.open()
    result = LabResult(opts, genesis_id)
    start_acc = holdout_accuracy(recipe, observer.consensus_weights(), data.x_test, data.y_test)
    result.timeline.append(Point(0.0, 0, len(observer.tangle), start_acc))
    rng = random.Random(opts.seed)
    trainers = [p for p in peers if isinstance(p, TreePeer)]
    epochs = 0
    try:
        while epochs < opts.budget:
            order = list(peers)
            rng.shuffle(order)
            for peer in order:
                peer.process_messages()
                if rng.random() < opts.active_quota and epochs < opts.budget:
                    clock.tick()
                    peer.process_messages()
                    peer.train_step()
                    epochs = sum(p.client_epochs for p in trainers)
            observer.process_messages()
            acc = holdout_accuracy(recipe, observer.consensus_weights(), data.x_test, data.y_test)
            point = Point(time.monotonic() - started, epochs, len(observer.tangle), acc)
            result.timeline.append(point)
            if progress is not None:
                progress(epochs, acc, point.transactions)
        result.staleness_median = median_staleness(observer.tangle)
    finally:
        for p in (*peers, observer):
            p.close()
    result.wall_seconds = time.monotonic() - started
    result.peak_memory_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result
