"""The Jupyter-facing Client: `from gridd import Client; grid = Client()`.

One object per notebook, holding one Kubo connection. Compute (fit, sweep, workers, jobs)
starts its topic listener on first use, so a notebook that only queries a tangle never
subscribes to the compute topic. Tree-mode helpers are delegated to gridd.tree.notebook.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridd.compute import protocol
from gridd.compute.dispatch import Dispatcher
from gridd.compute.remote import (
    Job,
    RemoteHistory,
    Uploader,
    check_arrays,
    data_arrays,
    show_progress,
    submit_fit,
    wait_for_taker,
)
from gridd.compute.table import Table, workers_table
from gridd.federated.progress import federated_rows, show_rounds
from gridd.ipfs import KuboClient
from gridd.ipfs.roles import claim_role_key
from gridd.metrics import FederatedMetrics
from gridd.transport import IpfsBroker, IpfsStore

if TYPE_CHECKING:
    import keras

    from gridd.compute.sweep import SweepResult
    from gridd.federated.coordinator import FederatedJob
    from gridd.federated.follow import JobFollower
    from gridd.federated.history import FederatedHistory
    from gridd.federated.hub import FederatedHub
    from gridd.strategies import Strategy


FETCH_WORKERS = 8  # threads fetching federated updates (a round's arrive together)


class Client:
    """A data scientist's handle on the grid (default Kubo at /ip4/127.0.0.1/tcp/5001).

    api: Kubo RPC address (default $GRIDD_IPFS_API, then the Kubo default). topic: the
    compute topic (default $GRIDD_COMPUTE_TOPIC, then gridd/compute/v2). lease: seconds of
    silence after which a running job is given to another worker. workers: peer ids of the
    only workers to give jobs to (a trust list; default anyone on the topic). job_deadline:
    seconds after which an unfinished job fails with reason "deadline" (None: never).
    no_worker_timeout: seconds fit/sweep wait for a live worker that can take a job before
    failing with reason "no_workers" (the message lists the likely causes).
    """

    def __init__(
        self, api: str | None = None, *, topic: str | None = None, lease: float = 10.0,
        reoffer_every: float = 2.0, workers: list[str] | None = None,
        job_deadline: float | None = 6 * 3600.0, no_worker_timeout: float = 60.0,
    ) -> None:
        self.kubo = KuboClient(api)
        try:
            self.kubo.id()  # raises IPFSUnreachable with the fix
            # this notebook's own identity on the daemon, so workers there can see it
            self.identity = claim_role_key(self.kubo, "client")
        except Exception:
            self.kubo.close()
            raise
        self.broker = IpfsBroker(self.kubo, self.identity)
        self.peer_id = self.broker.peer_id
        self.store = IpfsStore(self.kubo)
        self.topic = topic or os.environ.get(protocol.TOPIC_ENV) or protocol.TOPIC
        self.lease = lease
        self.reoffer_every = reoffer_every
        self.trusted = frozenset(workers) if workers else None
        self.job_deadline = job_deadline
        self.no_worker_timeout = no_worker_timeout
        self.uploader = Uploader(self.store)
        self.metrics = FederatedMetrics()  # this notebook's metrics: serve_metrics() shows them
        self._dispatcher: Dispatcher | None = None
        self._hub: FederatedHub | None = None
        self._jobs: list[Job] = []

    # -- compute --------------------------------------------------------------------------

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(
                self.broker, self.topic, lease=self.lease, reoffer_every=self.reoffer_every,
                deadline=self.job_deadline, trusted=self.trusted,
                no_worker_timeout=self.no_worker_timeout, metrics=self.metrics.runtime,
                fetch_workers=FETCH_WORKERS).start()
        return self._dispatcher

    @property
    def hub(self) -> FederatedHub:
        if self._hub is None:
            from gridd.federated.hub import FederatedHub

            self._hub = FederatedHub(self.dispatcher, self.store, self.metrics)
        return self._hub

    def serve_metrics(self, port: int = 0, addr: str = "127.0.0.1") -> int:
        """Serve this notebook's Prometheus metrics (federated rounds and updates, the
        topic's runtime) on http://addr:port/metrics; port 0 picks one. Returns the port."""
        from gridd.metrics import serve

        return serve(self.metrics.registry, port, addr)

    def workers(self, wait: float = 3.0, min_workers: int | None = None) -> Table:
        """Live compute workers with their limits (max_job_mb, max_epochs, max_wall_s,
        max_params; empty for workers too old to advertise them).

        Listens for `wait` seconds in all (each worker advertises every few seconds, so the
        first ad is not the whole grid; time this client already listened counts), or until
        `min_workers` are live when given.
        """
        return workers_table(self.dispatcher.wait_workers(wait, min_workers))

    def publish(self, obj: Any) -> str:
        """Put a compiled Keras model (.keras) or a numeric array (.npy) into IPFS; its CID."""
        if hasattr(obj, "get_weights"):
            return self.uploader.model(obj)[0]
        return self.uploader.arrays(array=obj)[0]["array"]

    def fit(
        self, model: keras.Model, x: Any, y: Any, *, epochs: int = 1,
        batch_size: int | None = None, validation_data: tuple[Any, Any] | None = None,
        validation_split: float | None = None, shuffle: bool | None = None,
        class_weight: Mapping[int, float] | None = None, wait: bool = True,
        progress: bool = True, timeout: float | None = None, verbose: int | str = "auto",
        callbacks: list[Any] | None = None, no_worker_timeout: float | None = None,
    ) -> tuple[keras.Model, RemoteHistory] | Job:
        """Train `model` (compiled) on a worker, like model.fit.

        Returns (trained model, history) — the model you passed is left untouched — or, with
        wait=False, a Job handle (job.result(), job.cancel()). Raises JobFailed/JobRefused
        with the worker's reason when the job cannot run. verbose=0 hides the progress bar.

        Before anything is uploaded, x, y and validation_data are checked against the model
        (ValueError with the fix), and the job against the live workers' advertised limits
        (WorkerLimitError); fit waits up to no_worker_timeout (default: the Client's) for a
        worker that can take it, even with wait=False. The uploads are unpinned when the job
        ends; the trained model is returned in memory.
        """
        if callbacks:
            raise ValueError("callbacks: a worker never runs code from the network, so Keras "
                             "callbacks cannot run remotely; use wait=False and job.logs, or "
                             "the returned history")
        progress = progress and verbose != 0
        job = submit_fit(
            self.dispatcher, self.uploader, model, x, y, epochs=epochs, batch_size=batch_size,
            validation_data=validation_data, validation_split=validation_split,
            shuffle=shuffle, class_weight=dict(class_weight) if class_weight else None,
            no_worker_timeout=no_worker_timeout,
        )
        self._jobs.append(job)
        if not wait:
            return job
        try:
            if progress:
                show_progress(job, desc=f"fit {job.id[:8]}")
            return job.result(timeout)
        except KeyboardInterrupt:
            job.cancel()
            raise

    def sweep(
        self, build_fn: Callable[..., Any], space: Mapping[str, Any], x: Any, y: Any, *,
        metric: str = "val_accuracy", mode: str = "max", max_concurrent: int | None = None,
        epochs: int = 10, batch_size: int | None = None,
        validation_data: tuple[Any, Any] | None = None, validation_split: float | None = None,
        trials: int | None = None, seed: int = 0, early_stopping: bool = False,
        min_epochs: int | None = None, reduction_factor: int = 3, progress: bool = True,
    ) -> SweepResult:
        """Train build_fn(config) for every configuration of `space`, in parallel on workers.

        space: dict of lists (the full grid) or of samplers from gridd.compute.sweep
        (uniform, loguniform, randint, choice; random search with trials=N). Keys named
        epochs/batch_size set those fit arguments per trial. early_stopping=True cancels
        trials that fall out of the top 1/reduction_factor at epoch rungs (successive
        halving). Returns a SweepResult: .table (sorted), .best_model, .best_config, .plot().

        The first configuration's model is built to check the inputs and the job's size
        against the live workers' limits before the data is uploaded (as fit does); the data
        is unpinned once the sweep is over.
        """
        from gridd.compute.checks import JobSize, npy_size
        from gridd.compute.sweep import call_build, expand, run_sweep
        from gridd.models.keras_model import save_keras_bytes

        if validation_data is None and not validation_split and metric.startswith("val_"):
            raise ValueError(f"metric {metric!r} needs validation_data or validation_split")
        configs = expand(space, trials, seed)
        trial_epochs = max(int(c.get("epochs", epochs)) for c in configs)
        arrays = data_arrays(x, y, validation_data)
        probe = call_build(build_fn, configs[0])
        check_arrays(probe, arrays, epochs=trial_epochs, batch_size=batch_size,
                     validation_split=validation_split)
        size = JobSize(len(save_keras_bytes(probe)), sum(npy_size(a) for a in arrays.values()),
                       trial_epochs, int(probe.count_params()))
        del probe
        wait_for_taker(self.dispatcher, size, self.no_worker_timeout, "sweep")
        data = self.uploader.arrays(**arrays)
        try:
            if max_concurrent is None:
                free = sum(int(w["free"]) for w in self.workers())
                max_concurrent = max(1, min(free, len(configs)))

            def submit(model: Any, config: dict[str, Any]) -> Job:
                n = int(config.get("epochs", epochs))
                batch = config.get("batch_size", batch_size)
                check_arrays(model, arrays, epochs=n, batch_size=batch,
                             validation_split=validation_split)
                job = submit_fit(  # no arrays: the data is uploaded once, for every trial
                    self.dispatcher, self.uploader, model, None, None, epochs=n,
                    batch_size=batch, validation_split=validation_split, data_cids=data,
                )
                self._jobs.append(job)
                return job

            return run_sweep(submit, build_fn, configs, metric=metric, mode=mode,
                             max_concurrent=max_concurrent, epochs=trial_epochs,
                             early_stopping=early_stopping, min_epochs=min_epochs,
                             eta=reduction_factor, progress=progress)
        finally:
            self.uploader.release(list(data[0].values()))

    def jobs(self) -> Table:
        """This session's fit jobs, then federated jobs: this session's and those whose
        progress this client has seen on the topic (with their owner), newest last."""
        rows = []
        for j in self._jobs:
            r = j.remote
            err = r.error
            rows.append({
                "job": j.id, "kind": "fit", "status": j.status,
                "progress": f"{len(r.logs)}/{r.epochs} epochs", "worker": (r.worker or "")[:16],
                "attempt": r.attempt, "seconds": r.seconds,
                "error": None if err is None else str(err)[:80],
            })
        if self._hub is not None:
            rows += federated_rows(self._hub)
        return Table(rows, ["job", "kind", "status", "progress", "worker", "attempt", "seconds",
                            "error"])

    # -- federated (implemented in gridd.federated) ---------------------------------------

    def federated_fit(
        self, model: keras.Model, dataset: str, *, rounds: int = 10, local_epochs: int = 1,
        batch_size: int = 32, strategy: str | Strategy | None = None, min_workers: int = 1,
        max_workers: int | None = None, fraction: float = 1.0, round_timeout: float = 120.0,
        evaluate: bool = True, checkpoint: str | os.PathLike[str] | None = None,
        validation_data: tuple[Any, Any] | None = None, wait: bool = True,
        progress: bool = True, seed: int = 0, job_id: str | None = None,
        no_worker_timeout: float | None = None, max_tries: int = 3,
        on_round: Callable[[FederatedJob, dict[str, Any]], None] | None = None,
    ) -> tuple[keras.Model, FederatedHistory] | FederatedJob:
        """Train `model` (compiled) by federated rounds on the workers that keep `dataset`.

        The data never leaves the workers (`start_worker --compute --dataset NAME=PATH.npz`);
        this notebook coordinates. Each round asks `fraction` of the eligible workers (at
        least min_workers, at most max_workers), sends them the global weights, and
        aggregates the updates that arrive within round_timeout with `strategy` ("fedavg"
        default, "fedprox", "fedadam", "fedyogi", "fedmedian", "trimmed_mean", "krum", or a
        gridd.strategies.Strategy instance, your own subclass included: it runs here only).
        evaluate=True: workers report the global model's loss/accuracy on their held-out
        rows (history eval_*); validation_data=(x, y) is evaluated here (history val_*).
        checkpoint=PATH: the state after every round; calling again with the same path
        continues from the last finished round (after a kernel restart too).

        Returns (trained model, FederatedHistory) — the model passed in is left untouched —
        or with wait=False a FederatedJob handle (result(), cancel(), progress()).
        """
        from gridd.compute.checks import check_compiled
        from gridd.federated.coordinator import FederatedJob, FederatedSettings
        from gridd.strategies import resolve

        check_compiled(model)
        settings = FederatedSettings(
            dataset=dataset, rounds=rounds, local_epochs=local_epochs, batch_size=batch_size,
            min_workers=min_workers, max_workers=max_workers, fraction=fraction,
            round_timeout=round_timeout, evaluate=evaluate, seed=seed, max_tries=max_tries,
            no_worker_timeout=self.no_worker_timeout if no_worker_timeout is None
            else no_worker_timeout)
        job = FederatedJob(self.hub, model, settings, resolve(strategy), job_id=job_id,
                           checkpoint=None if checkpoint is None else Path(checkpoint),
                           validation_data=validation_data, on_round=on_round)
        self.hub.add(job)
        job.start()
        if not wait:
            return job
        try:
            if progress:
                show_rounds(job)
            return job.result()
        except KeyboardInterrupt:
            job.cancel()
            raise

    def follow(self, job_id: str, owner: str | None = None) -> JobFollower:
        """Follow a federated job (anyone's) by its id: progress events as they come
        (`.events`, `.latest`, `.wait(round=...)`, `.table()`), the newest global model
        with `.model()`. owner: the coordinator's peer id, when two jobs share the id."""
        from gridd.federated.follow import JobFollower

        return JobFollower(self.hub, job_id, owner)

    def job(self, job_id: str) -> Job:
        for j in self._jobs:
            if j.id == job_id:
                return j
        raise KeyError(f"no job {job_id!r} in this session")

    # -- tree (implemented in gridd.tree.notebook) ---------------------------------------

    def tangle(self, genesis_id: str, *, validation: tuple[Any, Any] | None = None,
               wait: float = 5.0, settings: Any = None) -> Any:
        """Follow tree-mode tangle `genesis_id`, catching up for up to `wait` seconds.

        validation=(x, y): labelled data of the genesis recipe's shape and classes, never
        trained on or sent. With it the view builds only on candidates that do well on it,
        as a training peer does, and `view.accuracy` is measured on it. Without it nothing
        is vetted and the only accuracies are the issuers' own claims (a warning says so).
        """
        from gridd.tree.notebook import open_tangle

        return open_tangle(self, genesis_id, validation=validation, wait=wait,
                           settings=settings)

    def create_tangle(self, model: Any, recipe: Any = None, **kw: Any) -> Any:
        from gridd.tree.notebook import create_tangle

        return create_tangle(self, model, recipe, **kw)

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        if self._hub is not None:
            for job in self._hub.jobs.values():
                if not job.finished:
                    job.cancel()
            for job in self._hub.jobs.values():
                job.wait(10)
            self._hub = None
        if self._dispatcher is not None:
            self._dispatcher.close()
            self._dispatcher = None
        self.identity.release()
        self.kubo.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<gridd.Client peer {self.peer_id} at {self.kubo.address.multiaddr}>"
