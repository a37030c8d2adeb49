"""A notebook's TangleView (issue 11): evaluating in a loop never retraces, history() lists
the transactions with their reported and measured accuracy, plot() draws them with the
consensus over time, and nothing changes until refresh()."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from tree_helpers import fast_settings

from gridd.models import tensorflow_available
from gridd.transport import MemoryNetwork
from gridd.tree.notebook import (
    CONSENSUS_COLUMNS,
    EVAL_BATCH,
    HISTORY_COLUMNS,
    History,
    NoValidationWarning,
    TangleView,
    open_tangle,
)
from gridd.tree.peer import TreePeer

Digits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _client(net: MemoryNetwork, name: str) -> SimpleNamespace:
    return SimpleNamespace(broker=net.broker(name), store=net.store(), peer_id=name)


@pytest.fixture
def vetted(memnet: MemoryNetwork, genesis_id: str, digits: Digits) -> Iterator[TangleView]:
    view = open_tangle(_client(memnet, "notebook"), genesis_id, wait=0,
                       validation=(digits[2], digits[3]), settings=fast_settings())
    yield view
    view.close()


def _grow(view: TangleView, trainers: list[TreePeer], steps: int) -> None:
    """Each trainer publishes `steps` transactions, and the view takes each one in."""
    for _ in range(steps):
        for t in trainers:
            before = view.transaction_count
            t.process_messages()
            if t.train_step().published:
                view.refresh(wait=0.05)
                assert view.transaction_count == before + 1


def test_new_transactions_appear_only_after_refresh(
        vetted: TangleView, peers_factory: Callable[..., TreePeer]) -> None:
    trainer = peers_factory(0)
    assert trainer.train_step().published
    assert vetted.transaction_count == 1  # published, but the view has not listened yet
    vetted.refresh(wait=0.05)
    assert vetted.transaction_count == 2
    doc = TangleView.__doc__ or ""
    assert "Nothing updates by itself" in doc and "view.refresh()" in doc


def test_history_lists_every_transaction_reported_and_measured(
        vetted: TangleView, peers_factory: Callable[..., TreePeer], digits: Digits) -> None:
    trainers = [peers_factory(0), peers_factory(1)]
    _grow(vetted, trainers, 2)
    history = vetted.history()
    assert isinstance(history, History) and isinstance(history, list)
    assert len(history) == vetted.transaction_count >= 3
    assert all(tuple(r) == HISTORY_COLUMNS for r in history)
    assert [r["time"] for r in history] == sorted(r["time"] for r in history)
    genesis = history[0]
    assert genesis["id"] == vetted.genesis_id and genesis["parents"] == []
    assert genesis["reported_accuracy"] is None
    tangle = vetted.peer.tangle
    evaluator = vetted._model_evaluator()
    for r in history:
        tx = tangle[r["id"]]
        assert (r["issuer"], r["time"], r["parents"]) == (tx.issuer, tx.created_at,
                                                          list(tx.parents))
        if r is not genesis:
            assert r["issuer"] in {t.peer_id for t in trainers}
            assert r["reported_accuracy"] == tx.metadata["accuracy"]
        weights = vetted.peer.weights_of(r["id"])
        assert r["accuracy"] == evaluator.evaluate(weights, digits[2], digits[3])["accuracy"]
    assert {r["id"] for r in history if r["consensus"]} == set(vetted.reference_ids())
    assert all(r["accuracy"] is None for r in vetted.history(measure=False))
    points = vetted.consensus_history()
    assert all(tuple(p) == CONSENSUS_COLUMNS for p in points)
    assert [p["transactions"] for p in points] == sorted({p["transactions"] for p in points})
    assert points[-1]["accuracy"] == vetted.accuracy and points[-1]["source"] == "validation"


def test_history_without_validation_has_only_reported_figures(
        memnet: MemoryNetwork, genesis_id: str, peers_factory: Callable[..., TreePeer]) -> None:
    with pytest.warns(NoValidationWarning):
        blind = open_tangle(_client(memnet, "blind"), genesis_id, wait=0,
                            settings=fast_settings())
    try:
        _grow(blind, [peers_factory(0)], 2)
        history = blind.history()
        assert len(history) == 3
        assert all(r["accuracy"] is None for r in history)
        assert all(r["reported_accuracy"] is not None for r in history[1:])
        assert blind.consensus_history()[-1]["source"] == "self-reported"
    finally:
        blind.close()


def test_to_pandas_says_what_it_needs() -> None:
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"needs pandas.*plain list of dicts"):
            History().to_pandas()
    else:
        pytest.skip("pandas is installed (see test_to_pandas_is_a_dataframe)")


def test_to_pandas_is_a_dataframe(vetted: TangleView,
                                  peers_factory: Callable[..., TreePeer]) -> None:
    pd = pytest.importorskip("pandas")
    _grow(vetted, [peers_factory(0)], 1)
    frame = vetted.history().to_pandas()
    assert list(frame.columns) == list(HISTORY_COLUMNS) and len(frame) == 2
    assert isinstance(frame["time"].dtype, pd.DatetimeTZDtype)
    points = vetted.consensus_history().to_pandas()
    assert list(points.columns) == list(CONSENSUS_COLUMNS) and len(points) == 1


def test_plot_draws_issuers_and_the_consensus(
        vetted: TangleView, peers_factory: Callable[..., TreePeer]) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trainers = [peers_factory(0), peers_factory(1)]
    _grow(vetted, trainers, 2)
    ax = vetted.plot()
    try:
        labels = {line.get_label(): line for line in ax.get_lines()}
        assert "consensus" in labels
        consensus = [p["accuracy"] for p in vetted.consensus_history()]
        assert list(labels["consensus"].get_ydata()) == consensus
        issuers = {r["issuer"] for r in vetted.history()}
        assert len([k for k in labels if k != "consensus"]) == len(issuers)
        assert "measured on 360 validation samples" in ax.get_ylabel()
    finally:
        plt.close(ax.figure)


@pytest.mark.tf
@pytest.mark.skipif(not tensorflow_available(), reason="needs TensorFlow (MODEL!=no_tf)")
def test_evaluating_in_a_loop_traces_once(
        memnet: MemoryNetwork, genesis_id: str, peers_factory: Callable[..., TreePeer],
        digits: Digits, caplog: pytest.LogCaptureFixture) -> None:
    x_val, y_val = digits[2], digits[3]
    view = open_tangle(_client(memnet, "keras-notebook"), genesis_id, wait=0,
                       validation=(x_val, y_val), settings=fast_settings(model="auto"))
    big_x = np.concatenate([x_val] * 7)  # more than EVAL_BATCH rows: several batches
    big_y = np.concatenate([y_val] * 7)
    assert len(big_x) > 2 * EVAL_BATCH
    try:
        evaluator = view._model_evaluator()
        assert type(evaluator.adapter).__name__ == "KerasModel"
        trainer = peers_factory(0)
        with caplog.at_level(logging.WARNING, logger="tensorflow"), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for i in range(8):  # the weights change with every new transaction
                if trainer.train_step().published:
                    view.refresh(wait=0.05)
                n = 1 + 311 * i
                view.evaluate()
                view.evaluate(big_x[:n], big_y[:n].astype(np.int32))
                view.evaluate(big_x, big_y)
                assert view.accuracy is not None
            view.history()  # every transaction measured, on the same function
        assert view.transaction_count > 3
        assert evaluator.traces == 1
        retraced = [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()]
        assert not retraced
        assert not [w for w in caught if "retrac" in str(w.message)]
        keras_model = evaluator.adapter.model  # type: ignore[attr-defined]
        keras_model.set_weights(view.weights())
        want = keras_model.evaluate(big_x, big_y, verbose=0, return_dict=True)
        got = view.evaluate(big_x, big_y)
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    finally:
        view.close()
