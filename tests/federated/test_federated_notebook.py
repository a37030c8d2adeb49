"""notebooks/federated_quickstart.ipynb runs top to bottom under nbclient, as README's
federated section sets things up: one Kubo daemon, three `start_worker --compute --dataset`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from notebook_kit import FEDERATED, Lab, execute, outputs, problems, text, tidy

pytestmark = [pytest.mark.kubo, pytest.mark.tf, pytest.mark.slow, pytest.mark.timeout(300)]


def test_federated_quickstart_runs(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab:
        lab.federated_workers(3)
        nb = tidy(execute(FEDERATED, lab), lab)
        assert problems(nb, lab) == []
    printed = text(nb)
    assert printed.count("digits(") >= 3  # each worker describes its dataset
    first = re.search(r"test accuracy after 10 rounds: (0\.\d+)", printed)
    assert first is not None and float(first.group(1)) > 0.7, printed[-2000:]
    assert re.search(r"12 rounds, test accuracy 0\.\d+", printed)  # resumed: 2 more rounds
    assert sum("image/png" in o.get("data", {}) for o in outputs(nb)) == 1
    follow = next(o["data"]["text/html"] for o in outputs(nb)
                  if "eval_accuracy" in o.get("data", {}).get("text/html", ""))
    assert follow.count("<td>done</td>") == 1
