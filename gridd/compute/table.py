"""A list of rows that prints as a table in a terminal and as HTML in Jupyter (no pandas)."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gridd.bench import table as text_table

if TYPE_CHECKING:
    from gridd.compute.dispatch import WorkerAd


class Table(list):  # type: ignore[type-arg]
    """Rows (dicts) with a fixed column order; `to_pandas()` when pandas is installed."""

    def __init__(self, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
        super().__init__(rows)
        self.columns = columns or (list(rows[0]) if rows else [])

    def __repr__(self) -> str:
        return text_table(self, self.columns) if self else "(empty)"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        if not self:
            return "<i>(empty)</i>"

        def cell(v: Any) -> str:
            if isinstance(v, float):
                v = f"{v:.4g}"
            return html.escape("" if v is None else str(v))

        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in self.columns) + "</tr>"
            for r in self
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(list(self), columns=self.columns)


WORKER_COLUMNS = ["peer_id", "slots", "free", "cpus", "memory_gb", "gpus", "tf", "load",
                  "running", "restricted", "max_job_mb", "max_epochs", "max_wall_s",
                  "max_params", "datasets", "seen_s_ago"]


def workers_table(ads: Iterable[WorkerAd], now: float | None = None) -> Table:
    """Workers' ads as rows, with the limits they advertise (None when a worker is too old
    to advertise them), so a job can be sized to fit before it is sent."""
    now = time.monotonic() if now is None else now
    rows = []
    for ad in sorted(ads, key=lambda a: a.peer_id):
        b = ad.body
        job_bytes = b.get("max_job_bytes")
        rows.append({
            "peer_id": ad.peer_id, "slots": b["slots"], "free": b["free"],
            "cpus": b["cpus"], "memory_gb": round(b["memory"] / 2**30, 1),
            "gpus": ",".join(b["gpus"]) or "-", "tf": b["tf"] or "-", "load": b["load"],
            "running": len(b["running"]), "restricted": b["restricted"],
            "max_job_mb": None if job_bytes is None else round(job_bytes / 2**20, 1),
            "max_epochs": b.get("max_epochs"), "max_wall_s": b.get("max_wall_seconds"),
            "max_params": b.get("max_params"),
            "datasets": ", ".join(f"{d['name']}({d['samples']}x{'x'.join(map(str, d['shape']))}"
                                  f", {d['num_classes']} classes)"
                                  for d in b.get("datasets") or ()) or "-",
            "seen_s_ago": round(now - ad.seen, 1),
        })
    return Table(rows, WORKER_COLUMNS)
