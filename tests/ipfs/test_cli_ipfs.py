"""`gridd ipfs status` and `gridd peers` tell the truth, run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gridd import __version__
from gridd.ipfs import KuboDaemon
from gridd.ipfs.cluster import LocalCluster

GRIDD = [sys.executable, "-m", "gridd"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRIDD, *args], capture_output=True, text=True, timeout=60, env=env)


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0 and __version__ in out.stdout


def test_status_no_daemon() -> None:
    out = run("ipfs", "status", "--api", "/ip4/127.0.0.1/tcp/9")
    assert out.returncode == 1
    assert "could not connect to IPFS" in out.stderr and "on port 9" in out.stderr


def test_api_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    out = run("ipfs", "status", env={**os.environ, "GRIDD_IPFS_API": "http://127.0.0.1:9"})
    assert out.returncode == 1 and "on port 9" in out.stderr


@pytest.mark.kubo
def test_status_pubsub_disabled(tmp_path: Path) -> None:
    daemon = KuboDaemon(tmp_path / "repo", local_only=True, pubsub=False)
    daemon.start()
    try:
        out = run("ipfs", "status", "--api", daemon.api_address() or "")
        assert out.returncode == 2, out
        assert "pubsub:  DISABLED" in out.stdout
        assert "ipfs config --json Pubsub.Enabled true" in out.stderr
    finally:
        daemon.stop()


@pytest.mark.kubo
def test_status_healthy_and_peers(kubo3: LocalCluster) -> None:
    api = kubo3.daemons[0].api_address() or ""
    out = run("ipfs", "status", "--api", api)
    assert out.returncode == 0, out
    assert "Kubo 0.4" in out.stdout and "pubsub:  enabled" in out.stdout
    assert "peers:   2 connected" in out.stdout
    peers = run("peers", "--api", api)
    assert peers.returncode == 0
    for c in kubo3.clients[1:]:
        assert c.id().peer_id in peers.stdout
    assert "/p2p/" + kubo3.clients[0].id().peer_id in peers.stdout


@pytest.mark.kubo
def test_peers_connect(kubo_cluster) -> None:
    cluster = kubo_cluster(2)
    a, b = cluster.clients
    for peer, _ in a.swarm_peers():
        a.request("swarm/disconnect", {"arg": f"/p2p/{peer}"})
    addr = b.swarm_addrs_local()[0]
    out = run("peers", "--api", cluster.daemons[0].api_address() or "", "connect", addr)
    assert out.returncode == 0, out
    assert b.id().peer_id in {p for p, _ in a.swarm_peers()}
    api = cluster.daemons[0].api_address() or ""
    bad = run("peers", "--api", api, "connect", "/ip4/127.0.0.1/tcp/1")
    assert bad.returncode == 1 and "swarm/connect" in bad.stderr
    # as the README writes it: the option after the subcommand works too
    for peer, _ in a.swarm_peers():
        a.request("swarm/disconnect", {"arg": f"/p2p/{peer}"})
    after = run("peers", "connect", "--api", api, addr)
    assert after.returncode == 0, after
    assert b.id().peer_id in {p for p, _ in a.swarm_peers()}


@pytest.mark.kubo
def test_the_repos_daemon_is_found_without_api(tmp_path: Path) -> None:
    """As the ipfs CLI does: with IPFS_PATH set, no --api is needed whatever the port."""
    import os

    daemon = KuboDaemon(tmp_path / "repo", local_only=True)  # a random API port
    daemon.start()
    try:
        env = {k: v for k, v in os.environ.items() if k != "GRIDD_IPFS_API"}
        out = run("ipfs", "status", env={**env, "IPFS_PATH": str(tmp_path / "repo")})
        assert out.returncode == 0, out
        assert (daemon.api_address() or "?").split("/")[-1] in out.stdout
    finally:
        daemon.stop()
