"""Bootstrap on real Kubo daemons: a worker started with --bootstrap connects to its bootstrap
peer, and re-connects after a disconnect and after either daemon restarts; an unreachable
entry is a warning; bin/start_ipfs --bootstrap writes Kubo's Peering.Peers and connects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridd.ipfs import KuboClient, KuboDaemon
from gridd.ipfs.repo_setup import new_identity
from gridd.localports import free_port
from tests.deploy.conftest import wait_until

pytestmark = pytest.mark.kubo
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def connected(client: KuboClient, peer: str) -> bool:
    return peer in {p for p, _ in client.swarm_peers()}


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[tuple[KuboDaemon, KuboDaemon]]:
    """The bootstrap peer's daemon (fixed swarm port, so it can restart on its address) and
    the worker's daemon; not connected to each other."""
    boot = KuboDaemon(tmp_path / "boot", local_only=True, swarm_port=free_port())
    mine = KuboDaemon(tmp_path / "mine", local_only=True)
    try:
        boot.start().close()
        mine.start().close()
        yield boot, mine
    finally:
        boot.stop()
        mine.stop()


def test_worker_keeps_its_bootstrap_peer_connected(tmp_path: Path,
                                                   daemons: tuple[KuboDaemon, KuboDaemon]) -> None:
    boot, mine = daemons
    bc, mc = KuboClient(boot.api_address()), KuboClient(mine.api_address())
    boot_id, mine_id = bc.id().peer_id, mc.id().peer_id
    boot_addr = bc.swarm_addrs_local()[0]
    dead = f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{new_identity()[0]}"  # nobody listens
    env = {**os.environ, "MODEL": "no_tf", "HOME": str(tmp_path), "GRIDD_BOOTSTRAP": "",
           "GRIDD_TREE_STATE": str(tmp_path / "state"), "LOGGING_LEVEL": "INFO"}
    genesis = subprocess.run(
        [BIN / "gridd", "genesis", "--api", mine.api_address(), "--model", "softmax",
         "--input-shape", "4", "--classes", "3"],
        env=env, capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [BIN / "start_worker", "--tree", "--observer", "--genesis", genesis,
             "--api", mine.api_address(), "--bootstrap", boot_addr, "--bootstrap", dead],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until("the first connection", lambda: connected(mc, boot_id))
        wait_until("the worker to join", lambda: "joined tangle" in log_path.read_text())
        text = log_path.read_text()
        assert f"bootstrap peer {dead} is unreachable" in text, text
        assert worker.poll() is None

        # the bootstrap side drops us: nothing but the worker dials again
        bc.request("swarm/disconnect", {"arg": f"/p2p/{mine_id}"})
        wait_until("the worker to notice the loss",
                   lambda: f"lost the connection to {boot_id}" in log_path.read_text())
        wait_until("a re-connection after the disconnect", lambda: connected(mc, boot_id))

        mine.stop()  # the worker's own daemon restarts: it comes back knowing nobody
        mine.start().close()
        wait_until("a re-connection after the worker's daemon restarted",
                   lambda: connected(mc, boot_id))

        boot.stop()  # the bootstrap daemon restarts on the same address
        wait_until("the loss of the bootstrap peer", lambda: not connected(mc, boot_id))
        boot.start().close()
        wait_until("a re-connection after the bootstrap daemon restarted",
                   lambda: connected(mc, boot_id), timeout=60.0)
        assert worker.poll() is None, log_path.read_text()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        bc.close()
        mc.close()


def _start_ipfs(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IPFS_PATH": str(tmp_path / "repo"), "GRIDD_BOOTSTRAP": ""}
    return subprocess.run([ROOT / "bin" / "start_ipfs", "--local-only", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def test_start_ipfs_bootstrap_writes_kubo_peering_and_connects(
        tmp_path: Path, daemons: tuple[KuboDaemon, KuboDaemon]) -> None:
    boot, _ = daemons
    with KuboClient(boot.api_address()) as bc:
        boot_id, boot_addr = bc.id().peer_id, bc.swarm_addrs_local()[0]
    repo = tmp_path / "repo"

    bad = _start_ipfs(tmp_path, "--bootstrap", "/ip4/127.0.0.1/tcp/4001")
    assert bad.returncode == 2 and "'/ip4/127.0.0.1/tcp/4001'" in bad.stderr, bad.stderr
    assert not (repo / "api").exists()  # nothing was started

    done = _start_ipfs(tmp_path, "--bootstrap", boot_addr)
    try:
        assert done.returncode == 0, done.stderr
        assert f"bootstrap: connected to {boot_id}" in done.stderr
        peers = json.loads((repo / "config").read_text())["Peering"]["Peers"]
        assert peers == [{"ID": boot_id, "Addrs": [boot_addr.rsplit("/p2p/", 1)[0]]}]
        with KuboClient((repo / "api").read_text().strip()) as mc:
            assert connected(mc, boot_id)
            # no gridd process runs now: Kubo's own peering re-dials the restarted peer
            boot.stop()
            wait_until("the loss of the bootstrap peer", lambda: not connected(mc, boot_id))
            boot.start().close()
            wait_until("Kubo to re-dial its peering peer", lambda: connected(mc, boot_id),
                       timeout=90.0)
        # and a restart of this daemon, without --bootstrap, peers from its config
        subprocess.run([BIN / "gridd", "ipfs", "stop", "--repo", str(repo)], timeout=60,
                       check=True)
        again = _start_ipfs(tmp_path)
        assert again.returncode == 0, again.stderr
        with KuboClient((repo / "api").read_text().strip()) as mc:
            wait_until("the restarted daemon to peer again", lambda: connected(mc, boot_id),
                       timeout=90.0)
    finally:
        subprocess.run([BIN / "gridd", "ipfs", "stop", "--repo", str(repo)], timeout=60)
