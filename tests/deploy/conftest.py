"""Deploy tests: the container image built once per session by bin/build_image (cached under
~/.cache/gridd, so a warm run takes seconds), podman installed by deploy/install_podman."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def image() -> str:
    """Build (or reuse) localhost/gridd:latest; returns its name."""
    started = time.monotonic()
    done = subprocess.run([ROOT / "bin" / "build_image"], capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"bin/build_image: {time.monotonic() - started:.1f}s")
    return done.stdout.strip().splitlines()[-1]


def wait_until(what: str, cond: Callable[[], object], timeout: float = 30.0,
               explain: Callable[[], str] = lambda: "", every: float = 0.5) -> None:
    """Poll `cond` until it is true or the deadline passes (then fail saying what was missing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{explain()}")


def podman(*args: str, check: bool = True, timeout: float = 300) -> str:
    """Run podman; returns its stdout (for `logs`: the container's stdout and stderr)."""
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout + done.stderr if args[:1] == ("logs",) else done.stdout
