"""deploy/compose.yaml with podman-compose, as README's "Run on several machines" runs it:
three tree peers bootstrap from tree0, train one tangle and converge; Prometheus scrapes them;
the web view shows the same tangle; the containers report healthy."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from gridd.localports import free_port
from tests.deploy.conftest import ROOT, podman, wait_until

pytestmark = [pytest.mark.deploy, pytest.mark.slow, pytest.mark.timeout(900)]
COMPOSE = [str(Path(sys.executable).parent / "podman-compose"), "-f", "deploy/compose.yaml"]


def _query(port: int, expr: str) -> dict[str, float]:
    r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=5)
    return {s["metric"].get("instance", ""): float(s["value"][1])
            for s in r.json()["data"]["result"]}


def test_compose_lab_converges(image: str, tmp_path: Path) -> None:
    env_file = tmp_path / "lab.env"
    keys = subprocess.run([sys.executable, "-m", "gridd.ipfs.repo_setup", "keygen", "--env"],
                          capture_output=True, text=True, check=True).stdout
    env_file.write_text(keys)
    project = f"gridd-test-{uuid.uuid4().hex[:8]}"
    prom, web = free_port(), free_port()
    base = [*COMPOSE, "--env-file", str(env_file), "-p", project]
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "GRIDD_PROMETHEUS_PORT": str(prom),
           "GRIDD_WEB_PORT": str(web), "GRIDD_IMAGE": image}
    up = subprocess.run([*base, "up", "-d"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        peers = {f"tree{i}:9100" for i in range(3)}

        def logs() -> str:
            return "\n".join(podman("logs", "--tail", "15", f"{project}_tree{i}_1",
                                    check=False)[-1500:] for i in range(3))

        def converged() -> bool:
            try:
                size = _query(prom, "gridd_tangle_transactions")
                received = _query(prom, "gridd_tx_received_total")
                accuracy = _query(prom, "gridd_consensus_accuracy")
            except (httpx.HTTPError, KeyError, ValueError):
                return False
            if set(size) != peers or set(received) != peers:
                return False
            # one tangle: every peer holds most of what the others hold, and heard from them
            return (min(size.values()) >= 10 and min(size.values()) >= 0.8 * max(size.values())
                    and min(received.values()) >= 3 and min(accuracy.values()) > 0.5)

        wait_until("three peers on one tangle, seen by Prometheus", converged, 420, logs)
        for i in range(3):  # the image's HEALTHCHECK: `gridd ipfs status`
            podman("healthcheck", "run", f"{project}_tree{i}_1")
        # tree1 and tree2 were given only tree0: they found each other through the tangle's
        # topic (Kubo's pubsub discovery over the cluster's DHT), so the mesh is complete
        ids = {i: podman("exec", f"{project}_tree{i}_1", "ipfs", "id", "-f", "<id>").strip()
               for i in range(3)}

        def meshed() -> bool:
            peers = podman("exec", f"{project}_tree1_1", "gridd", "peers", check=False)
            return ids[0] in peers and ids[2] in peers

        wait_until("tree1 connected to tree2 as well as tree0", meshed, 60)
        genesis = podman("exec", f"{project}_tree0_1", "cat", "/shared/genesis").strip()
        for i in (1, 2):
            assert f"joined tangle {genesis}" in podman("logs", f"{project}_tree{i}_1")

        def viewed() -> dict | None:  # the web view follows the same tangle from its container
            try:
                out = httpx.get(f"http://127.0.0.1:{web}/api/summary", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return None
            return out if out.get("transactions", 0) >= 10 else None

        wait_until("the web view to show the tangle", viewed, 180,
                   lambda: podman("logs", "--tail", "20", f"{project}_web_1", check=False))
        assert viewed()["genesis"] == genesis  # type: ignore[index]
    finally:
        subprocess.run([*base, "down", "-v"], cwd=ROOT, env=env, capture_output=True,
                       timeout=300)
    assert not podman("ps", "-a", "--filter", f"name={project}", "-q").strip()
