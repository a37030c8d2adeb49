"""Keras on top of the dispatcher: publish a model and arrays, fit remotely, get a model back.

The client never sends code: the model travels as a .keras file, arrays as .npy files saved
with allow_pickle=False, and the trained model comes back through the same safe loader the
workers use (a hostile worker cannot make the client run code either).
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gridd import pins
from gridd.compute.dispatch import Dispatcher, RemoteJob
from gridd.compute.protocol import MAX_HISTORY_BYTES, fit_to_wire, unpack_history
from gridd.transport import Store

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


def array_bytes(a: Any, what: str) -> bytes:
    """An array as .npy bytes; object arrays are refused (they would need pickle)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what}: numeric arrays only, got dtype {arr.dtype}")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


class Uploader:
    """Puts models and arrays into IPFS once: the same bytes are never added twice."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cids: dict[str, tuple[str, int]] = {}

    def put(self, data: bytes) -> tuple[str, int]:
        key = hashlib.sha256(data).hexdigest()
        hit = self._cids.get(key)
        if hit is None:
            hit = (self.store.put(data), len(data))
            self._cids[key] = hit
        return hit

    def model(self, model: keras.Model) -> tuple[str, int]:
        from gridd.models.keras_model import save_keras_bytes

        if getattr(model, "optimizer", None) is None:
            raise ValueError("model is not compiled: call model.compile(optimizer=..., loss=..., "
                             "metrics=[...]) before grid.fit, as you would before model.fit")
        return self.put(save_keras_bytes(model))

    def arrays(self, **arrays: Any) -> tuple[dict[str, str], int]:
        cids: dict[str, str] = {}
        total = 0
        for name, a in arrays.items():
            if a is None:
                continue
            cid, n = self.put(array_bytes(a, name))
            cids[name] = cid
            total += n
        return cids, total


@dataclass
class RemoteHistory:
    """Shaped like keras.callbacks.History: .history, .epoch, .params, plus where it ran."""

    history: dict[str, list[float]]
    params: dict[str, Any]
    job_id: str
    worker: str | None
    seconds: float | None
    model: Any = None
    epoch: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.epoch and self.history:
            self.epoch = list(range(len(next(iter(self.history.values())))))


def history_from_logs(logs: list[dict[str, float]]) -> dict[str, list[float]]:
    """Per-epoch log dicts (as streamed) turned into Keras' {metric: [per epoch]} shape."""
    keys: list[str] = []
    for entry in logs:
        keys += [k for k in entry if k not in keys]
    return {k: [e.get(k, float("nan")) for e in logs] for k in keys}


class Job:
    """A remote training: status, live logs, cancel(), result() -> (model, history)."""

    def __init__(self, remote: RemoteJob, store: Store, params: dict[str, Any],
                 max_params: int | None = None, max_bytes: int | None = None) -> None:
        self.remote = remote
        self.store = store
        self.params = params
        # The result comes from a stranger: it may be no bigger than the model we sent.
        self.max_params = max_params
        self.max_bytes = max_bytes
        self._result: tuple[Any, RemoteHistory] | None = None

    @property
    def id(self) -> str:
        return self.remote.id

    @property
    def status(self) -> str:
        return self.remote.status

    @property
    def worker(self) -> str | None:
        return self.remote.worker

    @property
    def logs(self) -> list[dict[str, float]]:
        return list(self.remote.logs)

    @property
    def history(self) -> dict[str, list[float]]:
        """Metrics so far (the full history once done)."""
        r = self.remote
        if r.history_cid and not r.history:
            r.history = unpack_history(self.store.get(r.history_cid,
                                                      max_size=MAX_HISTORY_BYTES))
        return r.history or history_from_logs(r.logs)

    def cancel(self) -> None:
        self.remote.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        return self.remote.wait(timeout)

    def result(self, timeout: float | None = None) -> tuple[Any, RemoteHistory]:
        """Block until done; returns (trained model, history) or raises JobFailed."""
        if self._result is None:
            from gridd.models.keras_model import load_keras_file

            cid = self.remote.result_cid_or_raise(timeout)
            kw: dict[str, Any] = {} if self.max_bytes is None else {"max_size": self.max_bytes}
            limit = {} if self.max_params is None else {"max_params": self.max_params}
            model = load_keras_file(self.store.get(cid, **kw), compile=True, **limit)
            self._keep(cid)
            hist = RemoteHistory(dict(self.history), dict(self.params), self.id,
                                 self.remote.worker, self.remote.seconds, model)
            self._result = (model, hist)
        return self._result

    def _keep(self, cid: str) -> None:
        """Pin the loaded result on the client's node: the worker unpins its copy after its
        TTL (gridd.pins), and a notebook may want the model again. Best effort."""
        try:
            self.store.pin(cid, name=pins.compute_fetched(self.id))
        except Exception as e:
            log.info("could not pin the result of job %s: %s", self.id, e)

    def __repr__(self) -> str:
        w = (self.worker or "-")[:16]
        return f"<Job {self.id} {self.status} epochs {len(self.remote.logs)}/" \
            f"{self.remote.epochs} worker {w}>"


def submit_fit(
    dispatcher: Dispatcher, uploader: Uploader, model: keras.Model, x: Any, y: Any,
    *, epochs: int = 1, batch_size: int | None = None,
    validation_data: tuple[Any, Any] | None = None, validation_split: float | None = None,
    shuffle: bool | None = None, class_weight: dict[int, float] | None = None,
    data_cids: tuple[dict[str, str], int] | None = None,
) -> Job:
    """Publish everything a job names and offer it; returns the handle at once."""
    if validation_data is not None and len(validation_data) != 2:
        raise ValueError("validation_data: expected (x_val, y_val); sample weights are not "
                         "supported remotely")
    model_cid, model_bytes = uploader.model(model)
    if data_cids is None:
        vx, vy = validation_data if validation_data is not None else (None, None)
        data_cids = uploader.arrays(x=x, y=y, val_x=vx, val_y=vy)
    data, data_bytes = data_cids
    fit = fit_to_wire({"epochs": int(epochs), "batch_size": batch_size,
                       "validation_split": validation_split, "shuffle": shuffle,
                       "class_weight": class_weight})
    remote = dispatcher.submit(model_cid, data, fit, model_bytes + data_bytes)
    params = {"epochs": int(epochs), "batch_size": batch_size, "verbose": 0}
    # A trained model has the parameters it was sent with; its file may grow by the
    # optimizer's state (Adam keeps two slots per weight), hence 4x plus slack.
    return Job(remote, uploader.store, params, max_params=int(model.count_params()),
               max_bytes=4 * model_bytes + 1024 * 1024)


def show_progress(job: Job, desc: str = "training") -> None:
    """A tqdm.auto bar over epochs until the job ends (polled from the caller's thread)."""
    from tqdm.auto import tqdm

    total = max(1, job.remote.epochs)
    with tqdm(total=total, desc=desc, unit="epoch") as bar:
        while not job.wait(0.2):
            n = len(job.remote.logs)
            if n != bar.n:
                bar.update(n - bar.n)
                last = job.remote.logs[-1] if job.remote.logs else {}
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(last.items())[:4]})
            worker = (job.worker or "")[:10]
            status = f"{desc} [{job.status}{' on ' + worker if worker else ''}]"
            if bar.desc != status:
                bar.set_description(status)
        n = len(job.remote.history.get("loss", job.remote.logs))
        if n > bar.n:
            bar.update(n - bar.n)
        bar.set_description(f"{desc} [{job.status}]")
        time.sleep(0)
