"""Every Grafana panel's query returns data from a real Prometheus scraping real nodes.

Debian's prometheus (bin/install_test_tools) runs with configs/prometheus.yml (scrape and
discovery intervals shortened, the target glob pointed at a temporary directory) and
scrapes: a memory lab's peers and observer (their targets written by the lab's own
LabWatch, as `gridd lab --prometheus-targets` does), a real Kubo daemon (also from the
lab's list) and a real `start_worker --compute` process (a second target file). The test
steps the lab while it polls Prometheus's HTTP API (deadline, no sleeps as sync) until
every target has been scraped a few times, then runs every panel's PromQL of the committed
dashboards through /api/v1/query.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gridd.compute.local import WorkerProcess
from gridd.dashboards.targets import write_targets
from gridd.ipfs.address import parse_api_address
from gridd.ipfs.cluster import LocalCluster
from gridd.lab.memory_lab import MemoryLab
from gridd.lab.options import LabOptions
from gridd.lab.partition import lab_data
from gridd.lab.watch import LabWatch
from gridd.localports import free_port

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = Path("/usr/bin/prometheus")
DASHBOARDS = ROOT / "configs" / "grafana" / "dashboards"
SCRAPES = 4  # samples per target before the queries run (increase() needs two)

pytestmark = [pytest.mark.prometheus, pytest.mark.kubo]


def prometheus_binary() -> Path:
    if not PROMETHEUS.exists():  # bin/test installs it; a bare pytest run may not have it
        subprocess.run([str(ROOT / "bin" / "install_test_tools"), "prometheus"], check=True)
    return PROMETHEUS


class Prometheus:
    def __init__(self, tmp: Path, targets: Path) -> None:
        config = yaml.safe_load((ROOT / "configs" / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        sd = config["scrape_configs"][0]["file_sd_configs"][0]
        sd["files"] = [str(targets / "*.json")]
        sd["refresh_interval"] = "1s"
        path = tmp / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(prometheus_binary()), f"--config.file={path}",
                 f"--storage.tsdb.path={tmp / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    tmp = tmp_path_factory.mktemp("prometheus")
    targets = tmp / "targets"
    cluster = LocalCluster(1).start()
    worker = lab = watch = prom = None
    try:
        api = cluster.daemons[0].api_address() or ""
        worker = WorkerProcess(api, f"gridd-test-dash-{uuid.uuid4().hex[:8]}").start(tmp)
        opts = LabOptions(peers=3, transport="memory", seed=2, client_epochs=10**6)
        lab = MemoryLab(opts, lab_data("digits", 3, 0.5, 2))
        lab.open()
        address = parse_api_address(api)
        watch = LabWatch(opts, targets_path=targets / "lab.json", say=lambda _: None)
        watch.start(lab.observer, registries=[p.metrics.registry for p in
                                              (*lab.trainers, lab.observer)],
                    kubo_urls=[f"{address.host}:{address.port}"])
        write_targets(targets / "compute.json",
                      {"compute": [f"127.0.0.1:{worker.metrics_port}"]})
        worker.wait_ready()
        prom = Prometheus(tmp, targets)
        deadline = time.monotonic() + 120
        expected = len(lab.trainers) + 1 + 1 + 1  # peers, observer, kubo, worker
        while True:
            lab.round()  # the lab keeps training between scrapes
            if prom.ready():
                up = prom.query(f"count_over_time(up[5m]) >= {SCRAPES}")
                healthy = prom.query("up == 1")
                if len(up) == expected and len(healthy) == expected:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"targets not scraped {SCRAPES} times in 120 s: "
                                   f"{prom.query('up')}\n{prom.log.read_text()[-2000:]}")
            time.sleep(0.25)  # polling interval of the deadline loop, not a synchronisation
        yield prom
    finally:
        if prom is not None:
            prom.stop()
        if watch is not None:
            watch.close()
        if lab is not None:
            lab.close()
        if worker is not None:
            worker.stop()
        cluster.stop()


def panels() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                out.append((path.stem, panel["title"], target["expr"]))
    return out


def test_there_are_tree_compute_and_kubo_dashboards() -> None:
    assert {p[0] for p in panels()} == {"gridd-tree", "gridd-compute", "gridd-kubo"}


def test_every_panel_query_returns_data(scraped: Prometheus) -> None:
    empty = [f"{board} / {title}: {expr}" for board, title, expr in panels()
             if not scraped.query(expr)]
    assert empty == [], "panels without data:\n" + "\n".join(empty)


def test_panels_show_the_lab_as_it_is(scraped: Prometheus) -> None:
    peers = scraped.query('count(gridd_tangle_transactions{role="tree"})')
    assert float(peers[0]["value"][1]) == 4  # 3 peers and the observer
    size = float(scraped.query('max(gridd_tangle_transactions{role="tree"})')[0]["value"][1])
    assert size > 1
    accuracy = scraped.query('avg(gridd_consensus_accuracy{role="tree"})')
    assert 0 < float(accuracy[0]["value"][1]) <= 1
    assert float(scraped.query('count(gridd_jobs_running{role="compute"})')[0]["value"][1]) == 1
    version = scraped.query('ipfs_info{role="kubo"}')[0]["metric"]["version"]
    assert version.startswith("0.")
