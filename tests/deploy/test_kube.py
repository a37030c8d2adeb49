"""deploy/k8s/ under `podman kube play`, in README's order: the bootstrap tree peer first,
the tangle's id published as the gridd-tangle ConfigMap, then the StatefulSet scaled to 3
tree peers next to 2 compute workers. The three peers converge on one tangle, and a
`Client.fit` from this host, on its own Kubo daemon, is trained by the workers."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from gridd.ipfs import KuboDaemon
from tests.deploy import kube
from tests.deploy.conftest import ROOT, podman, wait_until

pytestmark = [pytest.mark.deploy, pytest.mark.slow, pytest.mark.kubo, pytest.mark.tf,
              pytest.mark.timeout(900)]
MANIFEST = ROOT / "deploy" / "k8s" / "gridd.yaml"


def _metric(ip: str, name: str) -> float | None:
    try:
        text = httpx.get(f"http://{ip}:9100/metrics", timeout=3).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _pod_ip(pod: str, network: str) -> str:
    info = json.loads(podman("pod", "inspect", pod))
    infra = info["InfraContainerID"] if isinstance(info, dict) else info[0]["InfraContainerID"]
    nets = json.loads(podman("inspect", infra))[0]["NetworkSettings"]["Networks"]
    return str(nets[network]["IPAddress"])


def _play(docs: list[kube.Doc], path: Path, network: str, alias: str | None = None) -> None:
    net = f"{network}:alias={alias}" if alias else network
    podman("kube", "play", "--network", net, str(kube.dump(docs, path)), timeout=600)


def test_kube_manifests_converge_and_serve_a_fit(image: str, tmp_path: Path) -> None:
    lab_env = subprocess.run([sys.executable, "-m", "gridd.ipfs.repo_setup", "keygen", "--env"],
                             capture_output=True, text=True, check=True).stdout
    secret = kube.secret_from_env_file("gridd-bootstrap", lab_env)
    docs = kube.load(MANIFEST)
    assert {d["kind"] for d in docs} == {"ConfigMap", "Service", "StatefulSet", "Deployment"}
    for d in docs:  # the image this run built, under the manifests' own name
        for spec in (d.get("spec", {}).get("template", {}).get("spec", {}),):
            for c in spec.get("containers", []):
                assert c["image"] == "localhost/gridd:latest"
    network = f"gridd-k8s-{uuid.uuid4().hex[:8]}"
    volumes_before = set(podman("volume", "ls", "-q").split())
    podman("network", "create", network)
    played: list[Path] = []
    host = KuboDaemon(tmp_path / "host-kubo", local_only=True)
    try:
        config_maps = [d for d in docs if d["kind"] == "ConfigMap"]
        # kubectl apply -f deploy/k8s/: the StatefulSet starts with gridd-tree-0 only
        first, aliases = kube.expand([d for d in docs if d["kind"] != "Deployment"], [secret])
        assert aliases == {"gridd-tree-0": "gridd-bootstrap"}
        played.append(tmp_path / "tree0.yaml")
        _play(first, played[-1], network, alias="gridd-bootstrap")

        def genesis() -> str:
            return podman("exec", "gridd-tree-0-gridd", "cat", "/data/genesis",
                          check=False).strip()

        wait_until("gridd-tree-0 to create the tangle", genesis, 240,
                   lambda: podman("logs", "--tail", "30", "gridd-tree-0-gridd", check=False))
        tangle = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gridd-tangle"},
                  "data": {"GRIDD_GENESIS": genesis()}}
        # kubectl create configmap gridd-tangle ...; kubectl scale statefulset --replicas=3
        scaled = [dict(d, spec={**d["spec"], "replicas": 3}) if d["kind"] == "StatefulSet"
                  else d for d in docs]
        everything, _ = kube.expand([*scaled, tangle], [secret])
        rest = [d for d in everything
                if d["metadata"]["name"] not in ("gridd-tree-0", "state-gridd-tree-0")]
        played.append(tmp_path / "rest.yaml")
        _play([*config_maps, tangle, *[d for d in rest if d["kind"] != "ConfigMap"]],
              played[-1], network)

        trees = [f"gridd-tree-{i}" for i in range(3)]
        ips = {p: _pod_ip(p, network) for p in trees}

        def converged() -> bool:
            sizes = [_metric(ip, "gridd_tangle_transactions") for ip in ips.values()]
            heard = [_metric(ip, "gridd_tx_received_total") for ip in ips.values()]
            if None in sizes or None in heard:
                return False
            return (min(sizes) >= 10 and min(sizes) >= 0.8 * max(sizes)  # type: ignore
                    and min(heard) >= 3)  # type: ignore

        def tree_logs() -> str:
            return "\n".join(podman("logs", "--tail", "12", f"{p}-gridd", check=False)[-1500:]
                             for p in trees)

        wait_until("three tree peers on one tangle", converged, 420, tree_logs)
        for p in trees:
            assert f"joined tangle {genesis()}" in podman("logs", f"{p}-gridd")

        # a notebook on this host: its own Kubo on the pods' network, connected to the workers
        gateway = json.loads(podman("network", "inspect", network))[0]["subnets"][0]["gateway"]
        assert ipaddress.ip_address(gateway)
        host.swarm_host = gateway
        client_api = host.start()
        workers = [n for n in podman("ps", "--format", "{{.Names}}").split()
                   if n.startswith("gridd-compute-pod-")]
        assert len(workers) == 2, workers
        for name in workers:  # as a user would: `gridd peers` there, `peers connect` here
            def own_addrs(name: str = name) -> list[str]:
                out = podman("exec", name, "gridd", "peers", check=False)
                return [a.strip() for a in out.split("Connected peers")[0].splitlines()
                        if a.strip().startswith("/ip4/") and "/127.0.0.1/" not in a]

            wait_until(f"{name}'s Kubo", own_addrs, 120)
            client_api.swarm_connect(own_addrs()[0])
        import keras
        import numpy as np

        from gridd import Client

        rng = np.random.default_rng(0)
        x = rng.normal(size=(256, 8)).astype("float32")
        y = (x[:, 0] > 0).astype("int64")
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        with Client(host.api_address(), no_worker_timeout=240) as grid:
            trained, history = grid.fit(model, x, y, epochs=3, verbose=0)
        assert len(history.history["loss"]) == 3
        assert trained.count_params() == model.count_params()
        done = [_metric(_pod_ip(w.removesuffix("-gridd"), network),
                        "gridd_jobs_completed_total") for w in workers]
        assert sum(d or 0 for d in done) == 1, done  # trained by one of the pods' workers

        # a StatefulSet pod keeps its identity and state: delete gridd-tree-1, run it again
        # on its claim, and it is the same peer, resuming its tangle from its volume
        kubo_id = podman("exec", "gridd-tree-1-gridd", "ipfs", "id", "-f", "<id>").strip()
        podman("pod", "rm", "-f", "gridd-tree-1")
        again = [d for d in everything if d["metadata"]["name"] == "gridd-tree-1"]
        played.append(tmp_path / "tree1-again.yaml")
        _play([*config_maps, tangle, *again], played[-1], network)

        def resumed() -> bool:
            return "transactions, state in" in podman("logs", "gridd-tree-1-gridd", check=False)

        wait_until("gridd-tree-1 to come back", resumed, 180,
                   lambda: podman("logs", "--tail", "20", "gridd-tree-1-gridd", check=False))
        log = podman("logs", "gridd-tree-1-gridd")
        assert podman("exec", "gridd-tree-1-gridd", "ipfs", "id", "-f", "<id>").strip() == kubo_id
        restored = int(log.split(f"joined tangle {genesis()} (")[1].split()[0])
        assert restored >= 10, log[-2000:]
    finally:
        host.stop()
        for path in reversed(played):
            podman("kube", "down", str(path), check=False)
        for v in set(podman("volume", "ls", "-q").split()) - volumes_before:
            podman("volume", "rm", "-f", v, check=False)  # PVCs and the workers' /data
        podman("network", "rm", "-f", network, check=False)
    assert not [n for n in podman("ps", "-a", "--format", "{{.Names}}").split()
                if n.startswith(("gridd-tree-", "gridd-compute-"))]
