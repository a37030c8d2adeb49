"""The recent part of a tangle: every transaction within a bounded depth of the tips.

Depth here is the length of the longest path from a transaction up to any tip (tips have
depth 0). With that definition every approver is strictly shallower than what it approves,
so the future cone of a window member lies inside the window: exact cumulative weights,
walks and confirmation counts cost O(window), however large the tangle grows.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

CHUNK_BITS = 4096
"""Bits per pass of the bitset propagation; bounds memory at ~CHUNK_BITS/8 bytes a node."""


def reach_counts(
    order: Sequence[int],
    links: Sequence[Sequence[int]],
    marks: Mapping[int, int] | None = None,
) -> tuple[list[int], list[int]]:
    """Exact reachability counts over a DAG given as an ordered node list.

    For the node at position i of `order`, reach(i) is itself plus everything reachable by
    following `links[node]` to nodes that are in `order` (others are ignored); every linked
    node must come earlier in `order`. Returns (|reach| per position, summed `marks`
    weights of the marked nodes in reach per position). Sets are bitsets (Python ints),
    built CHUNK_BITS positions at a time so memory stays linear in the number of nodes.
    """
    n = len(order)
    sizes = [0] * n
    marked = [0] * n
    position = {node: i for i, node in enumerate(order)} if marks else {}
    for start in range(0, n, CHUNK_BITS):
        end = min(start + CHUNK_BITS, n)
        groups = _mark_groups(marks, position, start, end) if marks else []
        masks: dict[int, int] = {}
        for i in range(start, n):
            node = order[i]
            mask = 1 << (i - start) if i < end else 0
            for other in links[node]:
                other_mask = masks.get(other)
                if other_mask:
                    mask |= other_mask
            if mask:
                masks[node] = mask
                sizes[i] += mask.bit_count()
                for weight, group in groups:
                    marked[i] += weight * (mask & group).bit_count()
    return sizes, marked


def _mark_groups(
    marks: Mapping[int, int], position: Mapping[int, int], start: int, end: int
) -> list[tuple[int, int]]:
    """Marked nodes of one chunk as one bitset per distinct weight (few in practice)."""
    by_weight: dict[int, int] = {}
    for node, weight in marks.items():
        i = position.get(node)
        if i is not None and start <= i < end and weight:
            by_weight[weight] = by_weight.get(weight, 0) | (1 << (i - start))
    return list(by_weight.items())


class RecentWindow:
    """Transactions (as tangle indices) whose depth is at most `max_depth`.

    Built by the Tangle and valid only for the tangle `version` it was built at; the Tangle
    caches one per depth and drops it on the next insertion. `order` lists members tips
    first, each after all of its approvers.
    """

    __slots__ = (
        "version", "max_depth", "order", "depth", "_approvers", "_parents", "_weights", "memo"
    )

    def __init__(
        self,
        order: list[int],
        depth: dict[int, int],
        approvers: Sequence[Sequence[int]],
        parents: Sequence[Sequence[int]],
        version: int,
        max_depth: int | None,
    ) -> None:
        self.version = version
        self.max_depth = max_depth
        self.order = order
        self.depth = depth
        self._approvers = approvers
        self._parents = parents
        self._weights: dict[int, int] | None = None
        self.memo: dict[Hashable, Any] = {}
        """Scratch space for data derived from this window (walk tables, particles)."""

    @classmethod
    def build(
        cls,
        approvers: Sequence[Sequence[int]],
        parents: Sequence[Sequence[int]],
        tips: Iterable[int],
        max_depth: int | None,
        version: int,
        floors: Mapping[int, int] | None = None,
    ) -> RecentWindow:
        """Peel the tangle from the tips down (Kahn's algorithm on approver counts).

        A node's depth is final once all its approvers are done; a node deeper than
        max_depth is not expanded, so the cost is O(members + their edges). `floors` are
        minimum depths of sealed nodes (approved by transactions the tangle no longer
        holds): one that nothing held approves starts the peeling at its floor.
        """
        limit = max_depth if max_depth is not None else float("inf")
        floors = floors or {}
        order = list(tips)
        depth = dict.fromkeys(order, 0)
        for node, floor in floors.items():
            if not approvers[node] and floor <= limit:
                order.append(node)
                depth[node] = floor
        waiting: dict[int, int] = {}
        deepest: dict[int, int] = {}
        i = 0
        while i < len(order):
            node = order[i]
            i += 1
            below = depth[node] + 1
            if below > limit:
                continue
            for parent in parents[node]:
                left = waiting.get(parent)
                if left is None:
                    left = len(approvers[parent])
                if deepest.get(parent, -1) < below:
                    deepest[parent] = below
                if left > 1:
                    waiting[parent] = left - 1
                    continue
                waiting.pop(parent, None)
                parent_depth = max(deepest.pop(parent), floors.get(parent, 0))
                if parent_depth > limit:
                    continue
                depth[parent] = parent_depth
                order.append(parent)
        return cls(order, depth, approvers, parents, version, max_depth)

    def __len__(self) -> int:
        return len(self.order)

    def __contains__(self, node: object) -> bool:
        return node in self.depth

    def approvers(self, node: int) -> Sequence[int]:
        return self._approvers[node]

    def cumulative_weights(self) -> dict[int, int]:
        """Exact 1 + |future cone| for every member (computed once per window)."""
        if self._weights is None:
            sizes, _ = reach_counts(self.order, self._approvers)
            self._weights = dict(zip(self.order, sizes, strict=True))
        return self._weights

    def confirmations(self, marks: Mapping[int, int]) -> dict[int, int]:
        """For each member: summed weight of the marked nodes that approve it or are it."""
        sizes, marked = reach_counts(self.order, self._approvers, marks)
        if self._weights is None:
            self._weights = dict(zip(self.order, sizes, strict=True))
        return dict(zip(self.order, marked, strict=True))

    def past_sizes(self) -> dict[int, int]:
        """For each member: 1 + how many members it approves directly or indirectly."""
        order = self.order[::-1]
        sizes, _ = reach_counts(order, self._parents)
        return dict(zip(order, sizes, strict=True))

    def particles(self, shallowest: int, deepest: int) -> list[int]:
        """Walk start points: members with shallowest <= depth <= deepest.

        Every depth from 0 to depth(genesis) occurs on genesis' longest path, so this is
        empty only when the whole tangle is shallower than `shallowest`; then the walk
        starts at the deepest member, which is genesis.
        """
        key = ("particles", shallowest, deepest)
        found = self.memo.get(key)
        if found is None:
            depth = self.depth
            found = [n for n in self.order if shallowest <= depth[n] <= deepest]
            if not found:
                found = [max(self.order, key=depth.__getitem__)]
            self.memo[key] = found
        return found
