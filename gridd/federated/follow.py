"""Following someone's federated job: `grid.follow(job_id)`.

A follower listens to the job's progress events on the compute topic: round, metrics,
workers and the global weights' CID, each signed by the coordinator. Job ids are chosen by
their owners, so two coordinators may use the same one: a follower sticks to the owner
given, or else the first whose event it sees, and ignores (and counts) the others.
`model()` fetches the newest global model through the same safe loader and size bounds as
any model from the network.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from gridd.compute.table import Table
from gridd.federated.local_training import LocalModel
from gridd.tree.weights import classify
from gridd.wire import decode_weights

if TYPE_CHECKING:
    from gridd.federated.hub import FederatedHub

log = logging.getLogger(__name__)

FINAL = ("done", "failed", "cancelled")
MAX_EVENTS = 100_000
COLUMNS = ["round", "state", "workers", "accuracy", "loss", "eval_accuracy", "val_accuracy"]


class JobFollower:
    """See the module docstring. `events` are the progress events seen, oldest first."""

    def __init__(self, hub: FederatedHub, job: str, owner: str | None = None,
                 max_params: int | None = None) -> None:
        self.hub = hub
        self.job = job
        self.owner = owner
        self.max_params = max_params
        self.events: list[dict[str, Any]] = []
        self.ignored = 0  # events for this job id from other owners
        self._cond = threading.Condition()
        hub.follow(self)

    def deliver(self, owner: str, event: dict[str, Any]) -> None:
        with self._cond:
            if self.owner is None:
                self.owner = owner
            if owner != self.owner:
                self.ignored += 1
                if self.ignored == 1:
                    log.warning("job %s: ignoring progress from %s (following %s's job of that "
                                "id; pass owner= to follow the other)", self.job, owner,
                                self.owner)
                return
            if self.events and (event["round"], event["state"] != "running") < (
                    self.events[-1]["round"], self.events[-1]["state"] != "running"):
                return  # older than what we have (a replay inside the window, or reordering)
            if self.events and self.events[-1] == event:
                return
            self.events.append(event)
            del self.events[:-MAX_EVENTS]
            self._cond.notify_all()

    @property
    def latest(self) -> dict[str, Any] | None:
        with self._cond:
            return self.events[-1] if self.events else None

    @property
    def finished(self) -> bool:
        latest = self.latest
        return latest is not None and latest["state"] in FINAL

    def wait(self, round: int | None = None, timeout: float | None = None
             ) -> dict[str, Any] | None:
        """The newest event once the job reached `round` (default: once it ended), or None
        after `timeout` seconds."""

        def reached() -> bool:
            if not self.events:
                return False
            last = self.events[-1]
            return last["state"] in FINAL or (round is not None and last["round"] >= round)

        with self._cond:
            self._cond.wait_for(reached, timeout)
            return self.events[-1] if reached() else None

    def model(self, timeout: float = 60.0, max_model_bytes: int = 256 * 2**20) -> Any:
        """The newest global model (Keras, compiled), fetched and checked."""
        from gridd.models.keras_model import load_keras_file

        event = self.latest
        if event is None or "weights" not in event:
            raise LookupError(f"no progress with weights seen for job {self.job} yet")
        store = self.hub.store
        limit = {} if self.max_params is None else {"max_params": self.max_params}
        model = load_keras_file(store.get(event["model"], max_size=max_model_bytes,
                                          timeout=timeout), compile=True,
                                **limit)
        local = LocalModel.wrap(model)
        weights = decode_weights(store.get(event["weights"], max_size=local.weights_cap,
                                           timeout=timeout), max_bytes=local.weights_cap)
        problem = classify(local.spec, weights)
        if problem is not None:
            raise ValueError(f"job {self.job}: the published weights do not fit its model: "
                             f"{problem[1]}")
        model.set_weights(weights)
        return model

    def table(self) -> Table:
        rows = [{"round": e["round"], "state": e["state"], "workers": e["workers"],
                 **{k: e["metrics"].get(k) for k in COLUMNS[3:]}} for e in self.events]
        return Table(rows, COLUMNS)

    def close(self) -> None:
        self.hub.unfollow(self)

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __repr__(self) -> str:
        last = self.latest
        if last is None:
            return f"<JobFollower {self.job}: no progress seen yet>"
        acc = last["metrics"].get("val_accuracy", last["metrics"].get("accuracy"))
        shown = "-" if acc is None else f"{acc:.4f}"
        return f"<JobFollower {self.job} of {(self.owner or '?')[:16]}: {last['state']}, " \
            f"round {last['round']}/{last['rounds']}, accuracy {shown}>"
