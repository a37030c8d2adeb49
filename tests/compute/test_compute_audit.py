"""The client-side audit of results (gridd.compute.audit), with real Keras.

Two halves: the audit function on models trained here (honest ones pass, lying ones fail,
and what it does not catch), and the protocol on the in-memory network with a lying worker:
a real ComputeWorker whose trainer returns the client's untrained model with the history of
a trained one. Its result must be refused, the worker excluded, and the job given to an
honest worker; with only liars the job ends in a clean JobFailed.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from compute_helpers import mlp
from test_compute_protocol import start_worker

from gridd.compute.audit import MAX_ROWS, REASON, Audit
from gridd.compute.dispatch import Dispatcher, JobFailed, RemoteJob
from gridd.compute.jobs import JobContext, TrainResult
from gridd.compute.remote import Uploader, submit_fit
from gridd.transport import MemoryNetwork

pytestmark = pytest.mark.tf
Digits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def trained(digits: Digits, epochs: int = 3, **fit: Any) -> tuple[Any, Any, dict]:
    """(the model as sent, the same model trained here, its Keras history)."""
    from gridd.models.keras_model import load_keras_file, save_keras_bytes

    x, y, xv, yv = digits
    sent = mlp(seed=1)
    model = load_keras_file(save_keras_bytes(sent), compile=True)
    hist = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, **fit)
    return sent, model, {k: [float(v) for v in vs] for k, vs in hist.history.items()}


# -- the audit function ---------------------------------------------------------------------


def test_an_honest_result_passes_and_the_sent_model_with_a_trained_history_fails(
        digits_small: Digits) -> None:
    x, y, xv, yv = digits_small
    sent, model, history = trained(digits_small, validation_data=(xv, yv))
    audit = Audit.of(sent, x, y, validation_data=(xv, yv))
    assert audit is not None and audit.validation and len(audit.x) == len(xv)
    ok = audit.check(model, history)
    assert ok.ok, ok.detail
    # on the whole validation set the audit recomputes what Keras reported, exactly
    assert ok.measured["loss"] == pytest.approx(history["val_loss"][-1], abs=1e-4)
    # the forged_compute attack: the client's own untrained model, a trained history
    lie = audit.check(sent, history)
    assert not lie.ok and "val_loss: worker reported" in lie.detail, lie.detail
    assert lie.measured["loss"] > 2 * history["val_loss"][-1]


def test_training_rows_are_checked_one_sided_and_bounded(digits_small: Digits) -> None:
    """Without validation data the final model may measure far below the epoch's mean
    loss (dropout, weights still moving): that passes; a worse model does not."""
    import keras

    x, y, _, _ = digits_small
    keras.utils.set_random_seed(2)
    sent = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dropout(0.5), keras.layers.Dense(10, "softmax")])
    sent.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                 metrics=["accuracy"])
    audit = Audit.of(sent, x, y, rows=500, rng=np.random.default_rng(0))
    assert audit is not None and not audit.validation
    assert len(audit.x) == 500 and audit.population == len(x)
    untrained = audit.check(sent, {"loss": [0.3]})
    assert not untrained.ok and "loss: worker reported 0.3" in untrained.detail
    sent.fit(x, y, epochs=2, batch_size=32, verbose=0)
    measured = audit.measure(sent)[0]["loss"]
    assert audit.check(sent, {"loss": [measured * 2.5]}).ok  # reported far above: fine
    assert not audit.check(sent, {"loss": [measured / 2.5]}).ok
    assert Audit.of(sent, None, None) is None  # a sweep's job: no arrays, no audit
    full = Audit.of(sent, np.tile(x, (2, 1)), np.tile(y, 2))
    assert full is not None and len(full.x) == MAX_ROWS


def test_validation_split_rows_class_weights_and_what_is_not_caught(
        digits_small: Digits) -> None:
    x, y, _, _ = digits_small
    sent, model, history = trained(digits_small, epochs=2, validation_split=0.25)
    audit = Audit.of(sent, x, y, validation_split=0.25)
    assert audit is not None and audit.validation and audit.population == len(x) - 1077
    assert audit.check(model, history).ok
    # honestly bad: the untrained model with its own true figures is not caught
    truth = audit.measure(sent)[0]
    assert audit.check(sent, {"val_loss": [truth["loss"]],
                              "val_accuracy": [truth["accuracy"]]}).ok
    # nothing reported: nothing to vouch for the model
    assert not audit.check(model, {}).ok
    weights = {c: 1.0 + c for c in range(10)}
    sent, model, history = trained(digits_small, epochs=2, class_weight=weights)
    audit = Audit.of(sent, x, y, class_weight=weights)
    assert audit is not None and audit.weights is not None
    assert audit.check(model, history).ok


def test_a_recompiled_or_reshaped_model_is_refused(digits_small: Digits) -> None:
    import keras

    x, y, xv, yv = digits_small
    sent, model, history = trained(digits_small, epochs=1, validation_data=(xv, yv))
    audit = Audit.of(sent, x, y, validation_data=(xv, yv))
    assert audit is not None
    model.compile(optimizer="adam", loss="mean_squared_error", metrics=["accuracy"])
    verdict = audit.check(model, history)
    assert not verdict.ok and "compiled with another loss" in verdict.detail
    other = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10, "softmax")])
    other.compile(**{k: sent.get_compile_config()[k] for k in ("loss", "metrics")},
                  optimizer="adam")
    verdict = audit.check(other, history)
    assert not verdict.ok and "does not run on your data" in verdict.detail


# -- the protocol with a lying worker -------------------------------------------------------


class LyingTrainer:
    """Returns the model it was sent, untouched, with the history of a good training."""

    def run(self, ctx: JobContext) -> TrainResult:
        model = ctx.fetch(ctx.spec.model, "model")
        ctx.set_state("training")
        epochs = int(ctx.spec.fit.get("epochs", 1))
        good = {"loss": 0.1, "accuracy": 0.97, "val_loss": 0.12, "val_accuracy": 0.96}
        return TrainResult(model, {k: [v] * epochs for k, v in good.items()})


def keras_worker(net: MemoryNetwork, name: str) -> Any:
    from gridd.compute.trainer import KerasTrainer

    return start_worker(net, name, KerasTrainer())  # type: ignore[arg-type]


def fit(net: MemoryNetwork, d: Dispatcher, digits: Digits, epochs: int = 3) -> Any:
    x, y, xv, yv = digits
    return submit_fit(d, Uploader(net.store()), mlp(seed=3), x, y, epochs=epochs,
                      batch_size=32, validation_data=(xv, yv))


def test_a_lying_workers_result_is_refused_and_an_honest_worker_runs_the_job(
        digits_small: Digits) -> None:
    net = MemoryNetwork()
    liar = start_worker(net, "liar", LyingTrainer())  # type: ignore[arg-type]
    d = Dispatcher(net.broker("client"), lease=5.0, reoffer_every=0.2).start()
    honest = None
    refused = threading.Event()
    outcome: dict[str, Any] = {}
    try:
        job = fit(net, d, digits_small)
        job.remote.on_progress.append(
            lambda r: refused.set() if r.attempt >= 1 else None)

        def wait() -> None:
            try:
                outcome["result"] = job.result(timeout=120)
            except Exception as e:
                outcome["error"] = e

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        assert refused.wait(60), f"the liar's result was not refused: {job.status}"
        assert "liar" in job.remote.exclude and d.results_refused == {REASON: 1}
        honest = keras_worker(net, "honest")
        waiter.join(120)
        assert "error" not in outcome, outcome.get("error")
        model, hist = outcome["result"]
        assert hist.worker == "honest" and job.remote.attempt == 1
        _, _, xv, yv = digits_small
        accuracy = model.evaluate(xv, yv, verbose=0, return_dict=True)["accuracy"]
        assert accuracy > 0.8 and hist.history["val_accuracy"][-1] == pytest.approx(
            accuracy, abs=1e-4)
        assert d.results_refused == {REASON: 1}
    finally:
        d.close()
        liar.stop()
        if honest is not None:
            honest.stop()


def test_only_liars_end_in_a_clean_failure_after_the_attempt_limit(
        digits_small: Digits) -> None:
    net = MemoryNetwork()
    liars = [start_worker(net, f"liar{i}", LyingTrainer())  # type: ignore[arg-type]
             for i in range(3)]
    d = Dispatcher(net.broker("client"), lease=5.0, reoffer_every=0.2, max_attempts=3).start()
    try:
        job = fit(net, d, digits_small, epochs=1)
        with pytest.raises(JobFailed, match="too_many_attempts") as failed:
            job.result(timeout=120)
        assert REASON in str(failed.value) and job.status == "failed"
        assert d.results_refused == {REASON: 3}
        assert job.remote.exclude == {"liar0", "liar1", "liar2"}
    finally:
        d.close()
        for w in liars:
            w.stop()


def test_refusing_a_result_that_is_not_done_changes_nothing() -> None:
    net = MemoryNetwork()
    d = Dispatcher(net.broker("client"))
    job = RemoteJob("j1", "bafy", {}, {}, 0, d, status="training", worker="w")
    assert d.refuse_result(job, 0, REASON, "x") is False
    assert job.status == "training" and not job.exclude and d.results_refused == {}
    d.close()
