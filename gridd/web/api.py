"""The web view's JSON API: pure functions from a feed and query parameters to JSON.

    GET /api/tangle?since=N&limit=M   transactions from cursor N (default: the recent window)
    GET /api/tangle?window=W          the newest W transactions (default 500)
    GET /api/peers?limit=M            issuers and peers heard, most transactions first
    GET /api/jobs                     compute workers and jobs (and any other job kind)
    GET /api/accuracy                 consensus over time; a lab's test curve and baseline
    GET /api/summary                  counts, rejections by reason, metrics of the registry

A cursor is a transaction's position in the viewer's tangle (insertion order, which is
topological): `since=N` returns rows N, N+1, ... and `cursor` is where the next call
starts. Every answer is bounded (MAX_LIMIT rows, MAX_PEERS peers, MAX_JOBS jobs); a bad
parameter is answered 400 with a sentence naming it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from gridd.web.feed import Snapshot, TangleFeed

DEFAULT_WINDOW = 500
MAX_LIMIT = 5_000
DEFAULT_LIMIT = 2_000
MAX_PEERS = 1_000
MAX_JOBS = 1_000

Provider = Callable[[], list[dict[str, Any]]]
"""A source of rows for /api/jobs (compute workers, compute jobs, federated jobs, ...).
Called from the server's threads: it must be thread-safe and cheap."""


class ApiError(ValueError):
    """A request the API refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _int(params: Mapping[str, str], name: str, default: int | None, low: int,
         high: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"{name}: expected an integer, got {raw[:40]!r}") from None
    if value < low:
        raise ApiError(f"{name}: must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ApiError(f"{name}: at most {high}, got {value}")
    return value


def _only(params: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ApiError(f"unknown parameter {unknown[0][:40]!r}; this endpoint takes "
                       f"{', '.join(allowed) or 'none'}")


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def tangle(feed: TangleFeed, params: Mapping[str, str]) -> dict[str, Any]:
    """Rows from a cursor, with the current tips and reference set (they change for rows
    already sent, so every answer carries them)."""
    _only(params, ("since", "limit", "window"))
    snap = feed.snapshot
    count = snap.count
    if "since" in params and "window" in params:
        raise ApiError("give since or window, not both")
    since = _int(params, "since", None, 0)
    limit = _int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    window = _int(params, "window", DEFAULT_WINDOW, 1, MAX_LIMIT)
    assert limit is not None and window is not None
    if since is None:
        start = max(0, count - window)
    elif since > count:
        raise ApiError(f"since: cursor {since} is past the end ({count} transactions)")
    else:
        start = since
    end = min(count, start + limit)
    measured = feed.measured
    rows = []
    for row in feed.rows[start:end]:
        out = dict(row)
        out["measured"] = _finite(measured.get(row["id"]))
        out["tip"] = row["id"] in snap.tips
        rows.append(out)
    return {
        "genesis": feed.genesis_id, "viewer": feed.peer_id, "count": count, "start": start,
        "cursor": end, "more": end < count, "transactions": rows,
        "tips": sorted(snap.tips), "reference": list(snap.reference),
        "accuracy_source": snap.accuracy_source, "vet_ratio": snap.vet_ratio,
        "updated": snap.updated,
    }


def peers(feed: TangleFeed, params: Mapping[str, str]) -> dict[str, Any]:
    _only(params, ("limit",))
    limit = _int(params, "limit", 200, 1, MAX_PEERS)
    snap = feed.snapshot
    return {"count": len(snap.peers), "peers": [p.to_json() for p in snap.peers[:limit]],
            "rejected_by_reason": snap.rejected_by_reason,
            "rejected_recent": list(snap.rejected_recent)}


def jobs(providers: Mapping[str, Provider], params: Mapping[str, str]) -> dict[str, Any]:
    """One section per provider (e.g. compute_workers, compute_jobs, federated_jobs)."""
    _only(params, ())
    sections: dict[str, Any] = {}
    for name, provider in providers.items():
        try:
            rows = list(provider())
        except Exception as e:  # a provider's failure is shown, not raised
            sections[name] = {"error": str(e)[:200], "rows": []}
            continue
        sections[name] = {"count": len(rows),
                          "rows": [{k: _finite(v) for k, v in r.items()} for r in rows[:MAX_JOBS]]}
    return {"sections": sections}


def accuracy(feed: TangleFeed, params: Mapping[str, str]) -> dict[str, Any]:
    _only(params, ())
    snap = feed.snapshot
    return {"consensus": list(snap.consensus), "source": snap.accuracy_source,
            "lab_test": list(feed.lab_test), "baseline": list(feed.lab_baseline),
            "lab": dict(feed.lab_info)}


def summary(feed: TangleFeed, snap: Snapshot | None = None) -> dict[str, Any]:
    """Counts and the unlabelled samples of the peer's metrics registry."""
    snap = snap or feed.snapshot
    metrics: dict[str, float] = {}
    for family in feed.peer.metrics.registry.collect():
        for sample in family.samples:
            if not sample.labels and not sample.name.endswith("_created") and len(metrics) < 200:
                metrics[sample.name] = _finite(float(sample.value))
    consensus = snap.consensus[-1]["accuracy"] if snap.consensus else None
    return {"genesis": feed.genesis_id, "viewer": feed.peer_id, "transactions": snap.count,
            "tips": len(snap.tips), "pending": snap.pending, "peers": len(snap.peers),
            "consensus_accuracy": consensus, "accuracy_source": snap.accuracy_source,
            "rejected_by_reason": snap.rejected_by_reason, "metrics": metrics,
            "lab": dict(feed.lab_info), "updated": snap.updated}
