"""Bounded bookkeeping: the one map type and the one rate limiter every mode uses.

A peer on an open network keeps state about what strangers said (offers, wanted ids,
senders). Each such collection is a `BoundedMap`: insertion- or recency-ordered, with a hard
entry limit (the oldest entry goes first) and a `prune` for policy-based cleanup, so no
sender can grow it without bound. `TokenBucket` is the per-sender budget.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(MutableMapping[K, V], Generic[K, V]):
    """A dict with at most `limit` entries; setting a new key evicts the oldest.

    `lru=True` makes reads and updates refresh an entry's age (a cache); otherwise age is
    insertion order (a log of what was heard). `evicted` counts entries pushed out.
    """

    def __init__(self, limit: int, *, lru: bool = False,
                 on_evict: Callable[[K, V], None] | None = None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.lru = lru
        self.evicted = 0
        self._on_evict = on_evict
        self._data: OrderedDict[K, V] = OrderedDict()

    def __getitem__(self, key: K) -> V:
        value = self._data[key]
        if self.lru:
            self._data.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        if key in self._data:
            self._data[key] = value
            if self.lru:
                self._data.move_to_end(key)
            return
        while len(self._data) >= self.limit:
            old_key, old_value = self._data.popitem(last=False)
            self.evicted += 1
            if self._on_evict is not None:
                self._on_evict(old_key, old_value)
        self._data[key] = value

    def __delitem__(self, key: K) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def values(self):  # type: ignore[override]
        """A snapshot of the values (reading them does not refresh their age)."""
        return list(self._data.values())

    def items(self):  # type: ignore[override]
        """A snapshot of the entries (reading them does not refresh their age)."""
        return list(self._data.items())

    def prune(self, drop: Callable[[K, V], bool]) -> int:
        """Remove every entry for which drop(key, value) is true; returns how many."""
        doomed = [k for k, v in self._data.items() if drop(k, v)]
        for k in doomed:
            del self._data[k]
        return len(doomed)

    def oldest(self) -> K | None:
        return next(iter(self._data), None)

    def __repr__(self) -> str:
        return f"BoundedMap({len(self)}/{self.limit})"


class TokenBucket:
    """`rate` tokens per second up to `burst`: the budget of one sender for one resource."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, amount: float, now: float) -> bool:
        """Spend `amount` tokens if there are enough; False (and nothing spent) otherwise."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if amount > self.tokens:
            return False
        self.tokens -= amount
        return True
