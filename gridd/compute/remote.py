"""Keras on top of the dispatcher: publish a model and arrays, fit remotely, get a model back.

The client never sends code: the model travels as a .keras file, arrays as .npy files saved
with allow_pickle=False, and the trained model comes back through the same safe loader the
workers use (a hostile worker cannot make the client run code either).
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gridd import pins
from gridd.compute.audit import Audit
from gridd.compute.checks import (
    JobSize,
    check_compiled,
    check_inputs,
    check_limits,
    npy_size,
    numeric,
    refusals,
    settle_seconds,
)
from gridd.compute.dispatch import Dispatcher, JobFailed, RemoteJob, no_workers_message
from gridd.compute.protocol import MAX_HISTORY_BYTES, fit_to_wire, unpack_history
from gridd.transport import Store

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


def array_bytes(a: Any, what: str) -> bytes:
    """An array as .npy bytes; object arrays are refused (they would need pickle)."""
    arr = numeric(a, what)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


class Uploader:
    """Puts models and arrays into IPFS once, and unpins them when no job needs them.

    The same bytes are never added twice. Every put takes a reference on the content and
    release() gives one back; the last one unpins it, so a job's uploads do not stay pinned
    for good after it ends (issue 11: 311 MB left behind by one refused job). What is never
    released, such as Client.publish(), stays pinned.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cids: dict[str, tuple[str, int]] = {}  # sha256 -> (cid, bytes)
        self._refs: dict[str, int] = {}  # cid -> references
        self._keys: dict[str, str] = {}  # cid -> sha256
        self._lock = threading.Lock()  # jobs end (and release) on the dispatcher's thread

    def put(self, data: bytes) -> tuple[str, int]:
        """Add (once) and pin; takes a reference."""
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            hit = self._cids.get(key)
            if hit is None:
                hit = (self.store.put(data), len(data))
                self._cids[key] = hit
                self._keys[hit[0]] = key
            self._refs[hit[0]] = self._refs.get(hit[0], 0) + 1
        return hit

    def hold(self, cids: Iterable[str]) -> list[str]:
        """One more reference on content this uploader put (a sweep's data, held by each
        trial); returns those it holds (content put by others is not ours to unpin)."""
        held = []
        with self._lock:
            for cid in cids:
                if cid in self._refs:
                    self._refs[cid] += 1
                    held.append(cid)
        return held

    def release(self, cids: Iterable[str]) -> list[str]:
        """Give back one reference each; unpin what nothing holds any more (returned)."""
        unpinned = []
        with self._lock:
            for cid in cids:
                left = self._refs.get(cid, 0) - 1
                if left > 0:
                    self._refs[cid] = left
                    continue
                if cid not in self._refs:
                    continue
                del self._refs[cid]
                self._cids.pop(self._keys.pop(cid, ""), None)
                try:
                    self.store.unpin(cid)
                    unpinned.append(cid)
                except Exception as e:  # not pinned any more, daemon gone: nothing to keep
                    log.warning("could not unpin upload %s: %s", cid, e)
        return unpinned

    def repin(self, cids: Iterable[str]) -> None:
        """Take references again on content released before (a job offered again after it
        was done, e.g. its result refused: its next worker must be able to fetch it)."""
        with self._lock:
            for cid in cids:
                if cid not in self._refs:
                    try:
                        self.store.pin(cid)
                    except Exception as e:
                        log.warning("could not pin upload %s again: %s", cid, e)
                        continue
                    self._refs[cid] = 0
                self._refs[cid] += 1

    def pinned(self) -> dict[str, int]:
        """{cid: references} of what this uploader keeps pinned."""
        with self._lock:
            return dict(self._refs)

    def model(self, model: keras.Model) -> tuple[str, int]:
        from gridd.models.keras_model import save_keras_bytes

        check_compiled(model)
        return self.put(save_keras_bytes(model))

    def arrays(self, **arrays: Any) -> tuple[dict[str, str], int]:
        """Put each array given (None skipped) as .npy: ({name: cid}, total bytes)."""
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

    def plot(self, metrics: list[str] | None = None, ax: Any = None) -> Any:
        """Learning curves (matplotlib), as SweepResult.plot draws a sweep's: one line per
        metric, val_ ones dashed in their training metric's colour; returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        colours: dict[str, str] = {}
        for name in metrics or list(self.history):
            curve = self.history.get(name) or []
            if not curve:
                continue
            val = name.startswith("val_")
            colour = colours.setdefault(name[4:] if val else name, f"C{len(colours)}")
            ax.plot(range(1, len(curve) + 1), curve, color=colour,
                    linestyle="--" if val else "-", label=name)
        ax.set_xlabel("epoch")
        ax.set_title(f"job {self.job_id}" + (f" on {self.worker[:16]}" if self.worker else ""))
        if ax.lines:
            ax.legend(fontsize="small")
        return ax


def history_from_logs(logs: list[dict[str, float]]) -> dict[str, list[float]]:
    """Per-epoch log dicts (as streamed) turned into Keras' {metric: [per epoch]} shape."""
    keys: list[str] = []
    for entry in logs:
        keys += [k for k in entry if k not in keys]
    return {k: [e.get(k, float("nan")) for e in logs] for k in keys}


class Job:
    """A remote training: status, live logs, cancel(), result() -> (model, history)."""

    audit: Audit | None = None  # set by submit_fit: checks a result before it is returned

    def __init__(self, remote: RemoteJob, store: Store, params: dict[str, Any],
                 max_params: int | None = None, max_bytes: int | None = None,
                 uploader: Uploader | None = None, uploads: Iterable[str] = ()) -> None:
        self.remote = remote
        self.store = store
        self.params = params
        # The result comes from a stranger: it may be no bigger than the model we sent.
        self.max_params = max_params
        self.max_bytes = max_bytes
        self._result: tuple[Any, RemoteHistory] | None = None
        # The uploads this job holds pinned, given back once it ends (done, failed or
        # cancelled); `unpinned` is set when that is over.
        self.uploads = list(uploads)
        self.unpinned = threading.Event()
        self._uploader = uploader
        self._ended = False
        self._end_lock = threading.Lock()
        remote.on_progress.append(self._on_progress)
        self._on_progress(remote)  # it may have ended already

    def _on_progress(self, remote: RemoteJob) -> None:
        """Called on the dispatcher's thread: when the job ends, release its uploads, and
        take them again if it is offered again after all (a result refused after `done`),
        each in a thread of its own (pins are Kubo calls; the dispatcher must not wait)."""
        with self._end_lock:
            if remote.finished == self._ended:
                return
            self._ended = remote.finished
            if not self._ended:
                self.unpinned.clear()
        if self._uploader is None or not self.uploads:
            if self._ended:
                self.unpinned.set()
            return
        step = self._release if self._ended else self._repin
        threading.Thread(target=step, name=f"pins:{self.id}", daemon=True).start()

    def _release(self) -> None:
        assert self._uploader is not None
        try:
            self._uploader.release(self.uploads)
        finally:
            with self._end_lock:
                if self._ended:
                    self.unpinned.set()

    def _repin(self) -> None:
        assert self._uploader is not None
        self._uploader.repin(self.uploads)

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
        """Block until done; returns (trained model, history) or raises JobFailed. A result
        that fails the audit (gridd.compute.audit) is refused and the job offered again."""
        if self._result is None:
            from gridd.models.keras_model import load_keras_file

            kw: dict[str, Any] = {} if self.max_bytes is None else {"max_size": self.max_bytes}
            limit = {} if self.max_params is None else {"max_params": self.max_params}
            end = None if timeout is None else time.monotonic() + timeout
            while True:
                left = None if end is None else max(0.0, end - time.monotonic())
                cid = self.remote.result_cid_or_raise(left)
                model = load_keras_file(self.store.get(cid, **kw), compile=True, **limit)
                if self.audit is None or self.audit.accepts(self, model):
                    break
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


def data_arrays(x: Any, y: Any, validation_data: tuple[Any, Any] | None = None
                ) -> dict[str, np.ndarray]:
    """The arrays a job sends, by their names in the protocol (numeric only)."""
    if validation_data is not None and len(validation_data) != 2:
        raise ValueError("validation_data: expected (x_val, y_val); sample weights are not "
                         "supported remotely")
    vx, vy = validation_data if validation_data is not None else (None, None)
    named = {"x": x, "y": y, "val_x": vx, "val_y": vy}
    return {k: numeric(a, k) for k, a in named.items() if a is not None}


def check_arrays(model: keras.Model, arrays: dict[str, np.ndarray], *, epochs: int,
                 batch_size: int | None, validation_split: float | None) -> None:
    """checks.check_inputs on the arrays of data_arrays()."""
    val = (arrays["val_x"], arrays["val_y"]) if "val_x" in arrays else None
    if ("val_x" in arrays) != ("val_y" in arrays):
        raise ValueError("validation_data: give both x_val and y_val")
    check_inputs(model, arrays["x"], arrays["y"], validation_data=val,
                 validation_split=validation_split, epochs=epochs, batch_size=batch_size)


def wait_for_taker(dispatcher: Dispatcher, size: JobSize, timeout: float, job_id: str) -> None:
    """Return once a live worker's advertised limits admit the job (or it advertises none).

    Raises WorkerLimitError when every live worker has been heard from and none would take
    it, and JobFailed("no_workers") when no worker was live for `timeout` seconds.
    """
    give_up = time.monotonic() + timeout
    while True:
        ads = {a.peer_id: a.body for a in dispatcher.workers()}
        if any(not refusals(size, ad) for ad in ads.values()):
            return
        over = time.monotonic() >= give_up
        if ads and (over or dispatcher.listened() >= settle_seconds(ads)):
            check_limits(size, ads)  # raises: all of them are too small
        if over:
            raise JobFailed(job_id, "no_workers",
                            no_workers_message(dispatcher.topic, timeout, dispatcher.trusted))
        time.sleep(0.05)


def submit_fit(
    dispatcher: Dispatcher, uploader: Uploader, model: keras.Model, x: Any, y: Any,
    *, epochs: int = 1, batch_size: int | None = None,
    validation_data: tuple[Any, Any] | None = None, validation_split: float | None = None,
    shuffle: bool | None = None, class_weight: dict[int, float] | None = None,
    data_cids: tuple[dict[str, str], int] | None = None,
    no_worker_timeout: float | None = None, job_id: str | None = None,
) -> Job:
    """Check the job, wait for a live worker that can take it, then upload what it names
    and offer it; returns the handle once offered.

    Nothing is uploaded before the checks pass (issue 11): the inputs against the model
    (checks.check_inputs; with data_cids, x and y may still be given to be checked), and
    the job's bytes, epochs and parameters against the live workers' advertised limits.
    data_cids: data already uploaded (a sweep's), held by this job until it ends.
    """
    from gridd.models.keras_model import save_keras_bytes

    job_id = job_id or uuid.uuid4().hex[:16]
    arrays = data_arrays(x, y, validation_data) if x is not None or y is not None else {}
    if arrays:
        check_arrays(model, arrays, epochs=epochs, batch_size=batch_size,
                     validation_split=validation_split)
    else:
        check_compiled(model)
    model_file = save_keras_bytes(model)
    data_bytes = data_cids[1] if data_cids is not None else \
        sum(npy_size(a) for a in arrays.values())
    size = JobSize(len(model_file), data_bytes, int(epochs), int(model.count_params()))
    timeout = dispatcher.no_worker_timeout if no_worker_timeout is None else no_worker_timeout
    wait_for_taker(dispatcher, size, timeout, job_id)
    uploads: list[str] = []
    try:
        model_cid, _ = uploader.put(model_file)
        uploads.append(model_cid)
        if data_cids is None:
            data = {}
            for name, a in arrays.items():
                data[name], _ = uploader.put(array_bytes(a, name))
                uploads.append(data[name])
        else:
            data = dict(data_cids[0])
            uploads += uploader.hold(data.values())
        fit = fit_to_wire({"epochs": int(epochs), "batch_size": batch_size,
                           "validation_split": validation_split, "shuffle": shuffle,
                           "class_weight": class_weight})
        remote = dispatcher.submit(model_cid, data, fit, size.bytes, job_id=job_id,
                                   no_worker_timeout=no_worker_timeout)
    except BaseException:
        uploader.release(uploads)
        raise
    params = {"epochs": int(epochs), "batch_size": batch_size, "verbose": 0}
    # A trained model has the parameters it was sent with; its file may grow by the
    # optimizer's state (Adam keeps two slots per weight), hence 4x plus slack.
    job = Job(remote, uploader.store, params, max_params=size.params,
              max_bytes=4 * size.model_bytes + 1024 * 1024, uploader=uploader,
              uploads=uploads)
    job.audit = Audit.of(model, x, y, validation_data=validation_data,
                         validation_split=validation_split, class_weight=class_weight)
    return job


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
