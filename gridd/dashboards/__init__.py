"""Dashboards as code: Grafana dashboards built from Python (gridd.dashboards.build), and the
Prometheus target list the lab writes (gridd.dashboards.targets)."""
