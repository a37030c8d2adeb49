"""Collecting one round's updates: who may answer, what is fetched, what is refused.

Runs on the client dispatcher's loop thread (messages) and its fetch pool (weights); the
coordinator's thread only waits on it. Every update is refused unless it comes from a worker
this round asked, for this round and try, once. Its weights are fetched in the pool,
attributed to the worker, no larger than the global weights blob plus a little slack, then
decoded and checked (count, shapes, dtype, finite values) before the coordinator ever sees
them; a claimed sample count is clipped to what the worker advertised for the dataset. Each
refusal is counted by reason: late, duplicate, not_selected, no_weights, too_large,
fetch_failed, malformed, wrong_shape, nan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gridd.federated.selection import Candidate
from gridd.ipfs import ContentTooLarge
from gridd.metrics import FederatedMetrics
from gridd.models.base import WeightSpec
from gridd.runtime import FetchResult
from gridd.tree.weights import RejectedWeights, classify
from gridd.wire import WireError, decode_weights

Fetch = Callable[..., str | None]  # Node.fetch
ASK_AGAIN = 2.0  # seconds between asking again the workers that owe an answer


@dataclass(frozen=True)
class Reply:
    """One accepted answer of a worker to a round."""

    sender: str
    samples: int
    metrics: dict[str, float]
    evaluation: dict[str, float]
    seconds: float
    weights: list[np.ndarray] | None
    heard: float  # monotonic time its update message was handled
    arrived: float  # monotonic time its weights were checked


@dataclass
class RoundCollector:
    """See the module docstring. One per (round, try) of a job."""

    job: str
    round: int
    try_: int
    chosen: dict[str, Candidate]
    spec: WeightSpec
    weights_cap: int
    training: bool  # False: an evaluation-only round (replies carry no weights)
    deadline: float  # monotonic
    metrics: FederatedMetrics
    fetch: Fetch
    get: Callable[[str, int, float], bytes]  # store.get(cid, max_size, timeout)
    replies: dict[str, Reply] = field(default_factory=dict)
    declined: dict[str, tuple[str, str]] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # sender -> reason
    fetching: set[str] = field(default_factory=set)
    heard: dict[str, float] = field(default_factory=dict)  # sender -> update handled at
    asked_at: float = 0.0  # monotonic time the task was published
    closed: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)

    # -- the dispatcher loop's calls -------------------------------------------------------

    def on_update(self, sender: str, body: dict[str, Any]) -> None:
        with self._cond:
            reason = self._admit(sender, body)
            if reason is None and self.training and "weights" not in body \
                    and "inline" not in body:
                reason = "no_weights"
            if reason is None and self.training and body["samples"] < 1:
                reason = "no_samples"
            if reason is not None:
                self._refuse(sender, reason)
                return
            self.heard[sender] = time.monotonic()
            if not self.training:
                self._accept(sender, body, None)
                return
            if "inline" in body:  # small: checked here, no fetch
                try:
                    weights = self._check(bytes(body["inline"]))
                except RejectedWeights as e:
                    self._refuse(sender, e.reason)
                    return
                self._accept(sender, body, weights)
                return
            self.fetching.add(sender)
        cid = str(body["weights"])
        left = max(0.1, self.deadline - time.monotonic())

        def fetch(seconds: float) -> list[np.ndarray]:
            return self._load(cid, seconds)

        why = self.fetch((self.job, self.round, self.try_, sender), fetch, timeout=left,
                         done=lambda r: self._fetched(sender, body, r), sender=sender)
        if why is not None:
            with self._cond:
                self.fetching.discard(sender)
                self._refuse(sender, "fetch_refused")

    def on_declined(self, sender: str, body: dict[str, Any]) -> None:
        with self._cond:
            reason = self._admit(sender, body)
            if reason is not None:
                self._refuse(sender, reason)
                return
            self.declined[sender] = (str(body["reason"]), str(body["error"]))
            self._cond.notify_all()

    # -- the coordinator's calls -----------------------------------------------------------

    def wait(self, alive: Callable[[str], bool], stop: threading.Event,
             ask_again: Callable[[list[str]], None] | None = None) -> None:
        """Until every asked worker answered, the deadline passed, the job was stopped, or
        the workers still owing an answer have all stopped advertising (died). Pubsub
        loses a message now and then: every ASK_AGAIN s the live workers still owing an
        answer are asked again (a worker that answered says it again; one still training
        carries on)."""
        asked = time.monotonic()
        with self._cond:
            while not self.closed and not stop.is_set():
                owing = self.owing() - self.fetching
                if not owing and not self.fetching:
                    return
                now = time.monotonic()
                live = [p for p in sorted(owing) if alive(p)]
                if now >= self.deadline or (owing and not live and not self.fetching):
                    return
                if ask_again is not None and live and now - asked >= ASK_AGAIN:
                    asked = now
                    ask_again(live)
                self._cond.wait(min(0.25, self.deadline - now))

    def close(self) -> list[Reply]:
        """No more answers are taken (later ones count as late); the accepted replies."""
        with self._cond:
            self.closed = True
            return sorted(self.replies.values(), key=lambda r: r.sender)

    def owing(self) -> set[str]:
        with self._cond:
            answered = set(self.replies) | set(self.declined) | set(self.rejected)
            return set(self.chosen) - answered

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- internals ------------------------------------------------------------------------

    def _admit(self, sender: str, body: dict[str, Any]) -> str | None:
        if self.closed or body["round"] != self.round or body["try"] != self.try_:
            return "late"
        if sender not in self.chosen:
            return "not_selected"
        if sender in self.replies or sender in self.declined or sender in self.fetching \
                or sender in self.rejected:
            return "duplicate"
        return None

    def _load(self, cid: str, seconds: float) -> list[np.ndarray]:
        """In the fetch pool: bounded fetch, decode, check (RejectedWeights on failure)."""
        try:
            data = self.get(cid, self.weights_cap, seconds)
        except ContentTooLarge:
            raise RejectedWeights("too_large", f"over {self.weights_cap} bytes") from None
        return self._check(data)

    def _check(self, data: bytes) -> list[np.ndarray]:
        if len(data) > self.weights_cap:
            raise RejectedWeights("too_large", f"over {self.weights_cap} bytes")
        try:
            weights = decode_weights(data, max_bytes=self.weights_cap)
        except WireError as e:
            raise RejectedWeights("malformed", str(e)) from None
        problem = classify(self.spec, weights)
        if problem is not None:
            raise RejectedWeights(*problem)
        return weights

    def _fetched(self, sender: str, body: dict[str, Any], result: FetchResult) -> None:
        with self._cond:
            self.fetching.discard(sender)
            if self.closed:
                self._refuse(sender, "late")
            elif result.ok:
                self._accept(sender, body, result.value)
            elif isinstance(result.error, RejectedWeights):
                self._refuse(sender, result.error.reason)
            else:
                self._refuse(sender, "fetch_failed")

    def _accept(self, sender: str, body: dict[str, Any], weights: list[np.ndarray] | None
                ) -> None:
        samples = min(int(body["samples"]), self.chosen[sender].samples)
        evaluation = dict(body.get("eval") or {})
        if "samples" in evaluation:  # a held-out count is clipped like a training count
            evaluation["samples"] = float(min(evaluation["samples"],
                                              self.chosen[sender].holdout))
        self.replies[sender] = Reply(sender, samples, dict(body["metrics"]), evaluation,
                                     float(body["seconds"]), weights,
                                     self.heard.get(sender, time.monotonic()), time.monotonic())
        self.metrics.updates.labels(outcome="accepted", reason="").inc()
        self._cond.notify_all()

    def _refuse(self, sender: str, reason: str) -> None:
        if reason not in ("late", "duplicate", "not_selected"):
            self.rejected[sender] = reason  # a chosen worker's answer, refused: it is done
        self.metrics.updates.labels(outcome="rejected", reason=reason).inc()
        self._cond.notify_all()
