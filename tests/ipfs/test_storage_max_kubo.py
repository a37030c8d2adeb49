"""The daemon gridd starts caps its repo (Datastore.StorageMax) and runs with --enable-gc."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gridd.cli import main
from gridd.ipfs.daemon import KuboDaemon, check_storage_max

pytestmark = pytest.mark.kubo


def test_storage_max_and_gc_reach_the_daemon(tmp_path: Path) -> None:
    daemon = KuboDaemon(tmp_path / "repo", local_only=True, storage_max="2GB", gc=True)
    client = daemon.start()
    try:
        assert client.config_get("Datastore.StorageMax") == "2GB"
        assert daemon.process is not None and "--enable-gc" in daemon.process.args
        stat = client.repo_stat(count_objects=False)
        assert stat.storage_max == 2_000_000_000 and stat.size > 0
    finally:
        client.close()
        daemon.stop()


def test_storage_max_values() -> None:
    for good in ("10GB", "500MB", "2TiB", "123456", "1.5GB"):
        assert check_storage_max(good) == good
    for bad in ("ten", "10 parsecs", "-1GB", ""):
        with pytest.raises(ValueError):
            check_storage_max(bad)
    out = CliRunner().invoke(main, ["ipfs", "start", "--storage-max", "lots"])
    assert out.exit_code == 2 and "storage max" in out.output
