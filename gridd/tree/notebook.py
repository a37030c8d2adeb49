"""Looking at a tangle from Jupyter: `Client().tangle(id)` and `Client().create_tangle(model)`.

A notebook follows a tangle as an *observer* TreePeer (no data, never trains) on the
client's own Kubo daemon. Joining sends a hello, other peers answer with their heads, and
the observer pulls the history from IPFS; `refresh()` does that again later. Nothing runs
in the background, so a notebook cell never races a hidden thread.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gridd.models import Recipe, build_model
from gridd.tree.genesis import create_genesis as _create_genesis
from gridd.tree.peer import TreePeer
from gridd.tree.settings import TreeSettings, load_tree_settings

DEFAULT_WAIT = 5.0
MIN_WAIT = 1.0


class TangleView:
    """What a notebook sees of one tangle; call refresh() to catch up with the network."""

    def __init__(self, peer: TreePeer) -> None:
        self.peer = peer

    @property
    def genesis_id(self) -> str:
        return self.peer.genesis_id

    @property
    def recipe(self) -> Recipe:
        assert self.peer.genesis is not None
        return self.peer.genesis.recipe

    def refresh(self, wait: float = DEFAULT_WAIT) -> TangleView:
        """Process messages and fetch history for up to `wait` seconds.

        Returns early once caught up: after MIN_WAIT seconds, with transactions beyond the
        genesis and nothing left to fetch (any transaction heard pulls in its ancestors, so
        a live tangle needs no silence to be caught up with).
        """
        start = time.monotonic()
        while time.monotonic() - start < wait:
            self.peer.process_messages(timeout=0.2)
            if (time.monotonic() - start >= MIN_WAIT and len(self.peer.tangle) > 1
                    and not self.peer.builder.outstanding):
                break
        return self

    @property
    def peers(self) -> list[str]:
        """Peers heard on the topic or seen as issuers of transactions."""
        return self.peer.peers_seen

    @property
    def transaction_count(self) -> int:
        return len(self.peer.tangle)

    @property
    def pending_count(self) -> int:
        return self.peer.tangle.pending_count

    def reference_ids(self) -> list[str]:
        return self.peer.reference_ids()

    @property
    def consensus_accuracy(self) -> float | None:
        """Accuracy of the reference transactions as their issuers reported it (their own
        validation data); None while only the genesis exists."""
        values = []
        for tx_id in self.reference_ids():
            value = self.peer.tangle[tx_id].metadata.get("accuracy")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values.append(float(value))
        return float(np.mean(values)) if values else None

    def weights(self) -> list[np.ndarray]:
        """The consensus (reference) model's weights."""
        return self.peer.consensus_weights()

    def model(self) -> Any:
        """The consensus model as a compiled Keras model (needs TensorFlow)."""
        assert self.peer.genesis is not None
        g = self.peer.genesis
        adapter = build_model(g.recipe, self.weights(), prefer="keras",
                              keras_model=g.keras_bytes)
        keras_model = getattr(adapter, "model", None)
        if keras_model is None:
            raise RuntimeError("a Keras model needs TensorFlow (MODEL=no_tf is set?)")
        return keras_model

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Accuracy and loss of the consensus model on your data (numpy or Keras adapter)."""
        g = self.peer.genesis
        assert g is not None
        return build_model(g.recipe, self.weights(), keras_model=g.keras_bytes).evaluate(x, y)

    def summary(self) -> dict[str, Any]:
        acc = self.consensus_accuracy
        return {
            "genesis": self.genesis_id,
            "transactions": self.transaction_count,
            "pending": self.pending_count,
            "peers": len(self.peers),
            "consensus_accuracy": acc,
        }

    def __repr__(self) -> str:
        s = self.summary()
        acc = "n/a" if s["consensus_accuracy"] is None else f"{s['consensus_accuracy']:.4f}"
        return (f"<Tangle {s['genesis'][:12]}…: {s['transactions']} transactions, "
                f"{s['peers']} peers seen, consensus accuracy {acc} (reported)>")

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in self.summary().items())
        return f"<table>{rows}</table>"

    def close(self) -> None:
        self.peer.close()


def _observer(client: Any, genesis_id: str, settings: TreeSettings | None) -> TreePeer:
    peer = TreePeer(
        genesis_id=genesis_id, broker=client.broker, store=client.store, dataset=None,
        settings=settings or load_tree_settings(), state_dir=None,
    )
    peer.open()
    return peer


def open_tangle(client: Any, genesis_id: str, *, wait: float = DEFAULT_WAIT,
                settings: TreeSettings | None = None) -> TangleView:
    """Follow an existing tangle and catch up for up to `wait` seconds."""
    view = TangleView(_observer(client, genesis_id, settings))
    if wait > 0:
        view.refresh(wait)
    return view


def create_tangle(client: Any, model: Any = None, recipe: Recipe | None = None, *,
                  init_seed: int = 0, settings: TreeSettings | None = None) -> TangleView:
    """Make a genesis and follow it; peers join with start_worker --tree --genesis <id>.

    `model` is a Keras model (its architecture travels as a .keras file; `recipe` supplies
    the training settings) or None with a builtin-architecture `recipe`.
    """
    if model is None and recipe is None:
        raise ValueError("create_tangle needs a Keras model or a builtin-architecture recipe")
    if model is None:
        assert recipe is not None
        genesis_id = _create_genesis(client.store, recipe, init_seed=init_seed,
                                     issuer=client.peer_id)
    else:
        genesis_id = _create_genesis(client.store, recipe or _default_recipe(model),
                                     keras_model=model, init_seed=init_seed,
                                     issuer=client.peer_id)
    return TangleView(_observer(client, genesis_id, settings))


def _default_recipe(model: Any) -> Recipe:
    """Recipe defaults for a Keras model (create_genesis fills input shape and classes)."""
    return Recipe("keras", tuple(int(d) for d in model.input_shape[1:]),
                  int(model.output_shape[-1]))
