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

A view evaluates with one model it builds once and one traced function with a fixed input
signature, so `evaluate()`, `accuracy` and `history()` in a loop never retrace; `history()`
lists the transactions (plain dicts, `.to_pandas()` if pandas is installed) and `plot()`
draws them with the consensus over time (matplotlib, imported only then).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from gridd.data import DataError, Dataset, _check_x, _check_y
from gridd.models import ModelAdapter, Recipe, build_model
from gridd.models.base import check_xy
from gridd.transport import Broker, Store
from gridd.tree.genesis import Genesis
from gridd.tree.genesis import create_genesis as _create_genesis
from gridd.tree.peer import TreePeer
from gridd.tree.settings import TreeSettings, load_tree_settings

DEFAULT_WAIT = 5.0
MIN_WAIT = 1.0
SELF_REPORTED = "self-reported"
VALIDATION = "validation"
EVAL_BATCH = 1024  # rows per call of the evaluation function (bounds its memory)
HISTORY_FETCH_BUDGET = 10.0  # seconds history() may spend fetching weights not in memory
PLOT_ISSUERS = 10  # issuers with their own colour in plot(); the rest share one
HISTORY_COLUMNS = ("id", "issuer", "time", "parents", "reported_accuracy", "accuracy",
                   "consensus")
CONSENSUS_COLUMNS = ("time", "transactions", "accuracy", "source")

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


class Evaluator:
    """Loss and accuracy of weight lists, on one model built once per view.

    With Keras the model is called from one tf.function whose input signature is fixed
    ([None, *input_shape] float32 and [None] int64), in batches of EVAL_BATCH rows: weights
    are loaded with set_weights (variables the function reads), so no number of calls,
    data sizes or weight changes traces it again. model.evaluate builds a data pipeline
    and a step function per call, which is slow in a notebook loop and, depending on the
    TF version, can warn about retracing. Without TF the numpy adapter evaluates directly.
    """

    def __init__(self, genesis: Genesis, prefer: str) -> None:
        self.recipe = genesis.recipe
        self.adapter: ModelAdapter = build_model(genesis.recipe, None, prefer,
                                                 keras_model=genesis.keras_bytes)
        self._fn: Any = None
        model = getattr(self.adapter, "model", None)
        if model is not None and self.recipe.metric == "accuracy":
            self._fn = _keras_sums(model, self.recipe)

    @property
    def traces(self) -> int:
        """How often the Keras evaluation function was traced (0 without TF)."""
        return 0 if self._fn is None else int(self._fn.experimental_get_tracing_count())

    def evaluate(self, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray
                 ) -> dict[str, float]:
        self.adapter.set_weights(weights)
        if self._fn is None:
            return self.adapter.evaluate(x, y)
        x, y = check_xy(self.recipe, x, y)
        assert y is not None
        loss = correct = 0.0
        for i in range(0, len(x), EVAL_BATCH):
            batch_loss, batch_correct = self._fn(x[i:i + EVAL_BATCH], y[i:i + EVAL_BATCH])
            loss += float(batch_loss)
            correct += float(batch_correct)
        return {"loss": loss / len(x), self.recipe.metric: correct / len(x)}


def _keras_sums(model: Any, recipe: Recipe) -> Any:
    """tf.function (x, y) -> (summed loss, correct predictions), traced once."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.get(recipe.loss)

    @tf.function(input_signature=[tf.TensorSpec([None, *recipe.input_shape], tf.float32),
                                  tf.TensorSpec([None], tf.int64)])
    def sums(x: Any, y: Any) -> Any:
        p = model(x, training=False)
        hits = tf.equal(tf.argmax(p, axis=-1, output_type=tf.int64), y)
        return tf.reduce_sum(loss_fn(y, p)), tf.reduce_sum(tf.cast(hits, tf.float32))

    return sums


class History(list):  # type: ignore[type-arg]
    """Records as a plain list of dicts (history(): one per transaction, HISTORY_COLUMNS;
    consensus_history(): CONSENSUS_COLUMNS), and to_pandas() when pandas is installed."""

    def __init__(self, records: Iterable[dict[str, Any]] = (),
                 columns: tuple[str, ...] = HISTORY_COLUMNS) -> None:
        super().__init__(records)
        self.columns = columns

    def to_pandas(self) -> Any:
        """A pandas DataFrame of the records, `time` as UTC datetimes (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("History.to_pandas() needs pandas (pip install pandas); "
                              "the history itself is a plain list of dicts") from None
        frame = pd.DataFrame(list(self), columns=list(self.columns))
        frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
        return frame


class TangleView:
    """What a notebook sees of one tangle, as of the last refresh().

    **Nothing updates by itself**: a view runs no background thread, so transactions the
    network publishes after you opened it appear only when you call `view.refresh()`
    (which listens and fetches for up to `wait` seconds); every figure below describes the
    tangle as of the last refresh.

    `accuracy` is measured on the validation data the view was opened with (None without);
    `reported_accuracy` is what the issuers claim, which nobody has checked. `history()`
    lists the transactions, `plot()` draws accuracy over time, `model()` is the consensus
    as a Keras model and `evaluate(x, y)` measures it on other data.
    """

    def __init__(self, peer: TreePeer) -> None:
        self.peer = peer
        self._consensus: tuple[int, list[str], list[np.ndarray]] | None = None
        self._measured: tuple[int, dict[str, float]] | None = None
        self._evaluator: Evaluator | None = None
        self._tx_accuracy: dict[str, float] = {}  # measured on the validation data
        self._consensus_log: list[dict[str, Any]] = []

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
        """Catch up with the network: process messages and fetch history for up to `wait`
        seconds. The only way a view learns of new transactions (see the class docstring).

        Returns early once caught up: after MIN_WAIT seconds, with transactions beyond the
        genesis and nothing left to fetch (any transaction heard pulls in its ancestors, so
        a live tangle needs no silence to be caught up with). When the tangle grew, the
        consensus accuracy at this moment is recorded for plot() and consensus_history().
        """
        start = time.monotonic()
        while time.monotonic() - start < wait:
            self.peer.process_messages(timeout=0.2)
            if (time.monotonic() - start >= MIN_WAIT and len(self.peer.tangle) > 1
                    and not self.peer.builder.outstanding):
                break
        self._record_consensus()
        return self

    def _record_consensus(self) -> None:
        """A point of the consensus curve, once per tangle size (a consensus cannot be
        recomputed for the past: it depends on the tangle as it was)."""
        size = len(self.peer.tangle)
        if self._consensus_log and self._consensus_log[-1]["transactions"] == size:
            return
        measured = self.accuracy
        self._consensus_log.append({
            "time": time.time(), "transactions": size,
            "accuracy": measured if measured is not None else self.reported_accuracy,
            "source": self.accuracy_source,
        })

    def consensus_history(self) -> History:
        """The consensus accuracy each time refresh() (or plot()) saw the tangle grow:
        time, transactions, accuracy (measured, or self-reported without validation data),
        source."""
        return History((dict(p) for p in self._consensus_log), CONSENSUS_COLUMNS)

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
        return self._model_evaluator().evaluate(self._current()[2], x, y)

    def _model_evaluator(self) -> Evaluator:
        if self._evaluator is None:  # built once: a Keras model takes seconds to build
            assert self.peer.genesis is not None
            self._evaluator = Evaluator(self.peer.genesis, self.peer.prefer)
        return self._evaluator

    def history(self, measure: bool = True, fetch_budget: float = HISTORY_FETCH_BUDGET
                ) -> History:
        """One record per transaction this view holds (call refresh() first for the
        latest), oldest first, with HISTORY_COLUMNS:

        id; issuer (peer id); time (Unix seconds, as the issuer stamped it); parents (ids);
        reported_accuracy (what the issuer claims on its own data; None for the genesis);
        accuracy (its weights measured on the validation data: None without validation
        data, with measure=False, or when its weights could not be fetched within
        `fetch_budget` seconds in all); consensus (whether the current consensus model
        averages it). Measurements are cached: each transaction is measured once per view.
        """
        tangle = self.peer.tangle
        consensus = set(self.reference_ids())
        txs = sorted(tangle.transactions(), key=lambda tx: (tx.created_at, tx.id))
        measured: dict[str, float] = {}
        if measure and self.validation is not None:
            measured = self._measure([tx.id for tx in txs], fetch_budget)
        records = History()
        for tx in txs:
            reported = tx.metadata.get("accuracy")
            records.append({
                "id": tx.id, "issuer": tx.issuer, "time": tx.created_at,
                "parents": list(tx.parents),
                "reported_accuracy": (float(reported) if isinstance(reported, (int, float))
                                      and not isinstance(reported, bool) else None),
                "accuracy": measured.get(tx.id), "consensus": tx.id in consensus,
            })
        return records

    def _measure(self, tx_ids: list[str], budget: float) -> dict[str, float]:
        """Accuracy of each transaction's own weights on the validation data (cached)."""
        data = self.validation
        assert data is not None
        evaluator = self._model_evaluator()
        deadline = time.monotonic() + budget
        missing = 0
        for tx_id in tx_ids:
            if tx_id in self._tx_accuracy:
                continue
            cid = self.peer.tangle[tx_id].weights_cid
            weights = self.peer.bank.cached(cid)
            if weights is None:
                left = deadline - time.monotonic()
                try:
                    if left <= 0:
                        raise TimeoutError("history() fetch budget spent")
                    weights = self.peer.bank.get(cid, timeout=left)
                except Exception:
                    missing += 1
                    continue
            self._tx_accuracy[tx_id] = evaluator.evaluate(
                weights, data.x_val, data.y_val)[self.recipe.metric]
        if missing:
            warnings.warn(f"history(): the weights of {missing} transactions could not be "
                          f"fetched within {budget:.0f} s; their accuracy is None",
                          stacklevel=3)
        return {i: self._tx_accuracy[i] for i in tx_ids if i in self._tx_accuracy}

    def plot(self, ax: Any = None, measure: bool = True) -> Any:
        """Accuracy over time (needs matplotlib): each transaction at its time, coloured by
        issuer (measured on the validation data, or self-reported without it), and the
        consensus as recorded at each refresh() that saw the tangle grow. Returns the Axes.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("TangleView.plot() needs matplotlib (pip install matplotlib); "
                              "view.history() has the same figures as plain dicts") from None
        from datetime import datetime

        self._record_consensus()
        if ax is None:
            _, ax = plt.subplots(figsize=(9, 4.5))
        measured = measure and self.validation is not None
        key = "accuracy" if measured else "reported_accuracy"
        by_issuer: dict[str, list[tuple[datetime, float]]] = {}
        for r in self.history(measure=measured):
            if r[key] is not None:
                by_issuer.setdefault(r["issuer"], []).append(
                    (datetime.fromtimestamp(r["time"]), r[key]))
        ranked = sorted(by_issuer, key=lambda i: -len(by_issuer[i]))
        for n, issuer in enumerate(ranked):
            when, acc = zip(*by_issuer[issuer], strict=True)
            if n < PLOT_ISSUERS:
                ax.plot(when, acc, "o", alpha=0.7, label=_short(issuer))
            else:
                label = f"{len(ranked) - PLOT_ISSUERS} other issuers" \
                    if n == PLOT_ISSUERS else None
                ax.plot(when, acc, "o", color="0.6", alpha=0.5, label=label)
        points = [(datetime.fromtimestamp(c["time"]), c["accuracy"])
                  for c in self._consensus_log if c["accuracy"] is not None]
        if points:
            when, acc = zip(*points, strict=True)
            ax.step(when, acc, "k-", where="post", marker="s", linewidth=2, label="consensus")
        ax.set_xlabel("time")
        ax.set_ylabel(f"accuracy ({self._accuracy_label(measured)})")
        ax.set_title(f"tangle {self.genesis_id[:12]}…: {self.transaction_count} transactions")
        ax.legend(loc="lower right", fontsize="small")
        return ax

    def _accuracy_label(self, measured: bool) -> str:
        if measured and self.validation is not None:
            return f"measured on {len(self.validation.y_val)} validation samples"
        return "self-reported by issuers"

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


def _short(peer_id: str) -> str:
    """A legend label: peer ids all start alike (12D3KooW...), so keep their end."""
    return peer_id if len(peer_id) <= 12 else f"…{peer_id[-6:]}"


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

