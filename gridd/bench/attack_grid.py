"""The honest side of the attack benchmark, driven only through what an operator has.

Why only the CLI: the runtime behind `start_worker` is being rewritten, and the benchmark
must keep measuring the same things across that rewrite. So honest nodes are
`start_worker --tree` / `--compute` child processes with their own Kubo daemons, they are
ready when their metrics endpoint answers and their daemon lists their topic, and every
figure comes from their Prometheus endpoints and from psutil (memory), never from gridd
objects in this process.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families

from gridd.ipfs.cluster import LocalCluster
from gridd.ipfs.daemon import KuboDaemon
from gridd.localports import free_port

# Metrics counted per phase: every family whose name holds one of these words (the issue
# asks for rejected/refused/dropped; throttling and handler errors are defences and bugs).
COUNTER_WORDS = ("rejected", "refused", "dropped", "throttled", "handler_errors")
TREE_ENV = {  # the lab's fast settings (gridd lab --transport ipfs)
    "TRAINING_INTERVAL": "1.0", "ACTIVE_QUOTA": "1.0", "NUM_OF_TIPS": "8",
    "NUM_OF_SAMPLING_ROUND": "35", "REFERENCE_TOP": "8", "TIP_SELECTOR": "accuracy",
    "MODEL": "no_tf", "ANNOUNCE_INTERVAL": "5", "LOGGING_LEVEL": "WARNING",
}
GROUPS = ("tree", "tree_kubo", "worker", "worker_kubo")
_HTTP = httpx.Client(timeout=2.0)


def scrape(url: str) -> dict[str, float] | None:
    """A /metrics page as {sample{labels}: value} (no *_created); None if it does not answer."""
    try:
        text = _HTTP.get(url).text
    except httpx.HTTPError:
        return None
    out: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    except ValueError:
        return None
    return out


def start_worker_command() -> list[str]:
    """This environment's start_worker (a dev tree without entry points falls back to -c)."""
    exe = Path(sys.executable).with_name("start_worker")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from gridd.cli_modes import start_worker; start_worker()"]


def _daemon_topics(daemon: KuboDaemon) -> set[str]:
    """Topics the daemon's local subscribers hold (pubsub/ls), decoded."""
    addr = daemon.api_address()
    if not addr:
        return set()
    parts = addr.strip("/").split("/")
    try:
        d = _HTTP.post(f"http://{parts[1]}:{parts[3]}/api/v0/pubsub/ls").json() or {}
    except (httpx.HTTPError, ValueError):
        return set()
    out = set()
    for t in d.get("Strings") or []:
        body = t[1:]
        try:
            out.add(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode())
        except ValueError:
            continue
    return out


@dataclass
class Honest:
    """One honest `start_worker` child next to its own Kubo daemon."""

    name: str
    role: str  # "tree" or "worker"
    argv: list[str]
    env: dict[str, str]
    log: Path
    metrics_port: int
    daemon: KuboDaemon
    topic: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> Honest:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        return (self.alive and scrape(self.metrics_url) is not None
                and self.topic in _daemon_topics(self.daemon))

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def terminate(self) -> None:
        """SIGTERM to its process group (a clean stop starts)."""
        if self.alive:
            assert self.proc is not None
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop it; True if it stopped on SIGTERM, False if it had to be killed."""
        return stop_all([self], timeout) == []


def stop_all(procs: Iterable[Honest], grace: float = 10.0) -> list[str]:
    """SIGTERM all at once, SIGKILL whatever is still running after `grace` seconds;
    returns the names of those that had to be killed (a stop they did not honour)."""
    procs = [h for h in procs if h.alive]
    for h in procs:
        h.terminate()
    deadline = time.monotonic() + grace
    while any(h.alive for h in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = [h.name for h in procs if h.alive]
    for h in procs:
        h.kill()
    return killed


def wait_ready(procs: Iterable[Honest], timeout: float) -> None:
    """Poll until every process is ready; raise with the log of one that died or stalled."""
    pending = list(procs)
    deadline = time.monotonic() + timeout
    while pending:
        for h in list(pending):
            if not h.alive:
                raise RuntimeError(f"{h.name} exited during start:\n{h.tail()}")
            if h.ready():
                pending.remove(h)
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"{pending[0].name} not ready after {timeout:.0f}s:\n"
                               f"{pending[0].tail()}")
        time.sleep(0.2)


class ClientProcess:
    """The honest client (gridd.bench.attack_client) as a child: one JSON line per command."""

    def __init__(self, api: str, topic: str, seed: int, epochs: int, log: Path,
                 trust: list[str] | None = None) -> None:
        self.argv = [sys.executable, "-m", "gridd.bench.attack_client", "--api", api,
                     "--topic", topic, "--seed", str(seed), "--epochs", str(epochs)]
        for peer in trust or []:
            self.argv += ["--trust", peer]
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next_id = 0

    def start(self) -> ClientProcess:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
               "CUDA_VISIBLE_DEVICES": ""}
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True,
                                         env=env, start_new_session=True)
        threading.Thread(target=self._read, name="client-answers", daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._answers.put(json.loads(line))
            except ValueError:
                continue

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"the honest client exited during start:\n{self.tail()}")
            try:
                if self._answers.get(timeout=0.2).get("ready"):
                    return
            except queue.Empty:
                continue
        raise TimeoutError(f"the honest client is not ready after {timeout:.0f}s")

    def ask(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send a command; its answer, or None if none came within `timeout`."""
        if not self.alive:
            return None
        assert self.proc is not None and self.proc.stdin is not None
        self._next_id += 1
        want = self._next_id
        try:
            self.proc.stdin.write(json.dumps({**cmd, "id": want}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = self._answers.get(timeout=min(0.5, deadline - time.monotonic()))
            except (queue.Empty, ValueError):
                if not self.alive:
                    return None
                continue
            if answer.get("id") == want:
                return answer
        return None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            assert p.stdin is not None
            p.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            p.stdin.flush()
            p.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)


@dataclass
class Tangle:
    """One phase's tangle: a fresh genesis and fresh tree peers, so every phase starts equal."""

    genesis_id: str
    topic: str
    peers: list[Honest]


@dataclass
class Grid:
    """Client daemon 0, foreign daemon 1, tree daemons, worker daemons: all swarm-connected."""

    workdir: Path
    tree_peers: int = 3
    workers: int = 2
    seed: int = 0
    cluster: LocalCluster | None = None
    compute_topic: str = field(default_factory=lambda: f"gridd-attack-{uuid.uuid4().hex[:8]}")
    worker_procs: list[Honest] = field(default_factory=list)
    fit_epochs: int | None = 5  # None: no honest client process (no legitimate fit)
    trust_workers: bool = False  # the honest client gives jobs only to the honest workers
    tangle: Tangle | None = None
    client: ClientProcess | None = None
    peer_ids: list[str] = field(default_factory=list)  # the daemons' (pubsub peers)
    worker_ids: list[str] = field(default_factory=list)  # the workers' role keys (authors)
    _phase: int = 0

    CLIENT, FOREIGN = 0, 1

    def tree_daemon(self, i: int) -> int:
        return 2 + i

    def worker_daemon(self, i: int) -> int:
        return 2 + self.tree_peers + i

    def api(self, index: int) -> str:
        assert self.cluster is not None
        return self.cluster.daemons[index].api_address() or ""

    def start(self, ready_timeout: float = 180.0) -> Grid:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cluster = LocalCluster(2 + self.tree_peers + self.workers,
                                    root=self.workdir / "kubo").start()
        self.peer_ids = [c.id().peer_id for c in self.cluster.clients]
        self.worker_procs = [self._worker(i) for i in range(self.workers)]
        self._write_data()
        wait_ready(self.worker_procs, ready_timeout)
        self.worker_ids = [self._worker_id(i) for i in range(self.workers)]
        if self.fit_epochs is not None:  # after the workers: a trust list names their keys
            self.client = self._client().start()
            self.client.wait_ready(ready_timeout)
        return self

    def _worker_id(self, i: int) -> str:
        """The identity worker i signs as: the role key it claimed on its own daemon
        (gridd-worker-<n>, gridd/ipfs/roles.py), not the daemon's peer id."""
        assert self.cluster is not None
        keys = self.cluster.clients[self.worker_daemon(i)].key_list()
        ids = [pid for name, pid in sorted(keys.items()) if name.startswith("gridd-worker-")]
        if len(ids) != 1:
            raise RuntimeError(f"worker{i}: expected one gridd-worker key on its daemon, "
                               f"found {sorted(keys)}")
        return ids[0]

    def _client(self) -> ClientProcess:
        trust = list(self.worker_ids) if self.trust_workers else None
        return ClientProcess(self.api(self.CLIENT), self.compute_topic, self.seed,
                             self.fit_epochs or 5, self.workdir / "client.log", trust)

    def _worker(self, i: int) -> Honest:
        assert self.cluster is not None
        d = self.worker_daemon(i)
        port = free_port()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
               "CUDA_VISIBLE_DEVICES": ""}
        argv = [*start_worker_command(), "--compute", "--api", self.api(d), "--topic",
                self.compute_topic, "--heartbeat-interval", "1", "--metrics-port", str(port)]
        return Honest(f"worker{i}", "worker", argv, env, self.workdir / f"worker{i}.log", port,
                      self.cluster.daemons[d], self.compute_topic).start()

    def _write_data(self) -> None:
        """Digits split among the tree peers with Dirichlet(0.5) label skew, as in the lab."""
        from gridd.data import dirichlet_partition, holdout, load_digits_split

        x, y, _, _ = load_digits_split()
        for i, idx in enumerate(dirichlet_partition(y, self.tree_peers, 0.5, self.seed)):
            ds = holdout(x[idx], y[idx], seed=self.seed + i)
            np.savez(self.workdir / f"peer{i}.npz", x=ds.x, y=ds.y, x_val=ds.x_val,
                     y_val=ds.y_val)

    def open_tangle(self, label: str, ready_timeout: float = 90.0) -> Tangle:
        """`gridd genesis` on the client daemon, then fresh `start_worker --tree` peers."""
        assert self.cluster is not None and self.tangle is None
        self._phase += 1
        out = subprocess.run(
            [sys.executable, "-m", "gridd", "genesis", "--api", self.api(self.CLIENT),
             "--model", "digits_mlp", "--init-seed", str(self.seed)],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"gridd genesis failed: {out.stderr[-2000:]}")
        genesis_id = out.stdout.strip().splitlines()[-1]
        topic = "gridd/tree/v1/" + genesis_id
        env = {**os.environ, **TREE_ENV, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        phase_dir = self.workdir / f"phase{self._phase:02d}-{label}"
        phase_dir.mkdir(parents=True, exist_ok=True)
        peers = []
        for i in range(self.tree_peers):
            d = self.tree_daemon(i)
            port = free_port()
            argv = [*start_worker_command(), "--tree", "--genesis", genesis_id,
                    "--data", str(self.workdir / f"peer{i}.npz"), "--api", self.api(d),
                    "--metrics-port", str(port), "--state-dir", str(phase_dir / f"peer{i}"),
                    "--seed", str(self.seed + i)]
            peers.append(Honest(f"tree{i}", "tree", argv, env, phase_dir / f"tree{i}.log", port,
                                self.cluster.daemons[d], topic).start())
        self.tangle = Tangle(genesis_id, topic, peers)
        try:
            wait_ready(peers, ready_timeout)
        except BaseException:
            self.close_tangle()
            raise
        return self.tangle

    def close_tangle(self, grace: float = 10.0) -> list[str]:
        """Stop the phase's tree peers; the names of those that ignored SIGTERM for `grace`."""
        killed: list[str] = []
        if self.tangle is not None:
            killed = stop_all(self.tangle.peers, grace)
            self.tangle = None
        return killed

    def honest(self) -> list[Honest]:
        return (self.tangle.peers if self.tangle else []) + self.worker_procs

    def tracked(self) -> list[tuple[str, str, int]]:
        """(name, group, pid) of every honest process whose memory the benchmark watches."""
        assert self.cluster is not None
        out = [(h.name, h.role, h.proc.pid) for h in self.honest() if h.proc is not None]
        for i in range(self.tree_peers):
            d = self.cluster.daemons[self.tree_daemon(i)]
            if d.process is not None:
                out.append((f"kubo-tree{i}", "tree_kubo", d.process.pid))
        for i in range(self.workers):
            d = self.cluster.daemons[self.worker_daemon(i)]
            if d.process is not None:
                out.append((f"kubo-worker{i}", "worker_kubo", d.process.pid))
        client = self.cluster.daemons[self.CLIENT]
        if client.process is not None:
            out.append(("kubo-client", "client_kubo", client.process.pid))
        if self.client is not None and self.client.proc is not None:
            out.append(("client", "client", self.client.proc.pid))
        return out

    def crashed(self) -> list[str]:
        """Honest processes (peers, workers, their daemons, the client daemon) that exited."""
        assert self.cluster is not None
        dead = [h.name for h in self.honest() if not h.alive]
        if self.client is not None and not self.client.alive:
            dead.append("client")
        for i, d in enumerate(self.cluster.daemons):
            if i != self.FOREIGN and not d.running:
                dead.append(f"kubo{i}")
        return dead

    def heal(self, ready_timeout: float = 180.0) -> list[str]:
        """Restart whatever died (daemons first, then workers) so the next phase is whole."""
        assert self.cluster is not None
        healed = []
        for i, d in enumerate(self.cluster.daemons):
            if not d.running:
                self.cluster.restart(i)
                healed.append(f"kubo{i}")
        for i, w in enumerate(self.worker_procs):
            if not w.alive or f"kubo{self.worker_daemon(i)}" in healed:
                w.stop()
                self.worker_procs[i] = self._worker(i)
                healed.append(w.name)
        if self.client is not None and not self.client.alive:
            self.client = self._client().start()
            healed.append("client")
        if healed:
            wait_ready(self.worker_procs, ready_timeout)
            if self.client is not None:
                self.client.wait_ready(ready_timeout)
        return healed

    def stop(self) -> None:
        self.close_tangle()
        if self.client is not None:
            self.client.stop()
        stop_all(self.worker_procs, 15.0)
        if self.cluster is not None:
            self.cluster.stop()


class Sampler:
    """A thread sampling honest processes' RSS (4 Hz) and metrics (1 Hz) during a phase.

    Peaks are kept per process; growth is peak minus the RSS when the phase began. The last
    good scrape of each endpoint is kept, so a process that crashes still has its counts.
    """

    def __init__(self, grid: Grid, rss_limit_mb: float) -> None:
        self.grid = grid
        self.rss_limit = rss_limit_mb * 2**20
        self.base_rss: dict[str, int] = {}
        self.peak_rss: dict[str, int] = {}
        self.groups: dict[str, str] = {}
        self.last_metrics: dict[str, dict[str, float]] = {}
        self.over_limit: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _rss(pid: int) -> int | None:
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return None

    def scrape_all(self) -> dict[str, dict[str, float]]:
        for h in self.grid.honest():
            got = scrape(h.metrics_url)
            if got is not None:
                self.last_metrics[h.name] = got
        return {k: dict(v) for k, v in self.last_metrics.items()}

    def begin(self) -> dict[str, dict[str, float]]:
        """Baselines (RSS and metrics) at the start of the attack window; starts sampling."""
        self.last_metrics = {}
        self.over_limit = None
        self.base_rss, self.peak_rss, self.groups = {}, {}, {}
        for name, group, pid in self.grid.tracked():
            rss = self._rss(pid)
            if rss is not None:
                self.base_rss[name] = self.peak_rss[name] = rss
                self.groups[name] = group
        base = self.scrape_all()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="attack-sampler", daemon=True)
        self._thread.start()
        return base

    def _run(self) -> None:
        next_scrape = 0.0
        while not self._stop.wait(0.25):
            for name, _group, pid in self.grid.tracked():
                rss = self._rss(pid)
                if rss is None or name not in self.base_rss:
                    continue
                if rss > self.peak_rss[name]:
                    self.peak_rss[name] = rss
                if rss > self.rss_limit and self.over_limit is None:
                    self.over_limit = f"{name} reached {rss / 2**20:.0f} MB"
            if time.monotonic() >= next_scrape:
                self.scrape_all()
                next_scrape = time.monotonic() + 1.0

    def halt(self) -> None:
        """Stop sampling (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def end(self) -> dict[str, dict[str, float]]:
        """Stop sampling; the final metrics (last good scrape of a process that died)."""
        self.halt()
        return self.scrape_all()

    def growth_mb(self) -> dict[str, float]:
        """Peak RSS growth per group: the worst process of the group, in MB."""
        out = {g: 0.0 for g in GROUPS}
        for name, base in self.base_rss.items():
            g = self.groups[name]
            out[g] = max(out.get(g, 0.0), (self.peak_rss[name] - base) / 2**20)
        return out

    def per_process_mb(self) -> dict[str, dict[str, float]]:
        return {n: {"start_mb": b / 2**20, "peak_mb": self.peak_rss[n] / 2**20}
                for n, b in self.base_rss.items()}
