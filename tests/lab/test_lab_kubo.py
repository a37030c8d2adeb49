"""`gridd lab` on real Kubo daemons, run as a user runs it: results out, nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.kubo, pytest.mark.slow]


def _lab_processes() -> list[psutil.Process]:
    """Peers and Kubo daemons that belong to a lab (their state lives under gridd-lab-*)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            env = proc.environ() if "ipfs" in cmdline else {}
        except psutil.Error:
            continue
        if "gridd-lab-" in cmdline or "gridd-lab-" in env.get("IPFS_PATH", ""):
            found.append(proc)
    return found


def test_kubo_lab_runs_peers_reports_and_cleans_up(tmp_path: Path) -> None:
    before = {p.pid for p in _lab_processes()}
    out = tmp_path / "lab.json"
    run = subprocess.run(
        [sys.executable, "-m", "gridd", "lab", "--peers", "3", "--client-epochs", "12",
         "--training-interval", "0.3", "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "3 peers running; metrics:" in run.stdout + run.stderr
    assert "view: http://127.0.0.1:" in run.stdout + run.stderr  # on by default
    assert out.with_suffix(".png").exists()
    assert "final consensus accuracy:" in run.stdout
    result = json.loads(out.read_text())
    assert result["options"]["transport"] == "ipfs" and result["client_epochs"] >= 12
    assert len(result["metrics_urls"]) == 3
    assert result["timeline"][-1]["transactions"] > 1  # the peers' work reached the observer
    assert result["final_accuracy"] > result["timeline"][0]["consensus_accuracy"]
    assert result["peak_memory_bytes"] > 0
    leftovers = [p for p in _lab_processes() if p.pid not in before]
    assert not leftovers, f"lab left processes running: {leftovers}"
