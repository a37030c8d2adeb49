"""notebooks/compute_quickstart.ipynb runs top to bottom under nbclient, as README's
one-machine section sets things up: one Kubo daemon, two `start_worker --compute` on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebook_kit import COMPUTE, Lab, execute, outputs, problems, text, tidy

pytestmark = [pytest.mark.kubo, pytest.mark.tf, pytest.mark.slow, pytest.mark.timeout(240)]


def test_compute_quickstart_runs(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab:
        lab.compute_workers(2)
        nb = tidy(execute(COMPUTE, lab), lab)
        assert problems(nb, lab) == []
    printed = text(nb)
    assert printed.count("12D3KooW") >= 2  # grid.workers(wait=5) lists both workers
    assert "model.input_shape = (None, 64)" in printed  # refused before uploading
    assert "WorkerLimitError: this job cannot run on any of the 2 live workers" in printed
    assert "[done]: 100%" in printed and "best: {" in printed
    assert sum("image/png" in o.get("data", {}) for o in outputs(nb)) == 2
    sweep = next(o["data"]["text/html"] for o in outputs(nb)
                 if "final_val_accuracy" in o.get("data", {}).get("text/html", ""))
    assert sweep.count("<td>done</td>") == 4
    trusted = [o["data"]["text/plain"] for o in outputs(nb)
               if "peer_id" in o.get("data", {}).get("text/plain", "")][-1]
    assert trusted.count("12D3KooW") == 1  # Client(workers=[...]) lists only that one
