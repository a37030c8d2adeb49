"""Looking at a tangle from Jupyter: `Client().tangle(id)` and `Client().create_tangle(model)`.

A notebook follows a tangle as an *observer* TreePeer on the client's own Kubo daemon: it
never trains and never publishes a transaction. Joining sends a hello, other peers answer
with their heads, and the observer pulls the history from IPFS; `refresh()` does that again
later. Nothing runs in the background, so a notebook cell never races a hidden thread.

Given `validation=(x, y)` the observer judges the tangle like a training peer: it scores
candidates on that data (the accuracy walk, TIP_SELECTOR's default), refuses ones far worse
than the best (VET_RATIO), and reports the consensus model's accuracy measured on that data.
Without it nothing can be checked: a noise model that approves a good transaction can
become the consensus, and the only accuracies known are what issuers say about themselves,
so the view warns once and labels those figures as self-reported. The lab builds its
observer with `make_observer` too, so a benchmark measures what notebook users get.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import numpy as np

from gridd.data import DataError, Dataset, _check_x, _check_y
from gridd.models import ModelAdapter, Recipe, build_model
from gridd.transport import Broker, Store
from gridd.tree.genesis import create_genesis as _create_genesis
from gridd.tree.peer import TreePeer
from gridd.tree.settings import TreeSettings, load_tree_settings

DEFAULT_WAIT = 5.0
MIN_WAIT = 1.0
SELF_REPORTED = "self-reported"
VALIDATION = "validation"

Validation = tuple[Any, Any] | Dataset


class NoValidationWarning(UserWarning):
    """A tangle is followed without validation data: nothing is vetted or measured."""


def validation_dataset(validation: Validation) -> Dataset:
    """An observer's data from `validation=(x, y)`: scored on, never trained on.

    Checked here with the rules a peer's .npz file gets (numeric, finite, integer labels,
    one label per row); the fit to the genesis recipe (input shape, classes) is checked when
    the observer opens, by the same code that checks a training peer's data. A Dataset is
    taken as is (the lab passes the pooled validation splits of honest peers).
    """
    if isinstance(validation, Dataset):
        return validation
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise TypeError(f"validation: expected a pair (x, y) of arrays, got "
                        f"{type(validation).__name__}")
    x = _check_x("validation x", np.asarray(validation[0]), None)
    y = _check_y("validation y", np.asarray(validation[1]), len(x), "validation x", None)
    return Dataset(x, y, x, y)


def make_observer(genesis_id: str, broker: Broker, store: Store,
                  validation: Validation | None, settings: TreeSettings,
                  seed: int | None = None) -> TreePeer:
    """An observer TreePeer (not opened): with validation data it selects and vets like a
    training peer; it never trains or publishes (`observer=True`).

    One construction for notebooks and the lab, so that benchmarks measure what users get.
    """
    dataset = None if validation is None else validation_dataset(validation)
    return TreePeer(genesis_id=genesis_id, broker=broker, store=store, dataset=dataset,
                    settings=settings, state_dir=None, seed=seed, observer=True)


class TangleView:
    """What a notebook sees of one tangle; call refresh() to catch up with the network.

    `accuracy` is measured on the validation data the view was opened with (None without);
    `reported_accuracy` is what the issuers claim, which nobody has checked.
    """

    def __init__(self, peer: TreePeer) -> None:
        self.peer = peer
        self._consensus: tuple[int, list[str], list[np.ndarray]] | None = None
        self._measured: tuple[int, dict[str, float]] | None = None
        self._adapter: ModelAdapter | None = None

    @property
    def genesis_id(self) -> str:
        return self.peer.genesis_id

    @property
    def recipe(self) -> Recipe:
        assert self.peer.genesis is not None
        return self.peer.genesis.recipe

    @property
    def validation(self) -> Dataset | None:
        """The data candidates are vetted and the consensus is measured on, if any."""
        return self.peer.dataset

    @property
    def accuracy_source(self) -> str:
        """"validation" if `accuracy` is measured on your data, else "self-reported"."""
        return SELF_REPORTED if self.validation is None else VALIDATION

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

    def _current(self) -> tuple[int, list[str], list[np.ndarray]]:
        """The consensus of the tangle as it is now, chosen once per tangle size.

        Choosing samples random walks, so two calls could pick different references; the
        weights, model() and accuracy of one tangle state must describe the same model.
        """
        size = len(self.peer.tangle)
        if self._consensus is None or self._consensus[0] != size:
            ids = self.peer.reference_ids()
            self._consensus = (size, ids, self.peer.average(ids))
        return self._consensus

    def reference_ids(self) -> list[str]:
        """The transactions the consensus model averages (vetted with validation data)."""
        return list(self._current()[1])

    @property
    def reported_accuracy(self) -> float | None:
        """Self-reported, not measured: the mean accuracy the reference transactions' issuers
        claim on their own validation data (an attacker can claim 1.0); None while only the
        genesis exists. See `accuracy` for a measurement."""
        values = []
        for tx_id in self.reference_ids():
            value = self.peer.tangle[tx_id].metadata.get("accuracy")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values.append(float(value))
        return float(np.mean(values)) if values else None

    @property
    def consensus_accuracy(self) -> float | None:
        """Self-reported by the issuers, not measured (the same as `reported_accuracy`)."""
        return self.reported_accuracy

    @property
    def accuracy(self) -> float | None:
        """The consensus model's accuracy measured on the validation data; None without
        validation data (open the tangle with validation=(x, y))."""
        if self.validation is None:
            return None
        size = len(self.peer.tangle)
        if self._measured is None or self._measured[0] != size:
            self._measured = (size, self.evaluate())
        return self._measured[1][self.recipe.metric]

    def weights(self) -> list[np.ndarray]:
        """The consensus (reference) model's weights."""
        return [w.copy() for w in self._current()[2]]

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

    def evaluate(self, x: np.ndarray | None = None, y: np.ndarray | None = None
                 ) -> dict[str, float]:
        """Accuracy and loss of the consensus model on (x, y), by default the validation data."""
        if x is None and y is None:
            if self.validation is None:
                raise ValueError("evaluate() needs (x, y): this view has no validation data "
                                 "(open the tangle with validation=(x, y))")
            x, y = self.validation.x_val, self.validation.y_val
        elif x is None or y is None:
            raise ValueError("evaluate(x, y): give both or neither")
        if self._adapter is None:  # built once: a Keras model takes seconds to build
            g = self.peer.genesis
            assert g is not None
            self._adapter = build_model(g.recipe, None, self.peer.prefer,
                                        keras_model=g.keras_bytes)
        self._adapter.set_weights(self._current()[2])
        return self._adapter.evaluate(x, y)

    def summary(self) -> dict[str, Any]:
        return {
            "genesis": self.genesis_id,
            "transactions": self.transaction_count,
            "pending": self.pending_count,
            "peers": len(self.peers),
            "accuracy": self.accuracy,
            "accuracy_source": self.accuracy_source,
            "validation_samples": None if self.validation is None else len(self.validation.y_val),
            "reported_accuracy": self.reported_accuracy,
        }

    def __repr__(self) -> str:
        s = self.summary()
        if s["accuracy"] is not None:
            acc = (f"consensus accuracy {s['accuracy']:.4f} measured on "
                   f"{s['validation_samples']} validation samples")
        else:
            reported = s["reported_accuracy"]
            value = "n/a" if reported is None else f"{reported:.4f}"
            acc = f"consensus accuracy {value} ({SELF_REPORTED} by issuers, not vetted)"
        return (f"<Tangle {s['genesis'][:12]}…: {s['transactions']} transactions, "
                f"{s['peers']} peers seen, {acc}>")

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in self.summary().items())
        return f"<table>{rows}</table>"

    def close(self) -> None:
        self.peer.close()


def _open_observer(client: Any, genesis_id: str, validation: Validation | None,
                   settings: TreeSettings | None) -> TreePeer:
    peer = make_observer(genesis_id, client.broker, client.store, validation,
                         settings or load_tree_settings())
    try:
        peer.open()
    except DataError as e:  # the recipe check: say which argument does not fit
        peer.close()
        raise DataError(f"validation=(x, y): {e}") from None
    except BaseException:
        peer.close()
        raise
    if validation is None:
        warnings.warn(
            f"tangle {genesis_id[:12]} is followed with no validation data: tips and the "
            "consensus are not vetted (a noise model can become the consensus), and "
            "accuracies are the issuers' self-reported figures, not measurements. Pass "
            "validation=(x, y) to vet candidates and measure accuracy on your own data.",
            NoValidationWarning, stacklevel=3,
        )
    return peer


def open_tangle(client: Any, genesis_id: str, *, validation: Validation | None = None,
                wait: float = DEFAULT_WAIT, settings: TreeSettings | None = None
                ) -> TangleView:
    """Follow an existing tangle and catch up for up to `wait` seconds.

    validation=(x, y): labelled data in the genesis recipe's input shape and classes, used
    only to vet candidates and measure the consensus (never trained on, never sent).
    """
    view = TangleView(_open_observer(client, genesis_id, validation, settings))
    if wait > 0:
        view.refresh(wait)
    return view


def create_tangle(client: Any, model: Any = None, recipe: Recipe | None = None, *,
                  init_seed: int = 0, validation: Validation | None = None,
                  settings: TreeSettings | None = None, batch_size: int | None = None,
                  local_epochs: int | None = None) -> TangleView:
    """Make a genesis and follow it; peers join with start_worker --tree --genesis <id>.

    `model` is a compiled Keras model (or a .keras file saved from one): its architecture
    and current weights travel as a .keras file, and peers train as it is compiled
    (recipe_from_model: SGD or Adam with its learning rate, sparse categorical
    cross-entropy, accuracy), with `batch_size` and `local_epochs` (default 16 and 1).
    Compile settings a recipe cannot carry, and an uncompiled model, raise
    UnsupportedCompileError rather than being replaced by defaults.
    An explicit `recipe` (see Recipe) wins over the compile settings; with model=None it
    names a builtin architecture. `validation` as for open_tangle.
    """
    if model is None and recipe is None:
        raise ValueError("create_tangle needs a compiled Keras model or a builtin-architecture "
                         "recipe")
    if recipe is not None and (batch_size is not None or local_epochs is not None):
        raise ValueError("batch_size and local_epochs go inside recipe= when one is given")
    if model is None:
        assert recipe is not None
        genesis_id = _create_genesis(client.store, recipe, init_seed=init_seed,
                                     issuer=client.peer_id)
    else:
        if recipe is None:
            from gridd.models.keras_model import load_keras_file, recipe_from_model

            if isinstance(model, (bytes, str, os.PathLike)):  # a .keras file keeps its compile
                model = load_keras_file(model, compile=True)
            recipe = recipe_from_model(model, batch_size=batch_size, local_epochs=local_epochs)
        genesis_id = _create_genesis(client.store, recipe, keras_model=model,
                                     init_seed=init_seed, issuer=client.peer_id)
    return TangleView(_open_observer(client, genesis_id, validation, settings))

