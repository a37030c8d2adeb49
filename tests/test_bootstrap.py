"""Bootstrap lists: parsing, errors that name the bad entry, precedence, Kubo's Peering config
and fixed identities (no daemon needed here; tests/test_bootstrap_kubo.py runs real ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gridd.cli_modes import bootstrap_peers, start_worker
from gridd.compute.cli import compute_worker
from gridd.identity import public_key_of
from gridd.ipfs.bootstrap import (
    MAX_ENTRIES,
    BootstrapError,
    bootstrap_entries,
    parse_bootstrap,
    peering_config,
    split_entries,
    write_peering_config,
)
from gridd.ipfs.repo_setup import identity_peer_id, new_identity
from gridd.tree.settings import load_tree_settings

A = "12D3KooWFjr4ZqNPhyDyzJvDzYnh9XtGu3Jh3dCow1wmfMM2oGrJ"
B = "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"


def test_parses_common_forms_and_groups_addresses_per_peer() -> None:
    peers = parse_bootstrap([
        f"/ip4/203.0.113.7/tcp/4001/p2p/{A}",
        f"/ip6/2001:db8::1/udp/4001/quic-v1/p2p/{A}, /dns4/boot.example.org/tcp/4001/p2p/{B}",
        f"/dnsaddr/bootstrap.libp2p.io/ipfs/{B}",
    ])
    assert [p.peer_id for p in peers] == [A, B]
    assert peers[0].addrs == ("/ip4/203.0.113.7/tcp/4001", "/ip6/2001:db8::1/udp/4001/quic-v1")
    assert peers[1].multiaddrs == [f"/dns4/boot.example.org/tcp/4001/p2p/{B}",
                                   f"/dnsaddr/bootstrap.libp2p.io/p2p/{B}"]


def test_env_form_splits_on_commas_and_whitespace() -> None:
    assert split_entries(" /a/1,/b/2\n/c/3 ,, ") == ["/a/1", "/b/2", "/c/3"]
    assert split_entries("") == []


@pytest.mark.parametrize(("entry", "reason"), [
    ("203.0.113.7:4001", "starts with '/'"),
    ("/ip4/203.0.113.7/tcp/4001", "does not end with /p2p/<peer id>"),
    (f"/ip4/203.0.113.300/tcp/4001/p2p/{A}", "/ip4"),
    (f"/ip4/203.0.113.7/tcp/99999/p2p/{A}", "port '99999'"),
    (f"/ip4/203.0.113.7/tcp/p2p/{A}", "port 'p2p'"),
    (f"/ip4/203.0.113.7/sctp/4001/p2p/{A}", "unknown protocol 'sctp'"),
    ("/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWnotapeerid0OIl", "/p2p"),
    (f"/ip4/203.0.113.7/tcp/4001/p2p/{A[:-3]}", "/p2p"),  # truncated
    (f"/p2p/{A}", "no transport address"),
    ("/dns4/bad_host!/tcp/4001/p2p/" + A, "not a host name"),
    ("/ip4/203.0.113.7/tcp/4001/p2p/", "needs a value"),
])
def test_malformed_entries_are_refused_naming_the_entry(entry: str, reason: str) -> None:
    with pytest.raises(BootstrapError) as e:
        parse_bootstrap([f"/ip4/10.0.0.1/tcp/4001/p2p/{A}", entry])
    assert repr(entry.strip()) in str(e.value) or entry[:60] in str(e.value)
    assert reason in str(e.value)


def test_list_length_and_entry_size_are_bounded() -> None:
    with pytest.raises(BootstrapError, match="at most"):
        parse_bootstrap([f"/ip4/10.0.0.{i % 250 + 1}/tcp/{i + 1}/p2p/{A}"
                         for i in range(MAX_ENTRIES + 1)])
    with pytest.raises(BootstrapError, match="longer than"):
        parse_bootstrap(["/dns4/" + "a" * 2000 + f"/tcp/1/p2p/{A}"])


def test_flags_beat_env_beat_config() -> None:
    env = {"GRIDD_BOOTSTRAP": "/e/1 /e/2"}
    assert bootstrap_entries(["/f/1"], env, ["/c/1"]) == ["/f/1"]
    assert bootstrap_entries([], env, ["/c/1"]) == ["/e/1 /e/2"]
    assert bootstrap_entries([], {"GRIDD_BOOTSTRAP": "  "}, ["/c/1"]) == ["/c/1"]
    assert bootstrap_entries([], {}, "/c/1 /c/2") == ["/c/1 /c/2"]


def test_tree_config_key_env_and_bad_value(tmp_path: Path) -> None:
    cfg = tmp_path / "tree.yaml"
    cfg.write_text(f"BOOTSTRAP:\n  - /ip4/10.0.0.1/tcp/4001/p2p/{A}\n")
    s = load_tree_settings(cfg, {}, {})
    assert [p.peer_id for p in bootstrap_peers((), s.bootstrap)] == [A]
    with pytest.raises(ValueError, match=r"BOOTSTRAP: bootstrap address '/ip4/10.0.0.1/tcp/4001'"):
        load_tree_settings(None, {"BOOTSTRAP": "/ip4/10.0.0.1/tcp/4001"}, {})


def test_start_worker_refuses_a_malformed_entry_before_touching_kubo(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # nothing listens on this API: the bootstrap check must come first and say what is wrong
    monkeypatch.setenv("GRIDD_IPFS_API", "/ip4/127.0.0.1/tcp/9")
    monkeypatch.setenv("GRIDD_BOOTSTRAP", "/ip4/10.0.0.1/tcp/4001/p2p/notapeer")
    with pytest.raises(SystemExit) as e:
        start_worker(["--tree", "--observer", "--genesis", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "/ip4/10.0.0.1/tcp/4001/p2p/notapeer" in err and "peer id" in err


def test_compute_worker_refuses_a_malformed_flag_and_config_entry(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"GRIDD_IPFS_API": "/ip4/127.0.0.1/tcp/9", "GRIDD_BOOTSTRAP": ""}
    r = runner.invoke(compute_worker, ["--bootstrap", "/ip4/1.2.3.4/udp/4001"], env=env)
    assert r.exit_code == 2 and "'/ip4/1.2.3.4/udp/4001'" in r.output, r.output
    cfg = tmp_path / "compute.yaml"
    cfg.write_text("bootstrap: [/ip4/1.2.3.4/tcp/4001/p2p/QmNope]\n")
    r = runner.invoke(compute_worker, ["--config", str(cfg)], env=env)
    assert r.exit_code == 2 and "QmNope" in r.output, r.output


def test_peering_config_merges_and_replaces_addresses(tmp_path: Path) -> None:
    old = [{"ID": A, "Addrs": ["/ip4/10.0.0.9/tcp/1"]}, {"ID": "keep", "Addrs": []}, "junk"]
    peers = parse_bootstrap([f"/ip4/10.0.0.1/tcp/4001/p2p/{A}", f"/dns4/b/tcp/4001/p2p/{B}"])
    merged = peering_config(old, peers)
    assert merged == [{"ID": A, "Addrs": ["/ip4/10.0.0.1/tcp/4001"]}, {"ID": "keep", "Addrs": []},
                      {"ID": B, "Addrs": ["/dns4/b/tcp/4001"]}]
    config = tmp_path / "config"
    config.write_text(json.dumps({"Identity": {"PeerID": "x"}, "Peering": {"Peers": None}}))
    write_peering_config(str(config), peers)
    data = json.loads(config.read_text())
    assert data["Identity"] == {"PeerID": "x"} and len(data["Peering"]["Peers"]) == 2


def test_fixed_identity_round_trips_and_bad_keys_are_refused() -> None:
    peer_id, priv = new_identity()
    assert identity_peer_id(priv) == peer_id and public_key_of(peer_id) is not None
    assert parse_bootstrap([f"/dns4/gridd-bootstrap/tcp/4001/p2p/{peer_id}"])[0].peer_id == peer_id
    with pytest.raises(ValueError, match="not base64"):
        identity_peer_id("@@@")
    with pytest.raises(ValueError, match="not an Ed25519"):
        identity_peer_id("CAESQA==")
