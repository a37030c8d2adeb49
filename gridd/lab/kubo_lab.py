"""`gridd lab --transport ipfs`: N real peers, each a `start_worker --tree` process with its
own Kubo daemon (own repo, loopback ports), swarm-connected like a small real network.

The lab itself is one more node: it creates the genesis on its own daemon and follows the
tangle as an observer TreePeer, scoring the consensus model on the held-out test set while
the peers train. Client-epochs are read from each peer's Prometheus endpoint, as an
operator would. Random-weight attackers run inside the lab process, each on its own daemon
(so their messages carry their own verified peer id). Everything started is stopped at the
end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gridd.data import save_npz
from gridd.ipfs.cluster import LocalCluster
from gridd.lab.attackers import RandomWeightsAttacker
from gridd.lab.options import LabOptions, LabResult, Point, digits_recipe, holdout_accuracy
from gridd.lab.partition import LabData, observer_data
from gridd.lab.processes import cpu_seconds, rss_bytes, scrape
from gridd.lab.staleness import median_staleness
from gridd.lab.watch import LabWatch
from gridd.localports import free_port
from gridd.transport import IpfsBroker, IpfsStore
from gridd.tree.genesis import create_genesis
from gridd.tree.notebook import make_observer
from gridd.tree.peer import TreePeer

Progress = Callable[[int, float, int], None]
SAMPLE_EVERY = 0.5  # seconds between progress samples
START_WORKER = "from gridd.cli_modes import start_worker; start_worker()"


class PeerProcess:
    """One `start_worker --tree` child process and where to read its metrics and log."""

    def __init__(self, index: int, argv: list[str], env: dict[str, str], log: Path,
                 metrics_port: int) -> None:
        self.index = index
        self.log = log
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def trainings(self) -> int:
        return int(scrape(self.metrics_url).get("gridd_trainings_total", 0))

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(
                f"peer {self.index} exited with code {self.proc.returncode}:\n" + "\n".join(tail)
            )

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass


def _peer_env(opts: LabOptions) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "TRAINING_INTERVAL": str(opts.training_interval),
        "ACTIVE_QUOTA": str(opts.active_quota),
        "NUM_OF_TIPS": str(opts.num_of_tips),
        "NUM_OF_SAMPLING_ROUND": str(opts.sampling_rounds),
        "REFERENCE_TOP": str(opts.reference_top),
        "VET_TOLERANCE": str(opts.vet_tolerance),
        "VET_OWN_ACCURACY": str(opts.vet_own_accuracy),
        "TIP_SELECTOR": opts.tip_selector,
        "MODEL": opts.model,
        "ANNOUNCE_INTERVAL": "5",
        "LOGGING_LEVEL": "WARNING",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def run_kubo_lab(
    opts: LabOptions,
    data: LabData,
    progress: Progress | None = None,
    on_ready: Callable[[LabResult], None] | None = None,
    keep: bool = False,
    watch: LabWatch | None = None,
) -> LabResult:
    """Run the lab on real daemons; `on_ready` is called once every peer is running;
    `watch` (web view, Prometheus targets) is started then too."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="gridd-lab-"))
    cluster = LocalCluster(opts.peers + 1, root=workdir / "kubo")
    peers: list[PeerProcess] = []
    attackers: list[RandomWeightsAttacker] = []
    observer: TreePeer | None = None
    try:
        cluster.start()
        lab_client = cluster.clients[-1]
        store = IpfsStore(lab_client)
        genesis_id = create_genesis(store, digits_recipe(), init_seed=opts.seed, issuer="lab")
        result = LabResult(opts, genesis_id)
        observer = make_observer(genesis_id, IpfsBroker(lab_client), store, observer_data(data),
                                 opts.tree_settings("ipfs"), seed=opts.seed + 10_000)
        observer.open()
        start_acc = holdout_accuracy(digits_recipe(), observer.consensus_weights(), data.x_test,
                                     data.y_test)
        result.timeline.append(Point(time.monotonic() - started, 0, 1, start_acc))
        env = _peer_env(opts)
        for i, dataset in enumerate(data.peers):
            client = cluster.clients[i]
            if i in data.malicious and data.attack == "random":
                attacker = RandomWeightsAttacker(genesis_id, IpfsBroker(client),
                                                 IpfsStore(client), opts.seed + i)
                attacker.open()
                attackers.append(attacker)
                continue
            npz = workdir / f"peer{i}.npz"
            save_npz(npz, dataset)
            port = free_port()
            argv = [
                sys.executable, "-c", START_WORKER, "--tree", "--genesis", genesis_id,
                "--data", str(npz), "--api", cluster.daemons[i].api_address() or "",
                "--metrics-port", str(port), "--state-dir", str(workdir / f"peer{i}"),
                "--seed", str(opts.seed + i),
            ]
            peers.append(PeerProcess(i, argv, env, workdir / f"peer{i}.log", port))
        result.metrics_urls = [p.metrics_url for p in peers]
        if watch is not None:
            kubo = [d.api_address() for d in cluster.daemons]
            watch.start(observer, tree_urls=result.metrics_urls,
                        kubo_urls=[_kubo_url(a) for a in kubo if a])
        if on_ready is not None:
            on_ready(result)
        pids = [p.proc.pid for p in peers] + [
            d.process.pid for d in cluster.daemons if d.process is not None
        ] + [os.getpid()]
        _follow(opts, data, observer, peers, attackers, result, pids, progress, started, watch)
        for p in peers:
            p.stop()
        # Let the last announcements arrive, then score the final consensus.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            observer.process_messages(timeout=0.2)
        recipe = digits_recipe()
        acc = holdout_accuracy(recipe, observer.consensus_weights(), data.x_test, data.y_test)
        epochs = result.timeline[-1].client_epochs if result.timeline else 0
        result.timeline.append(Point(time.monotonic() - started, epochs, len(observer.tangle),
                                     acc))
        result.wall_seconds = time.monotonic() - started
        result.staleness_median = median_staleness(observer.tangle)
        return result
    finally:
        for p in peers:
            p.stop()
        for a in attackers:
            a.close()
        if observer is not None:
            observer.close()
        cluster.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _follow(
    opts: LabOptions,
    data: LabData,
    observer: TreePeer,
    peers: list[PeerProcess],
    attackers: list[RandomWeightsAttacker],
    result: LabResult,
    pids: list[int],
    progress: Progress | None,
    started: float,
    watch: LabWatch | None = None,
) -> None:
    """Track the tangle until the peers have spent the client-epoch budget."""
    recipe = digits_recipe()
    next_sample = next_attack = time.monotonic()
    epochs = 0
    while epochs < opts.budget:
        if time.monotonic() - started > opts.max_seconds:
            result.notes.append(f"stopped at the {opts.max_seconds:.0f} s limit")
            break
        observer.process_messages(timeout=0.1)
        if watch is not None:
            watch.tick()
        now = time.monotonic()
        if attackers and now >= next_attack:
            next_attack = now + opts.training_interval
            for a in attackers:
                a.process_messages()
                a.train_step()
        if now < next_sample:
            continue
        next_sample = now + SAMPLE_EVERY
        for p in peers:
            p.check_alive()
        epochs = sum(p.trainings() for p in peers) * recipe.local_epochs
        acc = holdout_accuracy(recipe, observer.consensus_weights(), data.x_test, data.y_test)
        point = Point(now - started, epochs, len(observer.tangle), acc)
        result.timeline.append(point)
        if watch is not None:
            watch.point(point)
        result.peak_memory_bytes = max(result.peak_memory_bytes, rss_bytes(pids))
        result.cpu_seconds = max(result.cpu_seconds, cpu_seconds(pids))
        if progress is not None:
            progress(epochs, acc, len(observer.tangle))


def _kubo_url(multiaddr: str) -> str:
    """A daemon's RPC multiaddr as host:port (where Kubo serves its Prometheus metrics)."""
    from gridd.ipfs.address import parse_api_address

    address = parse_api_address(multiaddr)
    return f"{address.host}:{address.port}"
