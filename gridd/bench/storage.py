"""Storage benchmark: what a tree peer keeps pinned as a tangle grows, with and without retention.

    python -m gridd.bench.storage [--txs 500,1000,2000] [--kubo-txs 100,200,300] [--skip-kubo]

Memory lab (digits, 10 peers, Dirichlet 0.5, overlap 2; each peer applies its policy every
6 of its trainings, as RETENTION_INTERVAL 60 s with TRAINING_INTERVAL 10 s would): peer 0's
pinned bytes by kind, from its named pins, when the tangle reaches each count, for the
default policy (RETENTION_WINDOW 30, RETENTION_OWN 10) and with retention off; and its
tangle.log with LOG_COMPACT_BYTES 200 kB. Target (issue 10): pinned bytes <= 2 x the
models of the retention window + the records, flat in the number of transactions.
`pinned_kB` is measured at the count, `peak_kB` is the most pinned at any round since the
previous count (the policy runs periodically, so arrivals pile up between two runs).
Real Kubo: 3 in-process peers on 3 daemons, daemon 0's repo size after `repo gc` at a
smaller count (2 cores: 2,000 real transactions take too long), same two policies. Kubo's
repo size is disk usage: each block is a file (at least 4 KiB on disk, however small; a
record is ~400 bytes) in up to 1,024 shard directories, so with this 10 kB model the
records' files and new shard directories dominate the growth that retention leaves.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from gridd import pins
from gridd.bench import save, table
from gridd.lab.memory_lab import OverlapBroker, OverlapClock
from gridd.lab.options import LabOptions, digits_recipe
from gridd.lab.partition import lab_data
from gridd.transport import MemoryNetwork, Store
from gridd.tree.genesis import create_genesis
from gridd.tree.peer import TreePeer
from gridd.tree.settings import TreeSettings
from gridd.tree.state import LOG_FILE

PRUNE_EVERY = 6  # own trainings between two applications of the policy
LOG_COMPACT = 200_000


def pinned(store: Store, genesis_id: str) -> dict[str, int]:
    """Bytes pinned per kind of this tangle's pins (weights, own, record, genesis)."""
    out = dict.fromkeys(pins.TREE_KINDS, 0)
    prefix = pins.tree_prefix(genesis_id)
    for cid, name in store.pins(prefix).items():
        out[name[len(prefix):].split(":")[0]] += store.size(cid)
    return out


def total_pinned(peer: TreePeer) -> int:
    return sum(pinned(peer.store, peer.genesis_id).values())


def measure(peer: TreePeer, scenario: str, extra: dict[str, Any]) -> dict[str, Any]:
    kinds = pinned(peer.store, peer.genesis_id)
    blob = peer.store.size(peer.tangle.genesis.weights_cid)
    window = peer.settings.retention_window or 30
    models = len(peer.tangle.window(window)) * blob
    models_pinned = kinds["weights"] + kinds["own"] + kinds["genesis"]
    target = 2 * models + kinds["record"]
    return {
        "scenario": scenario, "txs": len(peer.tangle),
        "weights_kB": models_pinned / 1e3, "records_kB": kinds["record"] / 1e3,
        "pinned_kB": (models_pinned + kinds["record"]) / 1e3,
        "window_models_kB": models / 1e3, "target_kB": target / 1e3,
        "ok": max(models_pinned + kinds["record"], extra.get("peak_kB", 0) * 1e3) <= target,
        **extra,
    }


def memory_run(scenario: str, settings: TreeSettings, counts: list[int], peers: int,
               seed: int) -> list[dict[str, Any]]:
    data = lab_data("digits", peers, 0.5, seed)
    net = MemoryNetwork()
    genesis_id = create_genesis(net.store(), digits_recipe(), init_seed=seed, issuer="lab")
    clock = OverlapClock(2)
    state = Path(tempfile.mkdtemp(prefix="gridd-bench-storage-"))
    group = [TreePeer(genesis_id=genesis_id, broker=OverlapBroker(net.broker(f"peer-{i:03d}"),
                                                                  clock),
                      store=net.store(), dataset=d, settings=settings, seed=seed + i,
                      prefer="numpy", state_dir=state / f"peer{i}" if i == 0 else None)
             for i, d in enumerate(data.peers)]
    for p in group:
        p.open()
    rows: list[dict[str, Any]] = []
    rng = random.Random(seed)
    steps = dict.fromkeys(range(peers), 0)
    started = time.monotonic()
    todo = sorted(counts)
    peak = 0
    try:
        while todo:
            order = list(range(peers))
            rng.shuffle(order)
            for i in order:
                p = group[i]
                p.process_messages()
                clock.tick()
                p.process_messages()
                p.train_step()
                steps[i] += 1
                if steps[i] % PRUNE_EVERY == 0:
                    p.prune_storage()
            first = group[0]
            peak = max(peak, total_pinned(first))  # once a round: the peak between prunes
            if todo and len(first.tangle) >= todo[0]:
                todo.pop(0)
                log = (state / "peer0" / LOG_FILE).stat().st_size
                rows.append(measure(first, scenario, {
                    "peak_kB": peak / 1e3, "log_kB": log / 1e3,
                    "wall_s": time.monotonic() - started}))
                peak = 0
                print(f"  {scenario}: {len(first.tangle)} transactions", flush=True)
    finally:
        for p in group:
            p.close()
    return rows


def kubo_run(scenario: str, settings: TreeSettings, counts: list[int],
             seed: int) -> list[dict[str, Any]]:
    from gridd.ipfs.cluster import LocalCluster
    from gridd.transport import IpfsBroker, IpfsStore

    data = lab_data("digits", 3, 0.5, seed)
    rows: list[dict[str, Any]] = []
    with LocalCluster(3) as cluster:
        genesis_id = create_genesis(IpfsStore(cluster.clients[0]), digits_recipe(),
                                    init_seed=seed, issuer="lab")
        group = [TreePeer(genesis_id=genesis_id, broker=IpfsBroker(c), store=IpfsStore(c),
                          dataset=d, settings=settings, seed=seed + i, prefer="numpy")
                 for i, (c, d) in enumerate(zip(cluster.clients, data.peers, strict=True))]
        for p in group:
            p.open()
        try:
            for p in group:
                p.broker.wait_for_peers(p.topic, 2, timeout=20)
            started = time.monotonic()
            todo = sorted(counts)
            steps = 0
            while todo:
                for p in group:
                    p.process_messages(timeout=0.05)
                    p.train_step()
                steps += 1
                if steps % PRUNE_EVERY == 0:
                    for p in group:
                        p.prune_storage()
                first = group[0]
                if len(first.tangle) >= todo[0]:
                    todo.pop(0)
                    _settle(group)
                    kubo = cluster.clients[0]
                    kubo.repo_gc()
                    repo = kubo.repo_stat(count_objects=False).size
                    rows.append(measure(first, scenario, {
                        "repo_kB": repo / 1e3, "wall_s": time.monotonic() - started}))
                    print(f"  {scenario}: {len(first.tangle)} transactions", flush=True)
        finally:
            for p in group:
                p.close()
    return rows


def _settle(group: list[TreePeer], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in group:
            p.process_messages(timeout=0.02)
        if all(p.node.fetcher.outstanding == 0 for p in group):
            return


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--txs", default="500,1000,2000", help="memory lab checkpoints")
    ap.add_argument("--kubo-txs", default="100,200,300", help="real Kubo checkpoints")
    ap.add_argument("--peers", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-kubo", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.txs.split(",") if x]
    base = LabOptions(transport="memory", peers=args.peers, seed=args.seed) \
        .tree_settings("memory")
    default = dataclasses.replace(base, log_compact_bytes=LOG_COMPACT)  # retention defaults
    off = dataclasses.replace(base, retention_window=0)
    rows: list[dict[str, Any]] = []
    rows += memory_run("memory, default policy", default, counts, args.peers, args.seed)
    rows += memory_run("memory, retention off", off, counts, args.peers, args.seed)
    kubo_rows: list[dict[str, Any]] = []
    if not args.skip_kubo:
        kcounts = [int(x) for x in args.kubo_txs.split(",") if x]
        kbase = dataclasses.replace(LabOptions(transport="ipfs", seed=args.seed)
                                    .tree_settings("ipfs"), timeout=10.0)
        kubo_rows += kubo_run("kubo, default policy", kbase, kcounts, args.seed)
        kubo_rows += kubo_run("kubo, retention off",
                              dataclasses.replace(kbase, retention_window=0), kcounts,
                              args.seed)
    columns = ["scenario", "txs", "weights_kB", "records_kB", "pinned_kB", "window_models_kB",
               "target_kB", "ok"]
    print(table(rows, [*columns, "peak_kB", "log_kB", "wall_s"]))
    if kubo_rows:
        print()
        print(table(kubo_rows, [*columns, "repo_kB", "wall_s"]))
    path = save("storage", {"prune_every": PRUNE_EVERY, "log_compact_bytes": LOG_COMPACT,
                            "rows": rows, "kubo_rows": kubo_rows},
                Path(args.out) if args.out else None)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
