"""Helpers shared by the tree-mode tests (imported by name; pytest puts this dir on sys.path)."""

from __future__ import annotations

from pathlib import Path

from gridd.data import Dataset
from gridd.metrics import TreeMetrics
from gridd.models import Recipe
from gridd.transport import Broker, Store
from gridd.tree.peer import TreePeer
from gridd.tree.settings import TreeSettings

DIGITS = Recipe("digits_mlp", (64,), 10, learning_rate=0.1, batch_size=16, local_epochs=1)


def fast_settings(**kw: object) -> TreeSettings:
    """Small, deterministic settings: numpy model, few sampling rounds, short timeouts."""
    base: dict[str, object] = dict(model="no_tf", num_of_sampling_round=8, timeout=5.0,
                                   training_interval=0.0, announce_interval=1.0)
    base.update(kw)
    return TreeSettings(**base)  # type: ignore[arg-type]


def make_peer(genesis_id: str, broker: Broker, store: Store, dataset: Dataset | None,
              settings: TreeSettings | None = None, seed: int = 0,
              state_dir: Path | None = None) -> TreePeer:
    peer = TreePeer(genesis_id=genesis_id, broker=broker, store=store, dataset=dataset,
                    settings=settings or fast_settings(), seed=seed, prefer="numpy",
                    state_dir=state_dir, metrics=TreeMetrics())
    peer.open()
    return peer


def sync(peers: list[TreePeer], rounds: int = 3) -> None:
    """Let every peer drain its inbox a few times (answers to hellos need a second pass)."""
    for _ in range(rounds):
        for p in peers:
            p.process_messages()


def tx_ids(peer: TreePeer) -> set[str]:
    return {tx.id for tx in peer.tangle.transactions()}


def rejected(peer: TreePeer, reason: str) -> float:
    value = peer.metrics.registry.get_sample_value("gridd_tx_rejected_total", {"reason": reason})
    return value or 0.0


def sample(peer: TreePeer, name: str) -> float:
    return peer.metrics.registry.get_sample_value(name) or 0.0

