"""How stale were the tips peers built on? The lab's measure of overlapping trainings.

For a transaction X, staleness = how many transactions were published after X's newest
parent and before X: work X could not build on because it trained at the same time (or did
not pick). In the memory lab it follows from `overlap`; on real Kubo it is what timing made
it. Comparing the two shows which overlap models a real run.
"""

from __future__ import annotations

import bisect
import statistics

from tangle import Tangle


def staleness(tangle: Tangle) -> list[int]:
    """Staleness of every transaction that has parents, in insertion order."""
    times = sorted(tx.created_at for tx in tangle.transactions())
    out = []
    for tx in tangle.transactions():
        if not tx.parents:
            continue
        newest = max(tangle[p].created_at for p in tx.parents)
        out.append(bisect.bisect_left(times, tx.created_at) - bisect.bisect_right(times, newest))
    return out


def median_staleness(tangle: Tangle) -> float | None:
    values = staleness(tangle)
    return float(statistics.median(values)) if values else None
