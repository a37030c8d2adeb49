"""`gridd view` next to a real Kubo daemon, run as a user runs it (a subprocess): it follows
a tangle a training peer publishes, serves the view and draws the PNG."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridd.compute.local import WorkerProcess
from gridd.data import Dataset, load_digits_split
from gridd.ipfs.cluster import LocalCluster
from gridd.lab.options import digits_recipe
from gridd.metrics import TreeMetrics
from gridd.transport import IpfsBroker, IpfsStore
from gridd.tree.genesis import create_genesis
from gridd.tree.peer import TreePeer
from gridd.tree.settings import TreeSettings

pytestmark = pytest.mark.kubo


class Publisher:
    """A training peer on the daemon, stepped by the test while `gridd view` runs."""

    def __init__(self, cluster: LocalCluster) -> None:
        client = cluster.clients[0]
        store = IpfsStore(client)
        self.genesis_id = create_genesis(store, digits_recipe(), init_seed=0, issuer="test")
        x, y, _, _ = load_digits_split()
        settings = TreeSettings(model="no_tf", num_of_sampling_round=8, timeout=5.0,
                                training_interval=0.0, announce_interval=1.0)
        self.peer = TreePeer(genesis_id=self.genesis_id, broker=IpfsBroker(client), store=store,
                             dataset=Dataset(x[:300], y[:300], x[300:400], y[300:400]),
                             settings=settings, seed=0, prefer="numpy", metrics=TreeMetrics())
        self.peer.open()
        self.api = cluster.daemons[0].api_address() or ""
        self.topic = f"gridd-test-view-{os.getpid()}-{int(time.time())}"

    def publish(self, transactions: int) -> None:
        target = len(self.peer.tangle) + transactions
        for _ in range(200):
            if len(self.peer.tangle) >= target:
                return
            self.peer.train_step()
        raise AssertionError("the peer did not publish")

    def step_while(self, proc: subprocess.Popen[str], until: object, seconds: float) -> None:
        """Answer hellos and re-announce while `until()` is false, up to `seconds`."""
        deadline = time.monotonic() + seconds
        last = 0.0
        while not until():  # type: ignore[operator]
            assert proc.poll() is None or until(), proc.communicate()[1][-3000:]  # type: ignore
            if time.monotonic() > deadline:
                raise TimeoutError("gridd view did not catch up")
            if time.monotonic() - last > 1.0:
                last = time.monotonic()
                self.peer.announce()
            self.peer.process_messages(timeout=0.1)


@pytest.fixture(scope="module")
def publisher() -> Iterator[Publisher]:
    cluster = LocalCluster(1).start()
    pub = None
    try:
        pub = Publisher(cluster)
        pub.publish(6)
        yield pub
    finally:
        if pub is not None:
            pub.peer.close()
        cluster.stop()


def gridd(home: Path, *args: str, topic: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "GRIDD_HOME": str(home), "PYTHONUNBUFFERED": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    if topic:
        env["GRIDD_COMPUTE_TOPIC"] = topic
    return subprocess.Popen([sys.executable, "-m", "gridd", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_view_png(publisher: Publisher, tmp_path: Path) -> None:
    png = tmp_path / "tangle.png"
    proc = gridd(tmp_path / "home", "view", "--genesis", publisher.genesis_id, "--api",
                 publisher.api, "--png", str(png), "--wait", "8", "--no-compute")
    publisher.step_while(proc, lambda: proc.poll() is not None, 120)
    out, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    count = len(publisher.peer.tangle)
    assert f"{count} of {count} transactions" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_view_serves_the_tangle_and_workers(publisher: Publisher, tmp_path: Path) -> None:
    worker = WorkerProcess(publisher.api, publisher.topic).start(tmp_path)
    proc = gridd(tmp_path / "home", "view", "--genesis", publisher.genesis_id, "--api",
                 publisher.api, "--web-port", "0", "--duration", "120", topic=publisher.topic)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"view: (http://127\.0\.0\.1:\d+/)", line)
        assert match, line + proc.stderr.read()[-3000:]  # type: ignore[union-attr]
        url = match.group(1)

        def caught_up() -> bool:
            body = httpx.get(url + "api/summary", timeout=5).json()
            return body["transactions"] == len(publisher.peer.tangle)

        publisher.step_while(proc, caught_up, 60)
        publisher.publish(1)
        publisher.step_while(proc, caught_up, 30)
        tangle = httpx.get(url + "api/tangle", timeout=5).json()
        assert [t["id"] for t in tangle["transactions"]] == [
            tx.id for tx in publisher.peer.tangle.transactions()]
        assert tangle["accuracy_source"] == "self-reported"  # no --validation
        worker.wait_ready()

        def worker_listed() -> bool:
            jobs = httpx.get(url + "api/jobs", timeout=5).json()["sections"]
            assert set(jobs) == {"compute_workers", "compute_jobs"}
            return len(jobs["compute_workers"]["rows"]) == 1

        publisher.step_while(proc, worker_listed, 60)  # from the worker's ads
        row = httpx.get(url + "api/jobs", timeout=5).json()["sections"]["compute_workers"]
        assert row["rows"][0]["slots"] >= 1 and row["rows"][0]["peer_id"].startswith("12D3")
        assert httpx.get(url, timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
        worker.stop()
    assert proc.returncode == 0, proc.stderr.read()[-3000:]  # type: ignore[union-attr]


def test_view_refuses_a_bad_genesis(tmp_path: Path) -> None:
    proc = gridd(tmp_path / "home", "view", "--genesis", "not-an-id", "--png", "x.png")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--genesis" in err


def test_tree_worker_serves_its_view_only_when_asked(publisher: Publisher,
                                                     tmp_path: Path) -> None:
    env = {**os.environ, "GRIDD_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-c", "from gridd.cli_modes import start_worker; start_worker()",
            "--tree", "--genesis", publisher.genesis_id, "--observer", "--api", publisher.api,
            "--state-dir", str(tmp_path / "state"), "--duration", "120", "--web-port", "0"]
    proc = subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:  # the peer prints its lines, then runs
            match = re.search(r"view on (http://127\.0\.0\.1:\d+/)", line)
            if match:
                url = match.group(1)
                break
        assert url is not None, "no 'view on' line"

        def caught_up() -> bool:
            body = httpx.get(url + "api/summary", timeout=5).json()
            return body["transactions"] == len(publisher.peer.tangle)

        publisher.step_while(proc, caught_up, 60)
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0
    off = subprocess.run([*argv[:3], "--tree", "--help"], capture_output=True, text=True)
    assert "--web-port" in off.stdout and "off by default" in off.stdout
