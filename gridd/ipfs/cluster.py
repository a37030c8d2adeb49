"""Several local Kubo daemons wired together: the test fixture, the lab and the benchmarks."""

from __future__ import annotations

import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gridd.ipfs.client import KuboClient
from gridd.ipfs.daemon import KuboDaemon
from gridd.ipfs.errors import IPFSError


class LocalCluster:
    """N loopback-only daemons with their own repos, fully swarm-connected."""

    def __init__(self, n: int, root: Path | str | None = None, keep: bool = False) -> None:
        self._own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="gridd-kubo-"))
        self.keep = keep
        self.daemons = [KuboDaemon(self.root / f"node{i}", local_only=True) for i in range(n)]
        self.clients: list[KuboClient] = []

    def start(self) -> LocalCluster:
        try:
            with ThreadPoolExecutor(max_workers=4) as pool:
                self.clients = list(pool.map(lambda d: d.start(), self.daemons))
            self.connect_all()
        except BaseException:
            self.stop()
            raise
        return self

    def connect_all(self) -> None:
        addrs = [c.swarm_addrs_local()[0] for c in self.clients]
        for i, c in enumerate(self.clients):
            for j in range(i + 1, len(self.clients)):
                c.swarm_connect(addrs[j])

    def restart(self, i: int) -> KuboClient:
        """Stop and start daemon i on the same API port; reconnects it to the others."""
        self.daemons[i].stop()
        self.daemons[i].start().close()  # same API port: existing clients keep working
        me = self.clients[i].swarm_addrs_local()[0]
        for j, c in enumerate(self.clients):
            if j != i:
                c.swarm_connect(me)
        return self.clients[i]

    def wait_topic_mesh(self, topic: str, timeout: float = 15.0) -> None:
        """Block until every daemon sees all others subscribed (delivery is then reliable)."""
        n = len(self.clients)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(len(c.pubsub_peers(topic)) >= n - 1 for c in self.clients):
                return
            time.sleep(0.05)
        seen = {i: c.pubsub_peers(topic) for i, c in enumerate(self.clients)}
        raise IPFSError(f"topic {topic!r} mesh incomplete after {timeout}s: {seen}")

    def stop(self) -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda d: d.stop(), self.daemons))
        for c in self.clients:
            c.close()
        if self._own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
