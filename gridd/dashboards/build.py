"""Grafana dashboards for gridd, built as plain dicts and written as JSON.

    python -m gridd.dashboards.build                 # writes configs/grafana/dashboards/*.json
    python -m gridd.dashboards.build --check         # exit 1 if the committed JSON is stale

Why plain dicts and not a dashboards-as-code library: a dashboard here is a list of
timeseries panels with one or two PromQL queries each. grafanalib (the best-known one)
had its last release in January 2024, and Grafana's own foundation SDK is versioned in
lockstep with Grafana; both would pin us to a schema for what fifty lines of dicts say
plainly. The schema fields used are the stable core (schemaVersion 39: panels with
gridPos, targets with expr/refId, a Prometheus datasource by uid). The tests validate
the structure and run every panel's query against a real Prometheus scraping a real lab,
a Kubo daemon and a compute worker (tests/test_dashboards_prometheus.py).

Every series carries the `role` label from the lab's target list (gridd.dashboards.targets):
tree, compute or kubo.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "gridd-prometheus"}
OUT = Path(__file__).resolve().parents[2] / "configs" / "grafana" / "dashboards"
SCHEMA_VERSION = 39


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    max: float | None = None


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


TREE = [
    Panel("Peers active", (q('count(gridd_tangle_transactions{role="tree"})', "peers scraped"),
                           q('max(gridd_tree_peers_seen{role="tree"})', "peers seen (max)")),
          description="Tree processes Prometheus scrapes, and the most peers any one has heard."),
    Panel("Consensus vs local accuracy",
          (q('avg(gridd_consensus_accuracy{role="tree"})', "consensus (mean over peers)"),
           q('avg(gridd_local_accuracy{role="tree"})', "last local model (mean)")),
          unit="percentunit", max=1.0,
          description="On each peer's own validation data."),
    Panel("Accuracy per peer", (q('gridd_consensus_accuracy{role="tree"}', "{{instance}}"),),
          unit="percentunit", max=1.0),
    Panel("Transactions published / received per hour",
          (q('sum(increase(gridd_tx_published_total{role="tree"}[1h]))', "published"),
           q('sum(increase(gridd_tx_received_total{role="tree"}[1h]))', "received")),
          description="increase over the last hour (extrapolated when there is less)."),
    Panel("Tangle size", (q('max(gridd_tangle_transactions{role="tree"})', "transactions"),
                          q('sum(gridd_pending_transactions{role="tree"})', "pending"))),
    Panel("Trainings per minute",
          (q('sum(rate(gridd_trainings_total{role="tree"}[2m])) * 60', "trainings/min"),)),
    Panel("Training time", (
        q('histogram_quantile(0.5, sum by (le) (rate(gridd_training_seconds_bucket{role="tree"}'
          '[5m])))', "median"),
        q('histogram_quantile(0.95, sum by (le) (rate(gridd_training_seconds_bucket{role="tree"}'
          '[5m])))', "p95")), unit="s"),
    Panel("Time between trainings",
          (q('300 / clamp_min(sum by (instance) (increase(gridd_trainings_total{role="tree"}'
             '[5m])), 1)', "{{instance}}"),), unit="s",
          description="5 minutes divided by the trainings in them, per peer (300 s when "
                      "there were none)."),
    Panel("Rejected transactions by reason",
          (q('sum by (reason) (increase(gridd_tx_rejected_total{role="tree"}[1h]))',
             "{{reason}}"),)),
    Panel("Publish errors by reason",
          (q('sum by (reason) (increase(gridd_publish_errors_total{role="tree"}[1h]))',
             "{{reason}}"),)),
    Panel("Inbox drops by reason",
          (q('sum by (reason) (increase(gridd_inbox_dropped_total{role="tree"}[1h]))',
             "{{reason}}"),)),
    Panel("Weights fetched from IPFS",
          (q('sum(rate(gridd_ipfs_fetch_bytes_total{role="tree"}[5m]))', "bytes/s"),
           q('sum(increase(gridd_ipfs_fetch_errors_total{role="tree"}[1h]))', "errors/h")),
          unit="Bps"),
]

COMPUTE = [
    Panel("Workers up", (q('count(gridd_jobs_running{role="compute"})', "workers"),)),
    Panel("Jobs running", (q('sum(gridd_jobs_running{role="compute"})', "running"),
                           q('gridd_jobs_running{role="compute"}', "{{instance}}"))),
    Panel("Jobs accepted / completed per hour",
          (q('sum(increase(gridd_jobs_accepted_total{role="compute"}[1h]))', "accepted"),
           q('sum(increase(gridd_jobs_completed_total{role="compute"}[1h]))', "completed"))),
    Panel("Training time per job", (
        q('histogram_quantile(0.5, sum by (le) (rate(gridd_training_seconds_bucket'
          '{role="compute"}[15m])))', "median"),), unit="s"),
    Panel("Federated rounds trained per hour",
          (q('sum(increase(gridd_fed_worker_rounds_total{role="compute"}[1h]))', "rounds"),)),
    Panel("Data fetched from IPFS",
          (q('sum(rate(gridd_ipfs_fetch_bytes_total{role="compute"}[5m]))', "bytes/s"),),
          unit="Bps"),
    Panel("Inbox drops by reason",
          (q('sum by (reason) (increase(gridd_inbox_dropped_total{role="compute"}[1h]))',
             "{{reason}}"),)),
    Panel("Publish errors by reason",
          (q('sum by (reason) (increase(gridd_publish_errors_total{role="compute"}[1h]))',
             "{{reason}}"),)),
    Panel("Peers on the compute topic", (q('gridd_topic_peers{role="compute"}', "{{instance}}"),)),
]

KUBO = [
    Panel("IPFS connections", (q('sum by (instance) (libp2p_rcmgr_connections{role="kubo",'
                                 'scope="system"})', "{{instance}}"),),
          description="Open libp2p connections (Kubo's resource manager, system scope)."),
    Panel("Datastore puts / gets per second", (
        q('sum(rate(ipfs_fsrepo_datastore_put_total{role="kubo"}[2m]))', "puts"),
        q('sum(rate(ipfs_fsrepo_datastore_get_total{role="kubo"}[2m]))', "gets"))),
    Panel("Bitswap blocks received", (q('sum(ipfs_bitswap_blocks_received{role="kubo"})',
                                        "blocks"),)),
    Panel("Kubo memory (RSS)", (q('process_resident_memory_bytes{role="kubo"}', "{{instance}}"),),
          unit="bytes"),
    Panel("Kubo CPU", (q('rate(process_cpu_seconds_total{role="kubo"}[2m])', "{{instance}}"),),
          unit="percentunit"),
    Panel("Kubo version", (q('ipfs_info{role="kubo"}', "{{version}}"),)),
]

DASHBOARDS = {
    "gridd-tree": ("gridd · tree peers", TREE),
    "gridd-compute": ("gridd · compute workers", COMPUTE),
    "gridd-kubo": ("gridd · Kubo daemons", KUBO),
}


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.max is not None:
        defaults.update(min=0, max=panel.max)
    return {
        "id": panel_id, "type": "timeseries", "title": panel.title,
        "description": panel.description, "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                    "tooltip": {"mode": "multi"}},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": t.expr,
                     "legendFormat": t.legend} for i, t in enumerate(panel.queries)],
    }


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "tags": ["gridd"], "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True,
        "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "panels": [panel_json(p, i + 1, 12 * (i % 2), 8 * (i // 2))
                   for i, p in enumerate(panels)],
    }


def build_all() -> dict[str, dict[str, Any]]:
    """{file stem: dashboard JSON} for every gridd dashboard."""
    return {uid: dashboard(uid, title, panels) for uid, (title, panels) in DASHBOARDS.items()}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the files in --out differ from what would be written")
    args = parser.parse_args(argv)
    stale = []
    for name, board in build_all().items():
        path = args.out / f"{name}.json"
        text = render(board)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print("stale (run python -m gridd.dashboards.build): " + ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
