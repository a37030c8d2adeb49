"""Compute workers as child processes on this machine: for tests, benchmarks and labs.

Each child is a real `start_worker --compute` (its own Python, its own TensorFlow); stop()
always reaps it, so nothing outlives the caller.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gridd.localports import free_port


def start_worker_command() -> list[str]:
    """The start_worker of this interpreter's environment (falls back to -c for dev trees)."""
    exe = Path(sys.executable).with_name("start_worker")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from gridd.cli_modes import start_worker; start_worker()"]


@dataclass
class WorkerProcess:
    """One `start_worker --compute` child with its log file and metrics port."""

    api: str
    topic: str
    args: list[str] = field(default_factory=list)
    heartbeat: float = 0.5
    log_path: Path | None = None
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    program: list[str] | None = None  # instead of start_worker (gridd.bench.fed_attacker)

    def start(self, log_dir: Path) -> WorkerProcess:
        self.log_path = Path(log_dir) / f"worker-{uuid.uuid4().hex[:6]}.log"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
               "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
        state = [] if "--state-dir" in self.args else [  # not the user's ~/.gridd
            "--state-dir", str(Path(log_dir) / f"state-{self.log_path.stem}")]
        cmd = [*(self.program or start_worker_command()), "--compute", "--api", self.api,
               "--topic", self.topic,
               "--heartbeat-interval", str(self.heartbeat),
               "--metrics-port", str(self.metrics_port), *state, *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the worker printed READY (TF imported, subscribed), or raise with its log."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "READY " in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the worker's /metrics (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        want = name
        if labels:
            want += "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the worker vanishes without a word (what failover must survive)."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
