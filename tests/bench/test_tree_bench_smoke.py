"""`python -m gridd.bench.tree --quick` runs, prints its table and saves comparable JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridd.bench import tree


def test_quick_tree_bench_saves_every_cell_with_its_fedavg_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tree.json"
    assert tree.main(["--quick", "--skip-kubo", "--seeds", "0", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    rows = saved["matrix"]
    assert [r["scenario"] for r in rows] == [
        f"10 peers, alpha {a}, overlap {o}" for a in (0.1, 0.5) for o in (2, 9)]
    for row in rows:
        assert 0.1 < row["fedavg"] < 1 and 0.1 < row["final"] <= row["best"] <= 1
        assert row["ok"] == (row["final"] >= row["fedavg"] and row["gap_pt"] >= -1.0)
    runs = saved["runs"]["10 peers, alpha 0.1, overlap 9"]["runs"]
    assert runs[0]["timeline"][-1][0] == 300  # the budget: 30 client-epochs per peer
    assert "clean matrix" in capsys.readouterr().out
