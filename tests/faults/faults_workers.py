"""Tree workers for the fault tests: digits shards and `start_worker --tree` processes.

A worker is a real `start_worker --tree` process; the tests read what it has seen from its
state directory (the fsynced tangle log and state.json) and its metrics endpoint, as an
operator could, so they work whatever runs the peer's loop inside the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from gridd.data import Dataset, dirichlet_partition, load_digits_split, save_npz
from gridd.lab.processes import scrape
from gridd.localports import free_port
from gridd.models import Recipe
from gridd.tree.state import LOG_FILE, STATE_FILE
from tangle import TangleLog

BIN = Path(sys.executable).parent
DIGITS = Recipe("digits_mlp", (64,), 10, learning_rate=0.1, batch_size=16, local_epochs=1)


def digits_shards(n: int, seed: int = 0) -> list[Dataset]:
    """n non-IID shards of the digits training split, each with its own validation part."""
    x, y = load_digits_split()[:2]
    out = []
    for idx in dirichlet_partition(y, n, alpha=1.0, seed=seed):
        cut = int(len(idx) * 0.8)
        out.append(Dataset(x[idx[:cut]], y[idx[:cut]], x[idx[cut:]], y[idx[cut:]]))
    return out


class Worker:
    """One `start_worker --tree` process on the daemon at `api`, logging to a file."""

    def __init__(self, name: str, genesis_id: str, api: str, dataset: Dataset, root: Path,
                 seed: int, training_interval: float = 1.0) -> None:
        self.name = name
        self.state_dir = root / name
        self.log_path = root / f"{name}.log"
        port = free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        data = root / f"{name}.npz"
        save_npz(data, dataset)
        argv = [str(BIN / "start_worker"), "--tree", "--genesis", genesis_id,
                "--data", str(data), "--api", api, "--state-dir", str(self.state_dir),
                "--training-interval", str(training_interval), "--announce-interval", "1",
                "--num-of-sampling-round", "8", "--seed", str(seed),
                "--metrics-port", str(port),
                "--logger", "stderr", "--logging-level", "INFO"]
        env = dict(os.environ, MODEL="no_tf", PYTHONUNBUFFERED="1")
        env.pop("TRAINING_INTERVAL", None)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def seen(self) -> set[str]:
        """Transactions this peer accepted (its fsynced log; a torn tail is skipped)."""
        return {tx.id for tx in TangleLog(self.state_dir / LOG_FILE).load()}

    def published(self) -> list[str]:
        try:
            return list(json.loads((self.state_dir / STATE_FILE).read_text())["published"])
        except (OSError, ValueError, KeyError):
            return []

    def metric(self, name: str) -> float | None:
        """One sample of the worker's Prometheus endpoint (None if absent or unreachable)."""
        return scrape(self.metrics_url).get(name)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker {self.name} exited with {self.proc.returncode}:\n"
                                 + self.tail())

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass


def knows_topic_peers(workers: list[Worker], n: int) -> bool:
    """Every worker's runtime has checked its connectivity (Broker.maintain) and counted
    n topic peers: only from then on does it remember whom to re-dial."""
    return all((w.metric("gridd_topic_peers") or 0) >= n for w in workers)


def union(workers: list[Worker]) -> set[str]:
    out: set[str] = set()
    for w in workers:
        out |= w.seen()
    return out


def all_have(workers: list[Worker], wanted: set[str]) -> bool:
    return all(wanted <= w.seen() for w in workers)


def missing_report(workers: list[Worker], wanted: set[str]) -> str:
    return ", ".join(f"{w.name} lacks {len(wanted - w.seen())}" for w in workers)
