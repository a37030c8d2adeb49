"""What a worker runs: the job as received, its live context, and how it can end badly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gridd.metrics import ComputeMetrics
from gridd.transport import Store


class JobError(Exception):
    """A job that cannot finish. `refused` = the job itself is unacceptable (a client error,
    counted in jobs_refused); otherwise the run failed (counted in jobs_failed)."""

    def __init__(self, reason: str, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.refused = refused


@dataclass(frozen=True)
class JobSpec:
    """An offered job: CIDs and whitelisted fit arguments, plus who offered it."""

    job: str
    attempt: int
    owner: str  # the offering client's peer id (pubsub sender)
    model: str
    data: dict[str, str]
    fit: dict[str, Any]
    bytes: int


@dataclass
class JobContext:
    """Live state of one running job, shared by the worker loop and the training thread."""

    spec: JobSpec
    store: Store
    metrics: ComputeMetrics
    max_bytes: int
    deadline: float
    report: Callable[[str, dict[str, Any]], None]  # (message type, body without job/attempt)
    state: str = "fetching"
    stop_reason: str | None = None  # "cancelled", "superseded", "shutdown", "wall_time"
    started: float = field(default_factory=time.monotonic)
    fetched: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_state(self, state: str) -> None:
        """Change state and tell the client at once (the lease beat carries it)."""
        self.state = state
        self.report("compute.beat", {"state": state})

    def stop(self, reason: str) -> None:
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason

    def should_stop(self) -> bool:
        if self.stop_reason is None and time.monotonic() > self.deadline:
            self.stop("wall_time")
        return self.stop_reason is not None

    def check_stop(self) -> None:
        """Raise the JobError matching why this job must stop (if it must)."""
        if not self.should_stop():
            return
        reason = self.stop_reason or "cancelled"
        messages = {
            "cancelled": "cancelled by the client",
            "superseded": "the client reassigned this job to another worker",
            "shutdown": "the worker is shutting down",
            "wall_time": "the job ran over this worker's wall-time limit",
        }
        raise JobError(reason, messages.get(reason, reason))

    def fetch(self, cid: str, what: str, timeout: float = 120.0) -> bytes:
        """Fetch content within the job's byte budget (counted in gridd_ipfs_fetch_bytes)."""
        from gridd.ipfs import ContentTooLarge, ContentUnavailable, IPFSError

        left = self.max_bytes - self.fetched
        try:
            data = self.store.get(cid, max_size=max(left, 0), timeout=timeout)
        except ContentTooLarge:
            raise JobError(
                "too_large", f"{what} ({cid}) pushes the job over this worker's limit of "
                f"{self.max_bytes} bytes", refused=True) from None
        except (ContentUnavailable, IPFSError) as e:
            self.metrics.fetch_errors.inc()
            raise JobError("fetch_failed", f"could not fetch {what} {cid}: {e}") from None
        self.fetched += len(data)
        self.metrics.bytes_fetched.inc(len(data))
        return data


@dataclass(frozen=True)
class TrainResult:
    model: bytes  # the trained model as a .keras file
    history: dict[str, list[float]]


class Trainer(Protocol):
    """Runs one job to the end or raises JobError; the Keras one lives in trainer.py."""

    def run(self, ctx: JobContext) -> TrainResult: ...
