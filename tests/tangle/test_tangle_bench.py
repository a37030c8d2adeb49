"""The benchmark grows tangles by the standard model and writes its table and JSON.

No timing assertions here: figures belong to `python -m tangle.bench`, not to tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tangle.bench import BATCH, StandardGrowth, main


def test_standard_growth_approves_tips_of_the_batch_start() -> None:
    growth = StandardGrowth(seed=1)
    tangle = growth.tangle
    for _ in range(30):
        snapshot = set(tangle.tips())
        batch = [growth.step() for _ in range(BATCH)]
        for tx in batch:
            assert set(tx.parents) <= snapshot
            assert len(tx.parents) == min(2, len(snapshot))
    assert len(tangle) == 1 + 30 * BATCH and tangle.pending_count == 0


def test_bench_prints_a_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert main(["--sizes", "60,150", "--reps", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "select(2) ms" in printed and "reference(35) ms" in printed
    report = json.loads(out.read_text())
    assert [row["n"] for row in report["rows"]] == [60, 150]
    for row in report["rows"]:
        for key in ("insert_per_s", "select_ms", "reference_ms", "round_ms", "bytes_per_tx"):
            assert row[key] > 0
    assert set(report["targets"]) == {
        "round_ms_at_5000", "select_ms_at_100000", "reference_ms_at_100000",
        "bytes_per_tx_at_100000",
    }
    assert all(t["measured"] is None for t in report["targets"].values())
    assert "select_ms" in report["growth_exponents"]
