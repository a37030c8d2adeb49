"""Dashboards as code: the committed JSON is what gridd.dashboards.build writes, its
structure is sound, provisioning names the same datasource, and the target list is what
configs/prometheus.yml reads. (Queries are checked against a real Prometheus in
test_dashboards_prometheus.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from gridd.dashboards import build
from gridd.dashboards.targets import KUBO_METRICS_PATH, target_groups, write_targets

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "configs" / "grafana"


def test_committed_dashboards_are_current(tmp_path: Path) -> None:
    assert build.main(["--check"]) == 0
    assert build.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (GRAFANA / "dashboards").glob("*.json"))
    (tmp_path / "gridd-tree.json").write_text("{}")
    assert build.main(["--check", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("name", sorted(build.DASHBOARDS))
def test_dashboard_structure(name: str) -> None:
    board = json.loads((GRAFANA / "dashboards" / f"{name}.json").read_text())
    assert board["uid"] == name and board["schemaVersion"] >= 36 and board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["expr"].strip() and 'role="' in target["expr"]
            assert target["datasource"]["uid"] == build.DATASOURCE["uid"]


def test_provisioning_names_the_dashboards_datasource() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "gridd.yaml").read_text())
    assert [d["uid"] for d in ds["datasources"]] == [build.DATASOURCE["uid"]]
    assert ds["datasources"][0]["type"] == "prometheus"
    boards = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "gridd.yaml").read_text())
    assert boards["providers"][0]["type"] == "file"


def test_target_list(tmp_path: Path) -> None:
    path = write_targets(tmp_path / "t" / "lab.json", {
        "tree": ["http://127.0.0.1:9101/metrics", "127.0.0.1:9101", "127.0.0.1:9102"],
        "kubo": ["127.0.0.1:5001"], "compute": []}, labels={"lab": "memory"})
    groups = json.loads(path.read_text())
    assert groups == [
        {"targets": ["127.0.0.1:9101", "127.0.0.1:9102"],
         "labels": {"role": "tree", "lab": "memory"}},
        {"targets": ["127.0.0.1:5001"],
         "labels": {"role": "kubo", "lab": "memory", "__metrics_path__": KUBO_METRICS_PATH}},
    ]
    assert [p.name for p in path.parent.iterdir()] == ["lab.json"]  # no temp file left


def test_target_list_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="role 'web'"):
        target_groups({"web": ["127.0.0.1:1"]})
    with pytest.raises(ValueError, match="not a host:port"):
        target_groups({"tree": ["localhost"]})


@pytest.mark.prometheus
def test_prometheus_config_is_valid() -> None:
    promtool = Path("/usr/bin/promtool")
    if not promtool.exists():
        subprocess.run([str(ROOT / "bin" / "install_test_tools"), "prometheus"], check=True)
    out = subprocess.run([str(promtool), "check", "config", str(ROOT / "configs" /
                                                                  "prometheus.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    config = yaml.safe_load((ROOT / "configs" / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["file_sd_configs"][0]["files"] == ["targets/*.json"]
