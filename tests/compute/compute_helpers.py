"""Helpers for the compute tests: worker processes, the test grid, a tiny model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gridd.ipfs.cluster import LocalCluster

START_WORKER = Path(sys.executable).with_name("start_worker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WorkerProcess:
    """One `start_worker --compute` child; always reaped by stop()."""

    api: str
    topic: str
    args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, tmp: Path) -> WorkerProcess:
        self.log_path = tmp / f"worker-{uuid.uuid4().hex[:6]}.log"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
               "CUDA_VISIBLE_DEVICES": ""}
        cmd = [str(START_WORKER), "--compute", "--api", self.api, "--topic", self.topic,
               "--heartbeat-interval", "0.5", "--metrics-port", str(self.metrics_port),
               *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.proc is not None and self.log_path is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "READY " in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def metric(self, name: str, **labels: str) -> float:
        """One sample from the worker's /metrics (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
                       if labels else "")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Grid:
    cluster: LocalCluster
    topic: str
    workers: list[WorkerProcess]
    tmp: Path

    def api(self, i: int) -> str:
        return self.cluster.clients[i].address.multiaddr

    def spawn(self, daemon: int, topic: str | None = None, *args: str) -> WorkerProcess:
        w = WorkerProcess(self.api(daemon), topic or self.topic, list(args)).start(self.tmp)
        self.workers.append(w)
        return w


def mlp(hidden: int = 16, lr: float = 0.01, seed: int = 0, lambda_layer: bool = False):
    """A tiny compiled digits classifier (optionally with a Lambda layer, to be refused)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(64,))
    h = inputs
    if lambda_layer:
        h = keras.layers.Lambda(lambda t: t * 2.0)(h)
    h = keras.layers.Dense(hidden, activation="relu")(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, out)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model
