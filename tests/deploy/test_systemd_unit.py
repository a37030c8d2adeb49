"""deploy/gridd-worker.service: systemd accepts it, and every program it runs is one this
repository ships (checked with the unit's install prefix pointed at this checkout)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

UNIT = ROOT / "deploy" / "gridd-worker.service"
PREFIX = "/var/lib/gridd/gridd"


def test_unit_verifies_against_this_checkout(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (Debian's systemd package provides it)")
    text = UNIT.read_text()
    assert PREFIX in text
    commands = [line.split("=", 1)[1] for line in text.splitlines()
                if line.startswith(("ExecStart", "ExecStop"))]
    assert len(commands) == 3
    local = tmp_path / UNIT.name
    here = (text.replace(f"{PREFIX}/.venv", sys.prefix)  # the venv bin/test runs in
            .replace(PREFIX, str(ROOT)).replace("User=gridd", "User=root"))
    local.write_text(here)
    done = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                          text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if UNIT.name in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
    # the worker command names a mode start_worker knows, from the unit's default
    assert "GRIDD_WORKER_MODE=compute" in text and "--$GRIDD_WORKER_MODE" in text
