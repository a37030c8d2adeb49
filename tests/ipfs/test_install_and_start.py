"""bin/install_ipfs and `gridd ipfs start` (what ./bin/start_ipfs runs), as a user runs them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridd.ipfs import KuboClient
from gridd.ipfs.daemon import find_ipfs

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "bin" / "install_ipfs"


def _install_env(tmp_path: Path, path: str) -> dict[str, str]:
    return {
        "HOME": str(tmp_path / "home"),
        "GRIDD_HOME": str(tmp_path / "gridd"),
        "GRIDD_CACHE": str(tmp_path / "cache"),
        "GRIDD_IGNORE_PATH_IPFS": "1",
        "PATH": path,
    }


def test_install_without_go_says_how_to_fix(tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", str(INSTALL)], env=_install_env(tmp_path, "/usr/bin:/bin"),
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 1
    assert "Go is not installed" in out.stderr and "bin/install_ipfs again" in out.stderr
    assert not (tmp_path / "gridd" / "bin" / "ipfs").exists()


def test_install_reuses_the_cached_build_without_go(tmp_path: Path) -> None:
    pinned = re.search(r'KUBO_VERSION:-(v[0-9.]+)', INSTALL.read_text())
    assert pinned, "bin/install_ipfs no longer names its default Kubo version"
    cached = tmp_path / "cache" / "kubo" / pinned.group(1) / "ipfs"
    cached.parent.mkdir(parents=True)
    shutil.copy(find_ipfs(), cached)
    env = _install_env(tmp_path, "/usr/bin:/bin")
    first = subprocess.run(["bash", str(INSTALL)], env=env, capture_output=True, text=True,
                           timeout=60)
    assert first.returncode == 0, first.stderr
    target = tmp_path / "gridd" / "bin" / "ipfs"
    assert first.stdout.strip().splitlines()[-1] == str(target)
    t = time.monotonic()
    second = subprocess.run(["bash", str(INSTALL)], env=env, capture_output=True, text=True,
                            timeout=60)
    assert second.returncode == 0 and second.stdout.strip() == str(target)
    assert time.monotonic() - t < 2, "an installed Kubo must be found in well under 2 s"


@pytest.mark.kubo
def test_start_initialises_enables_pubsub_and_prints_connect_addresses(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    env = {**os.environ, "IPFS_PATH": str(repo)}
    cmd = [sys.executable, "-m", "gridd", "ipfs", "start", "--local-only"]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        api = (repo / "api").read_text().strip()
        client = KuboClient(api)
        peer_id = client.id().peer_id
        assert "gridd peers connect /ip4/127.0.0.1/tcp/" in out.stdout
        assert f"/p2p/{peer_id}" in out.stdout
        assert client.config_get("Pubsub.Enabled") is True
        client.pubsub_ls()  # raises PubsubDisabled if pubsub were off
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        # not `ipfs shutdown`: a daemon with --enable-gc ignores it (Kubo 0.43)
        stopped = subprocess.run([sys.executable, "-m", "gridd", "ipfs", "stop"], env=env,
                                 capture_output=True, text=True, timeout=60)
        _wait_gone(repo)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped
    again = subprocess.run([sys.executable, "-m", "gridd", "ipfs", "stop"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "no ipfs daemon" in again.stderr


def _wait_gone(repo: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (repo / "api").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (repo / "api").exists(), "daemon did not shut down"
