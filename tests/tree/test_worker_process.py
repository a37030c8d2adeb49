"""`gridd genesis` and `start_worker --tree` as real subprocesses on real Kubo daemons.

The restart test kills a running worker with SIGKILL (no cleanup runs), damages the tail
of its log as a crash mid-write would, restarts it and checks that nothing it had seen is
lost and that it catches up with what was published while it was dead.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from tree_helpers import fast_settings, make_peer, tx_ids

from gridd.data import Dataset, save_npz
from gridd.ipfs.cluster import LocalCluster
from gridd.localports import free_port
from gridd.transport import IpfsBroker, IpfsStore
from gridd.tree.state import LOG_FILE, STATE_FILE
from tangle import TangleLog

BIN = Path(sys.executable).parent


def _env(cluster: LocalCluster, node: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ, MODEL="no_tf", GRIDD_IPFS_API=str(cluster.daemons[node].api_address()))
    env.pop("TRAINING_INTERVAL", None)
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 60.0
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    running: list[subprocess.Popen[str]] = []
    yield running
    for p in running:  # reap whatever a failing test left behind
        if p.poll() is None:
            p.kill()
        p.wait(10)


def test_invalid_setting_is_refused_at_start_with_its_name() -> None:
    env = dict(os.environ, ACTIVE_QUOTA="often")
    r = _run([str(BIN / "start_worker"), "--tree", "--genesis", "0" * 64, "--data", "x.npz"],
             env)
    assert r.returncode == 2
    assert "ACTIVE_QUOTA: expected a number, got 'often' (from environment" in r.stderr


@pytest.mark.kubo
def test_genesis_command_and_wrong_data_are_explained(kubo3: LocalCluster,
                                                      tmp_path: Path) -> None:
    env = _env(kubo3, 0)
    r = _run([str(BIN / "gridd"), "genesis", "--model", "digits_mlp", "--init-seed", "5"], env)
    assert r.returncode == 0, r.stderr
    genesis_id = r.stdout.strip()
    assert len(genesis_id) == 64
    bad = tmp_path / "bad.npz"
    x = np.zeros((20, 8, 8), np.float32)
    save_npz(bad, Dataset(x, np.zeros(20, np.int64), x, np.zeros(20, np.int64)))
    r = _run([str(BIN / "start_worker"), "--tree", "--genesis", genesis_id, "--data", str(bad),
              "--state-dir", str(tmp_path / "s")], env)
    assert r.returncode == 1
    assert "feature shape (8, 8) does not match the recipe's input shape (64,)" in r.stderr
    r = _run([str(BIN / "gridd"), "genesis", "--model", "no-such-model"], env)
    assert r.returncode != 0 and "neither a file nor a builtin architecture" in r.stderr


def _published(state_dir: Path) -> list[str]:
    try:
        return list(json.loads((state_dir / STATE_FILE).read_text())["published"])
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.kubo
@pytest.mark.slow
def test_sigkill_and_restart_loses_nothing(kubo3: LocalCluster, tmp_path: Path,
                                           shards: list[Dataset],
                                           procs: list[subprocess.Popen[str]]) -> None:
    env = _env(kubo3, 0)
    data = tmp_path / "peer.npz"
    save_npz(data, shards[0])
    state = tmp_path / "state"
    args = [str(BIN / "start_worker"), "--tree", "--create-genesis", "--model", "digits_mlp",
            "--data", str(data), "--state-dir", str(state), "--training-interval", "0.2",
            "--announce-interval", "1", "--num-of-sampling-round", "8", "--seed", "3",
            "--logger", "stderr", "--logging-level", "INFO"]
    worker = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              text=True)
    procs.append(worker)
    deadline = time.monotonic() + 60
    while len(_published(state)) < 3 and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.1)
    assert len(_published(state)) >= 3, worker.stderr.read() if worker.poll() is not None else ""
    genesis_id = json.loads((state / STATE_FILE).read_text())["genesis_id"]
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    assert worker.returncode == -signal.SIGKILL
    before = json.loads((state / STATE_FILE).read_text())
    seen = {tx.id for tx in TangleLog(state / LOG_FILE).load()} | {genesis_id}
    assert set(before["published"]) <= seen

    # while it is dead, another peer (another daemon) extends the tangle
    client = kubo3.clients[1]
    other = make_peer(genesis_id, IpfsBroker(client), IpfsStore(client), shards[1],
                      settings=fast_settings(), seed=9)
    try:
        other.process_messages(timeout=0.5)
        deadline = time.monotonic() + 30
        while not seen <= tx_ids(other) and time.monotonic() < deadline:
            other.process_messages(timeout=0.2)
            other.builder.want(set(before["published"]), rumour=True)  # as a heads message
        assert seen <= tx_ids(other)
        for _ in range(5):
            if other.train_step().published:
                break
        made_while_dead = set(other.published)
        assert made_while_dead
        with open(state / LOG_FILE, "ab") as f:  # a record torn by the kill
            f.write(b"\x00\x00\x02\x00\x12\x34\x56\x78half a rec")

        restart = [a for a in args if a not in ("--create-genesis", "--model", "digits_mlp")]
        port = free_port()
        restart += ["--genesis", genesis_id, "--duration", "8", "--metrics-port", str(port)]
        again = subprocess.Popen(restart, env=env, stderr=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, text=True)
        procs.append(again)
        deadline = time.monotonic() + 40
        metrics = ""
        while again.poll() is None and time.monotonic() < deadline:
            other.process_messages(timeout=0.2)  # answers its hello with our heads
            metrics = _scrape(port) or metrics
        assert again.wait(10) == 0, again.stderr.read()
        log = again.stderr.read()
    finally:
        other.close()
    after_log = {tx.id for tx in TangleLog(state / LOG_FILE).load()} | {genesis_id}
    after = json.loads((state / STATE_FILE).read_text())
    assert seen <= after_log  # nothing it had seen is lost
    resumed = re.search(r"joined tangle \w+ \((\d+) transactions", log)
    assert resumed and int(resumed.group(1)) >= len(seen), log[-2000:]  # from its own log
    size = [line for line in metrics.splitlines() if line.startswith("gridd_tangle_transactions")]
    assert size and float(size[0].split()[-1]) >= len(seen | made_while_dead)
    assert made_while_dead <= after_log  # and it caught up with what it missed
    assert after["peer_id"] == before["peer_id"]  # same identity
    assert after["client_epochs"] > before["client_epochs"]
    assert set(before["published"]) <= set(after["published"])
    for name in REQUIRED_METRICS:
        assert f"\n{name}" in metrics, name
    received = [line for line in metrics.splitlines() if line.startswith("gridd_tx_received_total")]
    assert received and float(received[0].split()[-1]) >= len(made_while_dead)


REQUIRED_METRICS = [
    "gridd_tx_received_total", "gridd_tx_published_total", "gridd_trainings_total",
    "gridd_training_seconds_bucket", "gridd_consensus_accuracy", "gridd_consensus_loss",
    "gridd_local_accuracy", "gridd_local_loss", "gridd_pending_transactions",
    "gridd_ipfs_fetch_bytes_total", "gridd_ipfs_fetch_errors_total", "gridd_tangle_transactions",
]


def _scrape(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0).text
    except httpx.HTTPError:
        return ""
