"""What the Kubo lab needs to watch its processes: metrics scrapes and memory."""

from __future__ import annotations

from collections.abc import Iterable

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

_HTTP = httpx.Client(timeout=2.0)  # one client: building one per call costs ~60 ms (TLS setup)


def scrape(url: str) -> dict[str, float]:
    """Samples of a Prometheus /metrics page as {name{labels}: value}; {} if unreachable."""
    try:
        text = _HTTP.get(url).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
    return out


def _family(pids: Iterable[int]) -> list[psutil.Process]:
    """The given processes and all their children, each once."""
    seen: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            family = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
        for p in family:
            seen.setdefault(p.pid, p)
    return list(seen.values())


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident memory of the given processes and all their children, summed."""
    total = 0
    for p in _family(pids):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time (user + system) used so far by the given processes and their children."""
    total = 0.0
    for p in _family(pids):
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total
