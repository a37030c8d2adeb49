"""start_worker --compute settings: defaults < configs/compute.yaml < flags; bad values refused."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gridd.compute.cli import compute_worker, load_settings
from gridd.compute.settings import ComputeSettings

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_matches_the_defaults() -> None:
    from_file = load_settings(REPO / "configs" / "compute.yaml", {})
    assert from_file == ComputeSettings()


def test_flags_override_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("slots: 2\nmax_epochs: 50\naccept_from: [QmA]\n")
    s = load_settings(cfg, {"slots": 3, "accept_from": ("QmB", "QmC"), "max_epochs": None})
    assert (s.slots, s.max_epochs, s.accept_from) == (3, 50, ("QmB", "QmC"))


def test_bad_settings_are_refused_with_their_name(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("slot: 2\n")
    with pytest.raises(click.BadParameter, match="unknown settings"):
        load_settings(cfg, {})
    with pytest.raises(click.UsageError, match="slots"):
        load_settings(None, {"slots": 0})


def test_help_lists_the_options() -> None:
    out = CliRunner().invoke(compute_worker, ["--help"]).output
    for flag in ("--slots", "--accept-from", "--max-epochs", "--max-wall-seconds",
                 "--max-job-bytes", "--metrics-port"):
        assert flag in out
