"""Benchmark: `python -m tangle.bench [--sizes 1000,5000,10000,100000] [--reps 21]`.

Grows tangles by the standard model (each new transaction approves 2 tips drawn from the
tips as of the start of its batch of 10), then times what a training round needs, each
measured cold, i.e. right after a new transaction arrived and invalidated every cache:
ratings (cumulative weights of the walk window), one 2-tip selection, one reference
computation (35 sampling rounds of 2 walks) and the whole round (selection + reference).
"all-CW" is the exact cumulative weight of every transaction (what export_graph's
cumulative_weight=True costs): a chunked bitset sweep, O(n^2 / 4096) word operations, so it
is the one figure that grows faster than linearly; no training round needs it.
Prints a table and writes JSON under bench-results/.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tangle.graph import Tangle
from tangle.reference import DEFAULT_ROUNDS, reference
from tangle.selection import DEFAULT_PARTICLE_DEPTH, RandomWalkSelector
from tangle.transaction import Transaction

BATCH = 10
PARENTS = 2
ISSUERS = 20
DEFAULT_SIZES = (1_000, 5_000, 10_000, 100_000)
TARGETS = {
    "round_ms_at_5000": 65.0,
    "select_ms_at_100000": 10.0,
    "reference_ms_at_100000": 100.0,
    "bytes_per_tx_at_100000": 2048.0,
}


class StandardGrowth:
    """The standard growth model, resumable so benchmarks can keep adding transactions."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.tangle = Tangle(Transaction.genesis(_cid(0)))
        self.count = 1
        self._batch: list[str] = []
        self._left = 0

    def step(self) -> Transaction:
        """Create and add one transaction; a new batch snapshots the tips first."""
        if self._left == 0:
            self._batch = self.tangle.tips()
            self._left = BATCH
        self._left -= 1
        tx = self.next_transaction(self._batch)
        self.tangle.add(tx)
        return tx

    def next_transaction(self, tips: list[str]) -> Transaction:
        """A transaction approving up to PARENTS distinct tips drawn from `tips`."""
        i, rng = self.count, self.rng
        self.count += 1
        return Transaction.create(
            rng.sample(tips, min(PARENTS, len(tips))),
            weights_cid=_cid(i),
            issuer=f"peer-{i % ISSUERS:02d}",
            created_at=float(i),
            tag=f"round-{i // BATCH}",
            metadata={"accuracy": round(rng.random(), 4)},
        )

    def grow(self, n: int) -> Tangle:
        """Add transactions until the tangle holds n (genesis included)."""
        while len(self.tangle) < n:
            self.step()
        return self.tangle


def grow(n: int, seed: int = 0) -> Tangle:
    """A tangle of n transactions grown by the standard model."""
    return StandardGrowth(seed).grow(n)


def _cid(i: int) -> str:
    """A CIDv1-sized string (59 characters), so memory figures are realistic."""
    return f"bafkrei{i:052d}"


def _cold(growth: StandardGrowth, action: Callable[[], object], reps: int) -> list[float]:
    """Milliseconds of `action`, each run right after one new transaction arrived."""
    times = []
    for _ in range(reps):
        growth.step()
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return times


def measure(n: int, reps: int, seed: int) -> dict[str, Any]:
    """All timing figures for one size (memory is a separate, traced growth)."""
    gc.collect()
    start = time.perf_counter()
    growth = StandardGrowth(seed)
    tangle = growth.grow(n)
    grow_s = time.perf_counter() - start

    replay = list(tangle.transactions())
    start = time.perf_counter()
    fresh = Tangle(replay[0])
    for tx in replay[1:]:
        fresh.add(tx)
    add_s = time.perf_counter() - start
    del fresh, replay

    selector = RandomWalkSelector(seed=seed)
    depth = DEFAULT_PARTICLE_DEPTH[1]
    rng = random.Random(seed)

    def ratings() -> None:
        tangle.window(depth).cumulative_weights()

    def select() -> None:
        selector.select(tangle, 2, rng)

    def ref() -> None:
        reference(tangle, selector, DEFAULT_ROUNDS, rng=rng)

    def whole_round() -> None:
        select()
        ref()

    timings = {
        name: _cold(growth, action, reps)
        for name, action in (
            ("ratings", ratings),
            ("select", select),
            ("reference", ref),
            ("round", whole_round),
        )
    }
    window = tangle.window(depth)
    start = time.perf_counter()  # the export's exact all-transaction sweep, run once
    tangle.cumulative_weights()
    all_weights_ms = (time.perf_counter() - start) * 1000
    result: dict[str, Any] = {
        "n": n,
        "n_after": len(tangle),
        "insert_per_s": (n - 1) / grow_s,
        "add_only_per_s": (n - 1) / add_s,
        "tips": len(tangle.tip_nodes()),
        "window_size": len(window),
        **{f"{name}_ms": statistics.median(t) for name, t in timings.items()},
        **{f"{name}_ms_p90": _quantile(t, 0.9) for name, t in timings.items()},
        "all_weights_ms": all_weights_ms,
    }
    return result


def _bytes_per_tx(n: int, seed: int) -> float:
    """Traced bytes held by a grown tangle (transactions included), per transaction."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tangle = grow(n, seed)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    del tangle
    return held / n


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def growth_exponents(rows: list[dict[str, Any]]) -> dict[str, float]:
    """k in time ∝ n^k between the smallest and the largest size (0: flat, 1: linear)."""
    if len(rows) < 2:
        return {}
    small, large = rows[0], rows[-1]
    scale = math.log(large["n"] / small["n"])
    out = {}
    keys = ("ratings_ms", "select_ms", "reference_ms", "round_ms", "all_weights_ms",
            "bytes_per_tx")
    for key in keys:
        if small.get(key) and large.get(key):
            out[key] = math.log(large[key] / small[key]) / scale
    out["insert_time_per_tx"] = math.log(small["insert_per_s"] / large["insert_per_s"]) / scale
    return out


def check_targets(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each issue target with the measured figure (None when that size was not run)."""
    by_n = {row["n"]: row for row in rows}
    found = {
        "round_ms_at_5000": by_n.get(5_000, {}).get("round_ms"),
        "select_ms_at_100000": by_n.get(100_000, {}).get("select_ms"),
        "reference_ms_at_100000": by_n.get(100_000, {}).get("reference_ms"),
        "bytes_per_tx_at_100000": by_n.get(100_000, {}).get("bytes_per_tx"),
    }
    return {
        key: {"target": limit, "measured": found[key],
              "met": None if found[key] is None else found[key] <= limit}
        for key, limit in TARGETS.items()
    }


COLUMNS = (
    ("n", "n", "{:>7d}"),
    ("insert tx/s", "insert_per_s", "{:>11,.0f}"),
    ("add-only tx/s", "add_only_per_s", "{:>13,.0f}"),
    ("ratings ms", "ratings_ms", "{:>10.2f}"),
    ("select(2) ms", "select_ms", "{:>12.2f}"),
    ("reference(35) ms", "reference_ms", "{:>16.2f}"),
    ("round ms", "round_ms", "{:>8.2f}"),
    ("all-CW ms", "all_weights_ms", "{:>9.1f}"),
    ("B/tx", "bytes_per_tx", "{:>6.0f}"),
    ("window", "window_size", "{:>6d}"),
    ("tips", "tips", "{:>4d}"),
)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width table; medians of cold runs; '-' where a figure was not measured."""
    header = " | ".join(title for title, _, _ in COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = []
        for title, key, fmt in COLUMNS:
            value = row.get(key)
            cells.append(fmt.format(value) if value is not None else "-".rjust(len(title)))
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tangle.bench", description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--reps", type=int, default=21, help="cold runs per figure (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--out", default=None, help="JSON path (default bench-results/...)")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    if not sizes or sizes[0] < 2 or args.reps < 1:
        parser.error("sizes must be >= 2 and reps >= 1")

    load_before = os.getloadavg()
    rows = []
    for n in sizes:
        row = measure(n, args.reps, args.seed)
        row["bytes_per_tx"] = None if args.no_memory else _bytes_per_tx(n, args.seed)
        rows.append(row)
        print(f"  measured n={n}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()

    exponents = growth_exponents(rows)
    targets = check_targets(rows)
    print(format_table(rows))
    if exponents:
        shown = ", ".join(f"{key} n^{value:.2f}" for key, value in exponents.items())
        print(f"growth {rows[0]['n']}->{rows[-1]['n']}: {shown}")
    for key, item in targets.items():
        if item["measured"] is not None:
            verdict = "met" if item["met"] else "MISSED"
            print(f"target {key}: {item['measured']:.2f} <= {item['target']:g}: {verdict}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs); times are medians of {args.reps} cold runs")

    out = Path(args.out) if args.out else Path("bench-results") / time.strftime(
        "tangle-bench-%Y%m%dT%H%M%SZ.json", time.gmtime()
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "tangle.bench",
        "model": {"batch": BATCH, "parents": PARENTS, "issuers": ISSUERS},
        "selector": {"kind": "RandomWalkSelector", "alpha": RandomWalkSelector().alpha,
                     "particle_depth": list(DEFAULT_PARTICLE_DEPTH)},
        "reference_rounds": DEFAULT_ROUNDS,
        "reps": args.reps,
        "seed": args.seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "rows": rows,
        "growth_exponents": exponents,
        "targets": targets,
    }, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
