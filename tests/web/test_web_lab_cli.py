"""`gridd lab` as a user runs it: the view's URL, the accuracy PNG with the FedAvg baseline
next to the JSON, and the Prometheus target list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridd", "lab", "--transport", "memory",
                           *args], capture_output=True, text=True, timeout=180)


def test_lab_writes_png_baseline_and_targets(tmp_path: Path) -> None:
    out = tmp_path / "lab.json"
    folder = tmp_path / "targets"  # a directory, as configs/targets/ in the README
    folder.mkdir()
    run = lab("--peers", "3", "--client-epochs", "30", "--out", str(out),
              "--prometheus-targets", str(folder))
    targets = folder / "lab.json"
    assert run.returncode == 0, run.stderr[-3000:]
    assert "view: http://127.0.0.1:" in run.stdout + run.stderr
    result = json.loads(out.read_text())
    curve = result["baseline"]["curve"]
    assert [p["client_epochs"] for p in curve] == list(range(3, 31, 3))
    assert all(0 <= p["accuracy"] <= 1 for p in curve)
    png = out.with_suffix(".png")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] >= 800
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50  # lines, not a blank canvas
    groups = json.loads(targets.read_text())
    assert [g["labels"]["role"] for g in groups] == ["tree"]
    assert len(groups[0]["targets"]) == 4  # three peers and the observer


def test_lab_without_web_and_bad_combinations(tmp_path: Path) -> None:
    run = lab("--peers", "2", "--client-epochs", "4", "--no-web", "--out",
              str(tmp_path / "x.json"))
    assert run.returncode == 0 and "view:" not in run.stdout + run.stderr
    assert (tmp_path / "x.png").exists()
    bad = lab("--no-web", "--keep-web")
    assert bad.returncode == 2 and "--keep-web needs the web view" in bad.stderr
