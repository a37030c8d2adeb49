"""Model weights of tangle transactions: fetched by CID, checked, pinned, cached with a bound.

Weights from the network are untrusted: a blob larger than the genesis weights (plus a
little slack) is refused before it is read in full, then it must decode as a `weights`
envelope and match the genesis spec exactly (count, shapes, float32) with only finite
values. A peer keeps at most `cache_size` decoded weight lists in memory and reloads the
rest from the store by CID, so a hundred peers in one lab process stay small; every weight
blob a peer accepts is pinned (named `pin_name`, its own ones `own_name`: see gridd.pins) so
IPFS garbage collection cannot lose it until the retention policy (gridd.tree.retention)
unpins it. A blob needed again after that is fetched again; one that nobody serves fails
fast for UNAVAILABLE_SECONDS, so a training step skips it instead of waiting every time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from gridd.ipfs import ContentTooLarge, ContentUnavailable
from gridd.metrics import TreeMetrics
from gridd.models.base import WeightSpec, spec_of
from gridd.transport import Store
from gridd.wire import WireError, decode_weights, encode_weights

SLACK_BYTES = 64 * 1024
"""Allowance over the genesis blob size for the optional `meta` of a weights envelope."""
UNAVAILABLE_SECONDS = 60.0
MAX_UNAVAILABLE = 4_096


class RejectedWeights(ValueError):
    """Weights refused for good: `reason` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def classify(spec: WeightSpec, weights: Sequence[np.ndarray]) -> tuple[str, str] | None:
    """(reason, message) if weights do not fit `spec` or hold NaN/inf; None if they are fine."""
    if len(weights) != len(spec):
        return "wrong_shape", f"{len(weights)} arrays, the model has {len(spec)}"
    got = spec_of(weights)
    for i, (have, want) in enumerate(zip(got, spec, strict=True)):
        if have != want:
            return (
                "wrong_shape",
                f"array {i} is {have[1]}{list(have[0])}, expected {want[1]}{list(want[0])}",
            )
    for i, w in enumerate(weights):
        if not np.isfinite(w).all():
            return "nan", f"array {i} holds NaN or inf"
    return None


class WeightsBank:
    """Fetch-check-pin-cache of weight blobs for one tangle (one spec)."""

    def __init__(
        self,
        store: Store,
        spec: WeightSpec,
        max_bytes: int,
        *,
        timeout: float = 30.0,
        cache_size: int = 32,
        metrics: TreeMetrics | None = None,
        pin_name: str | None = None,
        own_name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.spec = spec
        self.max_bytes = int(max_bytes)
        self.timeout = timeout
        self.cache_size = cache_size
        self.metrics = metrics
        self.pin_name = pin_name
        self.own_name = own_name
        self.clock = clock
        self._cache: OrderedDict[str, list[np.ndarray]] = OrderedDict()
        self._unavailable: OrderedDict[str, float] = OrderedDict()  # cid -> retry after

    def _remember(self, cid: str, weights: list[np.ndarray]) -> list[np.ndarray]:
        for w in weights:
            w.setflags(write=False)  # shared with callers: nobody may change cached arrays
        self._cache[cid] = weights
        self._cache.move_to_end(cid)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return weights

    def cached(self, cid: str) -> list[np.ndarray] | None:
        """Weights of `cid` if they are in memory (no IO)."""
        weights = self._cache.get(cid)
        if weights is not None:
            self._cache.move_to_end(cid)
        return weights

    def remember(self, cid: str, weights: list[np.ndarray]) -> list[np.ndarray]:
        """Keep checked weights (from `load`) in the bounded cache; returns them read-only."""
        return self._remember(cid, weights)

    def get(self, cid: str, timeout: float | None = None) -> list[np.ndarray]:
        """Checked weights of `cid` (from the cache, else loaded and cached).

        Raises RejectedWeights for content that is not acceptable weights, and the store's
        errors (ContentUnavailable, IPFSError) otherwise.
        """
        cached = self.cached(cid)
        if cached is not None:
            return cached
        until = self._unavailable.get(cid)
        if until is not None and until > self.clock():
            raise ContentUnavailable(cid, "unavailable a moment ago; not asking again yet")
        try:
            weights = self.load(cid, timeout)
        except RejectedWeights:
            raise
        except Exception:
            self._unavailable[cid] = self.clock() + UNAVAILABLE_SECONDS
            self._unavailable.move_to_end(cid)
            while len(self._unavailable) > MAX_UNAVAILABLE:
                self._unavailable.popitem(last=False)
            raise
        self._unavailable.pop(cid, None)
        return self._remember(cid, weights)

    def load(self, cid: str, timeout: float | None = None) -> list[np.ndarray]:
        """Fetch and check weights without touching the cache (safe from a pool thread)."""
        try:
            raw = self.store.get(cid, max_size=self.max_bytes,
                                 timeout=self.timeout if timeout is None else timeout)
        except ContentTooLarge as e:
            if self.metrics:
                self.metrics.fetch_errors.inc()
            raise RejectedWeights("oversized", f"weights {cid}: {e}") from None
        except Exception:
            if self.metrics:
                self.metrics.fetch_errors.inc()
            raise
        if self.metrics:
            self.metrics.bytes_fetched.inc(len(raw))
        try:
            weights = decode_weights(raw, max_bytes=self.max_bytes)
        except WireError as e:
            raise RejectedWeights("malformed_weights", f"weights {cid}: {e}") from None
        problem = classify(self.spec, weights)
        if problem is not None:
            raise RejectedWeights(problem[0], f"weights {cid}: {problem[1]}")
        return weights

    def pin(self, cid: str) -> None:
        """Pin accepted weights, leaving a pin that exists alone: on a daemon shared by
        several peers of a tangle, one peer's own weights keep their `own` name."""
        self.store.pin(cid, name=self.pin_name, rename=False)

    def put(self, weights: Sequence[np.ndarray]) -> str:
        """Store (pinned) and cache this peer's own weights; returns the CID."""
        problem = classify(self.spec, weights)
        if problem is not None:
            raise RejectedWeights(problem[0], f"own weights: {problem[1]}")
        cid = self.store.put(encode_weights(list(weights)), pin=True, name=self.own_name)
        self._remember(cid, [np.array(w, dtype=np.float32, copy=True) for w in weights])
        return cid

    def __len__(self) -> int:
        return len(self._cache)


def weights_cap(genesis_weights_size: int) -> int:
    return int(genesis_weights_size) + SLACK_BYTES
