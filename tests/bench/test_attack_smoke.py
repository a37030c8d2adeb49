"""The attack benchmark's harness on real Kubo: three cheap attacks, measured, nothing crashes.

Only the harness is under test here (it runs, it measures, it cleans up, its signatures are
the foreign node's and pass, its forged ones do not); the benchmark's targets (throughput,
memory, the fit) are for `python -m gridd.bench.attack` to report.
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from gridd.bench.attack import CLEAN, Options, run_benchmark, summary
from gridd.bench.attack_grid import GROUPS

pytestmark = [pytest.mark.kubo, pytest.mark.slow]


def _processes_under(path: Path) -> list[psutil.Process]:
    """Processes whose command line or IPFS_PATH points into `path` (peers, workers, Kubo)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            env = proc.environ() if "ipfs" in cmdline else {}
        except psutil.Error:
            continue
        if str(path) in cmdline or str(path) in env.get("IPFS_PATH", ""):
            found.append(proc)
    return found


def test_harness_runs_three_cheap_attacks_and_cleans_up(tmp_path: Path) -> None:
    workdir = tmp_path / "attack"
    opts = Options(attacks=["random_bytes", "made_up_parents", "forged_signer"], seconds=8.0,
                   workers=1, fit=False, cooldown=3.0, stop_grace=5.0, clean_end=False,
                   workdir=workdir)
    lines: list[str] = []
    result = run_benchmark(opts, log=lines.append)

    rows = result["rows"]
    assert [r["attack"] for r in rows] == [CLEAN, "random_bytes", "made_up_parents",
                                           "forged_signer"]
    for r in rows:
        assert r["crashed"] == [], (r["attack"], r["crashed"], lines)
        assert r["attack_errors"] == [], r["attack_errors"]
        assert set(GROUPS) <= set(r["rss_growth_mb"])
        assert r["seconds"] >= opts.seconds * 0.9
        assert set(r["met"]) == {"throughput", "rss", "crashes", "fit"}
        assert r["met"]["crashes"] is True and r["met"]["fit"] is None
        assert isinstance(r["rejections"], dict)
    clean, garbage, parents, forged = rows
    assert clean["tx_published"] > 0, "the clean phase must measure some throughput"
    assert clean["sent_messages"] == 0 and clean["throughput_ratio"] == pytest.approx(1.0)
    assert garbage["sent_messages"] > 0 and parents["sent_messages"] > 0
    assert garbage["throughput_ratio"] is not None
    # honest nodes heard the garbage and counted what they refused
    assert sum(garbage["rejections"].values()) > 0, garbage
    # the foreign node's own signatures pass (its made-up parents get fetched), forged
    # authors do not, on both topics
    assert parents["signed"] > 0
    assert not any("signature" in k or "unsigned" in k for k in parents["rejections"])
    assert forged["rejections"].get("gridd_tx_rejected_total{reason=bad_signature}", 0) > 0
    assert forged["rejections"].get("gridd_jobs_refused_total{reason=bad_signature}", 0) > 0
    main_table, rejections_table = summary(result)
    assert "made_up_parents" in main_table and "random_bytes" in rejections_table
    assert not _processes_under(workdir), "the harness left processes running"
