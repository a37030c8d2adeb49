"""`python -m gridd.ipfs.repo_setup container` (what the image's entrypoint runs): a repo with
the fixed identity, container addresses, private-network routing and the bootstrap list
minus itself; every bad setting refused by name with nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gridd.ipfs.repo_setup import main, new_identity

pytestmark = pytest.mark.kubo  # runs the real `ipfs init`


def _run(repo: Path, **env: str):  # type: ignore[no-untyped-def]
    base = {"IPFS_PATH": str(repo), "GRIDD_BOOTSTRAP": "", "GRIDD_IPFS_IDENTITY": "",
            "GRIDD_NETWORK": "", "GRIDD_SWARM_PORT": ""}
    base.update(env)
    return CliRunner().invoke(main, ["container"], env={k: v or None for k, v in base.items()})


def test_container_repo_has_identity_addresses_and_peers(tmp_path: Path) -> None:
    me, key = new_identity()
    other, _ = new_identity()
    boot = f"/dns4/tree0/tcp/4001/p2p/{me} /dns4/tree1/tcp/4001/p2p/{other}"
    r = _run(tmp_path / "repo", GRIDD_IPFS_IDENTITY=key, GRIDD_NETWORK="private",
             GRIDD_BOOTSTRAP=boot, GRIDD_SWARM_PORT="4101")
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "repo" / "config").read_text())
    assert config["Identity"] == {"PeerID": me, "PrivKey": key}
    assert config["Addresses"]["API"] == "/ip4/127.0.0.1/tcp/5001"  # never outside the pod
    assert config["Addresses"]["Swarm"] == ["/ip4/0.0.0.0/tcp/4101"]
    assert config["Addresses"]["Gateway"] == []
    assert config["Bootstrap"] == [] and config["Routing"]["Type"] == "dht"
    assert config["Pubsub"]["Enabled"] is True
    # the bootstrap peer shares its group's list: it peers with the others, not itself
    assert config["Peering"]["Peers"] == [{"ID": other, "Addrs": ["/dns4/tree1/tcp/4001"]}]


@pytest.mark.parametrize(("env", "message"), [
    ({"GRIDD_IPFS_IDENTITY": "not-a-key"}, "GRIDD_IPFS_IDENTITY: not base64"),
    ({"GRIDD_NETWORK": "intranet"}, "GRIDD_NETWORK: expected public or private"),
    ({"GRIDD_SWARM_PORT": "70000"}, "GRIDD_SWARM_PORT: expected a port"),
    ({"GRIDD_BOOTSTRAP": "/dns4/tree0/tcp/4001"}, "'/dns4/tree0/tcp/4001'"),
])
def test_bad_settings_are_refused_by_name(tmp_path: Path, env: dict[str, str],
                                          message: str) -> None:
    r = _run(tmp_path / "repo", **env)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "repo" / "config").exists()  # refused before anything was written
