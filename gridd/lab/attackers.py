"""Adversaries for the lab. Label flippers are honest code on poisoned data (see partition);
a random attacker runs no training at all and publishes noise as fast as honest peers train.

The attacker speaks the real protocol (its transactions are valid, its records and weights
are in the store, its sender is verified), so what stops it is only the tangle's rule that a
peer builds on what helps on its own data.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np

from gridd.transport import Broker, Store
from gridd.tree import messages
from gridd.tree.genesis import Genesis, load_genesis, put_record
from gridd.wire import encode_weights
from tangle import Transaction

NOISE_SCALE = 1.0


class RandomWeightsAttacker:
    """Each step: approve two random tips with a transaction whose weights are random noise."""

    def __init__(self, genesis_id: str, broker: Broker, store: Store, seed: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.genesis_id = genesis_id
        self.broker = broker
        self.store = store
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.peer_id = broker.peer_id
        self.clock = clock
        self.published = 0
        self._genesis: Genesis | None = None
        self._seen: list[str] = []
        self._inbox = broker.subscribe(messages.topic_for(genesis_id))

    def open(self) -> None:
        self._genesis = load_genesis(self.store, self.genesis_id)
        self._seen = [self.genesis_id]

    def process_messages(self, timeout: float = 0.0) -> int:
        """Remember announced transaction ids (attackers do not care about validity)."""
        handled = 0
        while (msg := self._inbox.get(timeout if handled == 0 else 0.0)) is not None:
            handled += 1
            try:
                kind, body = messages.parse(msg.data)
                if kind == messages.TX:
                    self._seen.append(messages.decode_record(body["record"]).id)
            except ValueError:
                continue
        return handled

    def train_step(self) -> None:
        assert self._genesis is not None, "open() first"
        noise = [
            self.np_rng.normal(0, NOISE_SCALE, size=w.shape).astype(w.dtype)
            for w in self._genesis.weights
        ]
        cid = self.store.put(encode_weights(noise), pin=True)
        recent = self._seen[-20:]
        parents = {self.rng.choice(recent) for _ in range(2)}
        tx = Transaction.create(parents, cid, self.peer_id, self.clock(),
                                metadata={"accuracy": 1.0})  # it lies about its accuracy
        tx = tx.signed(self.broker.sign(tx.signing_bytes()))  # a peer like any other
        put_record(self.store, tx)
        self._seen.append(tx.id)
        self.broker.publish(messages.topic_for(self.genesis_id), messages.tx_message(tx))
        self.published += 1

    def close(self) -> None:
        self._inbox.close()

