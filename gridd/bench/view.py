"""What the web view costs a peer: CPU and memory with the view open in a browser vs closed.

    python -m gridd.bench.view                        # 1,000 and 10,000 transactions, 20 s each
    python -m gridd.bench.view --sizes 1000 --seconds 10

Each configuration runs in a fresh child process (so RSS is comparable): a training peer
(numpy digits model, TRAINING_INTERVAL 1 s, in-memory network) whose tangle is first filled
with N transactions (unsigned, random recent parents, one shared weights blob: the graph is
what the view reads), then runs its daemon loop for `--seconds`. "open": the peer serves
the view (the feed refreshes as a node tick) and headless Chromium (/usr/bin/chromium via
Playwright) has the page open, polling as a person's browser does (tangle every second,
the rest every 3 s, 500-transaction window). "closed": no view at all. Reported per run:
the child's CPU seconds over the measured period (as % of one core), its RSS at the end,
the time spent in feed refreshes, and the HTTP requests served.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gridd.bench import save, table

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]


def _filled_peer(size: int, seed: int = 0) -> Any:
    """An opened training peer whose tangle holds `size` transactions."""
    from gridd.data import Dataset, load_digits_split
    from gridd.lab.options import digits_recipe
    from gridd.transport import MemoryNetwork
    from gridd.tree.genesis import create_genesis
    from gridd.tree.peer import TreePeer
    from gridd.tree.settings import TreeSettings
    from tangle import Transaction

    net = MemoryNetwork()
    genesis_id = create_genesis(net.store(), digits_recipe(), init_seed=seed, issuer="bench")
    x, y, _, _ = load_digits_split()
    settings = TreeSettings(model="no_tf", training_interval=1.0, announce_interval=5.0,
                            storage="memory", message_broker="memory", logger="none",
                            logging_level="WARNING")
    peer = TreePeer(genesis_id=genesis_id, broker=net.broker("bench-peer"), store=net.store(),
                    dataset=Dataset(x[:400], y[:400], x[400:500], y[400:500]),
                    settings=settings, seed=seed, prefer="numpy")
    peer.open()
    tangle = peer.tangle
    cid = tangle.genesis.weights_cid
    rng = random.Random(seed)
    recent = [tangle.genesis.id]
    start = time.time() - size * 0.5
    for i in range(size - 1):
        parents = sorted(set(rng.sample(recent, min(2, len(recent)))))
        tx = Transaction.create(parents, cid, f"bench-issuer-{i % 20:02d}", start + i * 0.5,
                                metadata={"accuracy": round(rng.uniform(0.5, 0.95), 4),
                                          "samples": 300})
        tangle.add(tx)
        recent = (recent + [tx.id])[-12:]
    return peer


def child(size: int, mode: str, seconds: float) -> dict[str, Any]:
    """One measured run in this process; prints the view's URL first when open."""
    import psutil

    peer = _filled_peer(size)
    view = feed = None
    if mode == "open":
        from gridd.web.feed import TangleFeed
        from gridd.web.server import WebView

        feed = TangleFeed(peer)
        feed.refresh(force=True)
        view = WebView(feed).start()
        peer.node.every(feed.min_interval, feed.refresh, name="web")
        print(json.dumps({"url": view.url}), flush=True)
        sys.stdin.readline()  # the parent's browser has the page open
    stop = threading.Event()
    runner = threading.Thread(target=peer.run, args=(stop,), daemon=True)
    proc = psutil.Process()
    runner.start()
    time.sleep(2.0)  # warm-up: first ticks, first page loads (not a synchronisation)
    cpu0, wall0 = proc.cpu_times(), time.monotonic()
    refresh0 = feed.refresh_seconds if feed else 0.0
    requests0 = view.requests if view else 0
    time.sleep(seconds)  # the measured period: the peer runs as it would
    cpu1, wall1 = proc.cpu_times(), time.monotonic()
    result = {
        "transactions": size, "view": mode,
        "cpu_percent": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system))
        / (wall1 - wall0),
        "rss_mb": proc.memory_info().rss / 2**20,
        "refresh_ms_per_s": 1000 * ((feed.refresh_seconds if feed else 0.0) - refresh0)
        / (wall1 - wall0),
        "requests": (view.requests if view else 0) - requests0,
        "tangle_at_end": len(peer.tangle),
        "published": peer.counters.published,
    }
    stop.set()
    runner.join(10)
    if view is not None:
        view.close()
    peer.close()
    return result


def run_one(size: int, mode: str, seconds: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "gridd.bench.view", "--child", str(size), mode, str(seconds)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "MODEL": "no_tf"})
    assert proc.stdin is not None and proc.stdout is not None
    browser = None
    try:
        if mode == "open":
            url = json.loads(proc.stdout.readline())["url"]
            browser = _Browser(url)
            proc.stdin.write("go\n")
            proc.stdin.flush()
        out = proc.stdout.read()
        proc.wait(60)
    finally:
        if browser is not None:
            browser.close()
    if proc.returncode != 0:
        raise RuntimeError(f"child {size} {mode} failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


class _Browser:
    """Headless Chromium with the view open, in this (the parent) process."""

    def __init__(self, url: str) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                args=ARGS)
        self.page = self.browser.new_page(viewport={"width": 1440, "height": 1000})
        self.page.goto(url)
        self.page.wait_for_function(
            "document.querySelectorAll('#tangle .scatterlayer path.point').length > 0",
            timeout=60_000)

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--child", nargs=3, metavar=("SIZE", "MODE", "SECONDS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child:
        size, mode, seconds = int(args.child[0]), args.child[1], float(args.child[2])
        print(json.dumps(child(size, mode, seconds)), flush=True)
        return 0
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: bin/install_test_tools chromium", file=sys.stderr)
        return 1
    rows = []
    for size in args.sizes:
        for mode in ("closed", "open"):
            rows.append(run_one(size, mode, args.seconds))
            print(f"  {size} transactions, view {mode}: {rows[-1]['cpu_percent']:.1f} % CPU, "
                  f"{rows[-1]['rss_mb']:.0f} MB", file=sys.stderr)
    print(table(rows, ["transactions", "view", "cpu_percent", "rss_mb", "refresh_ms_per_s",
                       "requests", "tangle_at_end", "published"]))
    path = save("view", {"seconds": args.seconds, "rows": rows}, args.out)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
