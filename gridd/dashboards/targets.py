"""Prometheus file-based service discovery: the target list `gridd lab --prometheus-targets`
writes and `configs/prometheus.yml` reads (file_sd_configs).

One JSON file, one group per kind of node, each labelled `role` (tree, compute, kubo,
view). Kubo serves its metrics on its RPC port at /debug/metrics/prometheus, which the
`__metrics_path__` label tells Prometheus. The file is replaced atomically (temp file and
rename), so Prometheus never reads half of it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

KUBO_METRICS_PATH = "/debug/metrics/prometheus"
ROLES = ("tree", "compute", "kubo")


def host_port(url: str) -> str:
    """'http://127.0.0.1:9101/metrics' or '127.0.0.1:9101' -> '127.0.0.1:9101'."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    if not parts.hostname or parts.port is None:
        raise ValueError(f"not a host:port or URL with a port: {url!r}")
    return f"{parts.hostname}:{parts.port}"


def target_groups(targets: Mapping[str, Iterable[str]],
                  labels: Mapping[str, str] | None = None) -> list[dict[str, object]]:
    """file_sd groups from {role: [metrics URLs or host:port]}; empty roles are left out."""
    groups: list[dict[str, object]] = []
    for role, urls in targets.items():
        if role not in ROLES:
            raise ValueError(f"role {role!r}: expected one of {ROLES}")
        hosts = sorted({host_port(u) for u in urls})
        if not hosts:
            continue
        group_labels = {"role": role, **(labels or {})}
        if role == "kubo":
            group_labels["__metrics_path__"] = KUBO_METRICS_PATH
        groups.append({"targets": hosts, "labels": group_labels})
    return groups


def write_targets(path: Path, targets: Mapping[str, Iterable[str]],
                  labels: Mapping[str, str] | None = None) -> Path:
    """Write the file_sd JSON to `path` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(target_groups(targets, labels), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".targets-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
