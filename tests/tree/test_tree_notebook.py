"""notebooks/tree_quickstart.ipynb runs top to bottom under nbclient, as README's
one-machine section sets things up: one Kubo daemon, `gridd example-data`, `gridd genesis`
and two `start_worker --tree` peers on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from notebook_kit import TREE, Lab, execute, outputs, problems, text, tidy

pytestmark = [pytest.mark.kubo, pytest.mark.tf, pytest.mark.slow, pytest.mark.timeout(240)]


def test_tree_quickstart_runs(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab:
        genesis = lab.tree_peers(2, transactions=2)
        nb = tidy(execute(TREE, lab), lab)
        assert problems(nb, lab) == []
    printed = text(nb)
    assert f"genesis {genesis} | 360 test rows" in printed
    counts = [int(n) for n in re.findall(r"(\d+) transactions; consensus accuracy 0\.\d+",
                                         printed)]
    assert len(counts) == 4 and counts[0] >= 2  # the genesis and what the peers published
    assert counts == sorted(counts)  # a refresh never loses transactions
    assert "measured on 360 validation samples" in printed
    assert sum("image/png" in o.get("data", {}) for o in outputs(nb)) == 1
    assert re.search(r"'accuracy': 0\.\d+", printed)  # view.model().evaluate
    new = re.search(r"start_worker --tree --genesis ([0-9a-f]{64}) --data", printed)
    assert new and new.group(1) != genesis  # create_tangle made another tangle
