"""notebooks/compute_quickstart.ipynb runs top to bottom against real daemons and workers."""

from __future__ import annotations

import uuid
from pathlib import Path

import nbformat
import pytest
from compute_helpers import Grid
from nbclient import NotebookClient

from gridd.ipfs.cluster import LocalCluster

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "compute_quickstart.ipynb"


@pytest.mark.kubo
@pytest.mark.tf
@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = LocalCluster(3).start()
    topic = f"gridd-test-nb-{uuid.uuid4().hex[:8]}"
    grid = Grid(cluster, topic, [], tmp_path)
    try:
        for i in (1, 2):
            grid.spawn(i)
        for w in grid.workers:
            w.wait_ready()
        # The notebook's Client() reads these, as a user's would read their own settings.
        monkeypatch.setenv("GRIDD_IPFS_API", grid.api(0))
        monkeypatch.setenv("GRIDD_COMPUTE_TOPIC", topic)
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
        nb = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(nb, timeout=240, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        text = "".join(o.get("text", "") for o in outputs)
        assert "model CID: b" in text and "best:" in text
        assert any("image/png" in o.get("data", {}) for o in outputs)
        sweep_html = next(o["data"]["text/html"] for o in outputs
                          if "text/html" in o.get("data", {}) and "val_accuracy" in
                          o["data"]["text/html"])
        assert sweep_html.count("<td>done</td>") == 4
    finally:
        for w in grid.workers:
            w.stop()
        cluster.stop()
