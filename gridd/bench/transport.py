"""Transport benchmark on 3 real Kubo daemons: pubsub latency and add/cat throughput.

    python -m gridd.bench.transport [--messages 500] [--sizes 1,10,50] [--repeats 3]

Latency: daemon A publishes one announcement at a time through IpfsBroker; we time from the
publish call to its arrival in the Subscription queues on B and C (p50/p99 over all messages).
Throughput: the same random bytes are added on A and fetched on C (which does not have them,
so bitswap moves every block) through our client, and with the raw `ipfs add` / `ipfs cat`
CLI against the same daemons. C's blocks are garbage-collected before every fetch and the two
paths alternate, so neither benefits from the other's cache. Targets: p50 <= 50 ms,
p99 <= 500 ms, our fetch >= 0.8x the CLI's throughput.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gridd.bench import save, table
from gridd.ipfs.client import MIN_PUBLISH_GAP
from gridd.ipfs.cluster import LocalCluster
from gridd.ipfs.daemon import KuboDaemon
from gridd.transport import IpfsBroker, IpfsStore

MB = 1_000_000
TOPIC = "gridd-bench-transport"


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def pubsub_latency(cluster: LocalCluster, messages: int) -> dict[str, Any]:
    """Publish on A one message at a time; time until both B and C have it."""
    brokers = [IpfsBroker(c) for c in cluster.clients]
    own = brokers[0].subscribe(TOPIC)  # a real peer listens on its own topic too
    inboxes = [b.subscribe(TOPIC) for b in brokers[1:]]
    for inbox in (own, *inboxes):
        inbox.wait_ready()
    cluster.wait_topic_mesh(TOPIC)
    latencies: list[float] = []
    lost = 0
    for i in range(messages):
        payload = struct.pack(">Q", i) + os.urandom(200)  # an announcement-sized message
        time.sleep(MIN_PUBLISH_GAP)  # announcements are paced; time delivery, not the gap
        sent = time.perf_counter()
        brokers[0].publish(TOPIC, payload)
        for inbox in inboxes:
            while True:
                msg = inbox.get(timeout=5.0)
                if msg is None:
                    lost += 1
                    break
                if struct.unpack(">Q", msg.data[:8])[0] == i:
                    latencies.append((time.perf_counter() - sent) * 1000)
                    break
    for inbox in (own, *inboxes):
        inbox.close()
    return {
        "messages": messages,
        "deliveries": len(latencies),
        "lost": lost,
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
        "max_ms": max(latencies),
    }


def _cli(daemon: KuboDaemon, *args: str) -> str:
    env = {**os.environ, "IPFS_PATH": str(daemon.repo)}
    out = subprocess.run(
        [daemon.binary, *args], env=env, check=True, stdout=subprocess.PIPE, timeout=600
    )
    return out.stdout.decode().strip()


def _cli_cat(daemon: KuboDaemon, cid: str) -> None:
    env = {**os.environ, "IPFS_PATH": str(daemon.repo)}
    subprocess.run(
        [daemon.binary, "cat", cid], env=env, check=True, stdout=subprocess.DEVNULL, timeout=600
    )


def _gc(daemon: KuboDaemon) -> None:
    env = {**os.environ, "IPFS_PATH": str(daemon.repo)}
    subprocess.run([daemon.binary, "repo", "gc", "-q"], env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=600)


def throughput(cluster: LocalCluster, size_mb: int, repeats: int) -> dict[str, Any]:
    """Median MB/s of add on A and remote fetch on C, ours vs the CLI, same bytes."""
    a, c = cluster.daemons[0], cluster.daemons[2]
    store_a, store_c = IpfsStore(cluster.clients[0]), IpfsStore(cluster.clients[2])
    data = os.urandom(size_mb * MB)
    times: dict[str, list[float]] = {"add_ours": [], "add_cli": [], "cat_ours": [], "cat_cli": []}
    with tempfile.NamedTemporaryFile(prefix="gridd-bench-") as f:
        f.write(data)
        f.flush()
        for rep in range(repeats):
            order = ("ours", "cli") if rep % 2 == 0 else ("cli", "ours")
            for who in order:
                _unpin_all(cluster, a)
                t = time.perf_counter()
                if who == "ours":
                    cid = store_a.put(data)
                else:
                    cid = _cli(a, "add", "-Q", "--progress=false", "--cid-version=1", f.name)
                times[f"add_{who}"].append(time.perf_counter() - t)
            for who in order:
                _gc(c)
                t = time.perf_counter()
                if who == "ours":
                    got = store_c.get(cid, max_size=len(data), timeout=300)
                    assert len(got) == len(data)
                else:
                    _cli_cat(c, cid)
                times[f"cat_{who}"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    row: dict[str, Any] = {"size_mb": size_mb}
    for k, secs in med.items():
        row[f"{k}_MBps"] = size_mb / secs
    row["cat_ratio"] = med["cat_cli"] / med["cat_ours"]
    row["add_ratio"] = med["add_cli"] / med["add_ours"]
    return row


def _unpin_all(cluster: LocalCluster, daemon: KuboDaemon) -> None:
    client = cluster.clients[cluster.daemons.index(daemon)]
    for cid in client.pin_ls():
        client.pin_rm(cid)
    _gc(daemon)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=500)
    p.add_argument("--sizes", default="1,10,50", help="payload sizes in MB, comma separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    with LocalCluster(3) as cluster:
        version = cluster.clients[0].version()
        lat = pubsub_latency(cluster, args.messages)
        rows = [throughput(cluster, s, args.repeats) for s in sizes]
    print(f"Kubo {version}, 3 daemons on 127.0.0.1, load average {os.getloadavg()[0]:.2f}")
    print("\npubsub announce -> remote delivery (A publishes, B and C receive)")
    print(table([lat]))
    print(f"\nadd on A / fetch on C, MB/s (median of {args.repeats}; ratio = ours / CLI speed)")
    print(table(rows))
    ok = {
        "p50_le_50ms": lat["p50_ms"] <= 50,
        "p99_le_500ms": lat["p99_ms"] <= 500,
        "fetch_ge_0.8x_cli": all(r["cat_ratio"] >= 0.8 for r in rows),
    }
    print("\ntargets: " + ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in ok.items()))
    path = save("transport", {"kubo": version, "pubsub": lat, "throughput": rows, "targets": ok},
                args.out)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
