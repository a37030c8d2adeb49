"""Prepare a Kubo repo for a deployment: bootstrap peering, a fixed identity, container addresses.

Run as `python -m gridd.ipfs.repo_setup COMMAND` by bin/start_ipfs and the container
entrypoint (deploy/entrypoint.sh), so the shell scripts never edit Kubo's config themselves.

A fixed identity is what lets every other peer name the bootstrap peer in advance
(`/dns4/gridd-bootstrap/tcp/4001/p2p/<its id>`): `keygen` makes an Ed25519 libp2p key, and
`container` writes it into the repo (`GRIDD_IPFS_IDENTITY`), as the IPFS Learning Tangle's
Kubernetes bootstrap peer had one. Generate your own: whoever holds the key is that peer.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from gridd.identity import peer_id_of
from gridd.ipfs.bootstrap import (
    BootstrapError,
    BootstrapPeer,
    add_live_peering,
    bootstrap_entries,
    parse_bootstrap,
    wait_connected,
    write_peering_config,
)
from gridd.ipfs.client import KuboClient
from gridd.ipfs.daemon import DEFAULT_STORAGE_MAX, STORAGE_MAX_ENV, KuboDaemon, default_repo
from gridd.ipfs.errors import IPFSError

IDENTITY_ENV = "GRIDD_IPFS_IDENTITY"
NETWORK_ENV = "GRIDD_NETWORK"  # private: no public bootstrap/DHT routers (labs, clusters)
SWARM_PORT_ENV = "GRIDD_SWARM_PORT"
_ED25519_PRIV_PROTO = b"\x08\x01\x12\x40"  # PrivateKey{Type: Ed25519, Data: 64 bytes}


def new_identity() -> tuple[str, str]:
    """(peer id, Kubo's Identity.PrivKey: base64 of the libp2p PrivateKey protobuf)."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return peer_id_of(key.public_key()), base64.b64encode(_ED25519_PRIV_PROTO + seed + pub).decode()


def identity_peer_id(priv_key: str) -> str:
    """The peer id of a Kubo Identity.PrivKey (Ed25519 only); ValueError if it is not one."""
    try:
        raw = base64.b64decode(priv_key.strip(), validate=True)
    except ValueError:
        raise ValueError(f"{IDENTITY_ENV}: not base64") from None
    if len(raw) != 68 or not raw.startswith(_ED25519_PRIV_PROTO):
        raise ValueError(f"{IDENTITY_ENV}: not an Ed25519 libp2p private key "
                         "(make one with: python -m gridd.ipfs.repo_setup keygen)")
    key = Ed25519PrivateKey.from_private_bytes(raw[4:36])
    if key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != raw[36:]:
        raise ValueError(f"{IDENTITY_ENV}: its public half does not match its private half")
    return peer_id_of(key.public_key())


def _edit_config(repo: Path, edit: dict[str, object]) -> None:
    """Set dotted keys in the repo's config file (the daemon must not be running)."""
    path = repo / "config"
    config = json.loads(path.read_text())
    for dotted, value in edit.items():
        node = config
        *parents, last = dotted.split(".")
        for name in parents:
            node = node.setdefault(name, {}) or {}
        node[last] = value
    tmp = path.with_suffix(".gridd-tmp")
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, path)


def _init(repo: Path, local_only: bool) -> KuboDaemon:
    """Initialise the repo as `gridd ipfs start` would (a new repo gets its StorageMax)."""
    daemon = KuboDaemon(repo, local_only=local_only)
    if not daemon.initialised():
        daemon.storage_max = os.environ.get(STORAGE_MAX_ENV) or DEFAULT_STORAGE_MAX
    daemon.init()
    return daemon


def _peers(entries: tuple[str, ...]) -> list[BootstrapPeer]:
    try:
        return parse_bootstrap(bootstrap_entries(entries, os.environ))
    except BootstrapError as e:
        raise click.UsageError(str(e)) from None


def _running_client(daemon: KuboDaemon) -> KuboClient | None:
    addr = daemon.api_address()
    if not addr:
        return None
    client = KuboClient(addr, timeout=10.0)
    try:
        client.id()
        return client
    except IPFSError:
        client.close()
        return None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Kubo repo setup for deployments (used by bin/start_ipfs and deploy/entrypoint.sh)."""


_repo = click.option("--repo", envvar="IPFS_PATH", type=click.Path(file_okay=False),
                     default=None, help="IPFS repo (env IPFS_PATH; default ~/.gridd/ipfs).")


@main.command()
@_repo
@click.option("--local-only", is_flag=True, help="Initialise a new repo loopback-only.")
@click.argument("entries", nargs=-1)
def peering(repo: str | None, local_only: bool, entries: tuple[str, ...]) -> None:
    """Put bootstrap peers (args, else $GRIDD_BOOTSTRAP) into Kubo's Peering.Peers."""
    peers = _peers(entries)
    if not peers:
        return
    daemon = _init(Path(repo) if repo else default_repo(), local_only)
    write_peering_config(str(daemon.repo / "config"), peers)
    client = _running_client(daemon)
    if client is not None:  # already running: peer now too, not only after its next start
        with client:
            try:
                add_live_peering(client, peers)
            except IPFSError as e:
                click.echo(f"warning: the running daemon refused the peering ({e}); it "
                           "applies at its next start", err=True)
    click.echo(f"bootstrap: {len(peers)} peer(s) in Peering.Peers of {daemon.repo}", err=True)


@main.command("wait")
@_repo
@click.option("--timeout", type=float, default=15.0, show_default=True)
@click.argument("entries", nargs=-1)
def wait_command(repo: str | None, timeout: float, entries: tuple[str, ...]) -> None:
    """Report whether the running daemon reached its bootstrap peers (never fails on it)."""
    peers = _peers(entries)
    daemon = KuboDaemon(Path(repo) if repo else default_repo())
    client = _running_client(daemon) if peers else None
    if client is None:
        return
    with client:
        missing = wait_connected(client, peers, timeout)
    for p in peers:
        if p in missing:
            click.echo(f"warning: bootstrap peer {p.multiaddrs[0]} not reachable within "
                       f"{timeout:.0f}s; Kubo keeps re-dialling it (Peering.Peers)", err=True)
        else:
            click.echo(f"bootstrap: connected to {p.peer_id}", err=True)


@main.command()
@click.option("--env", "as_env", is_flag=True, help="Print as NAME=value lines (a .env file).")
def keygen(as_env: bool) -> None:
    """Make a fixed identity for a bootstrap peer: its peer id and private key."""
    peer_id, priv = new_identity()
    if as_env:
        click.echo(f"GRIDD_BOOTSTRAP_ID={peer_id}\n{IDENTITY_ENV}={priv}")
    else:
        click.echo(f"peer id:     {peer_id}\nprivate key: {priv}")


@main.command()
@_repo
def container(repo: str | None) -> None:
    """Prepare the repo inside a container: identity ($GRIDD_IPFS_IDENTITY), swarm on
    0.0.0.0:$GRIDD_SWARM_PORT (4001), API on 127.0.0.1:5001 only, no gateway, bootstrap
    peering ($GRIDD_BOOTSTRAP), and with GRIDD_NETWORK=private no public routing."""
    peers = _peers(())  # every setting is checked before the repo is touched
    port = os.environ.get(SWARM_PORT_ENV, "4001")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.UsageError(f"{SWARM_PORT_ENV}: expected a port, got {port!r}")
    edit: dict[str, object] = {
        "Addresses.API": "/ip4/127.0.0.1/tcp/5001",
        "Addresses.Gateway": [],
        "Addresses.Swarm": [f"/ip4/0.0.0.0/tcp/{port}"],
    }
    identity = os.environ.get(IDENTITY_ENV, "").strip()
    if identity:
        try:
            edit["Identity.PeerID"] = identity_peer_id(identity)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        edit["Identity.PrivKey"] = identity
    network = os.environ.get(NETWORK_ENV, "public")
    if network not in ("public", "private"):
        raise click.UsageError(f"{NETWORK_ENV}: expected public or private, got {network!r}")
    if network == "private":  # nothing outside the cluster to reach: do not try
        edit.update({"Bootstrap": [], "Routing.Type": "dht", "AutoConf.Enabled": False,
                     "AutoTLS.Enabled": False, "Discovery.MDNS.Enabled": False,
                     "Routing.DelegatedRouters": [], "Ipns.DelegatedPublishers": [],
                     "Swarm.Transports.Network.QUIC": False,
                     "Swarm.Transports.Network.WebTransport": False,
                     "Swarm.Transports.Network.WebRTCDirect": False})
    daemon = _init(Path(repo) if repo else default_repo(), local_only=False)
    _edit_config(daemon.repo, edit)
    own = json.loads((daemon.repo / "config").read_text())["Identity"]["PeerID"]
    peers = [p for p in peers if p.peer_id != own]  # the bootstrap peer shares the group's list
    if peers:
        write_peering_config(str(daemon.repo / "config"), peers)
    click.echo(f"repo {daemon.repo} ready: peer {edit.get('Identity.PeerID', '(own id)')}, "
               f"{len(peers)} bootstrap peer(s), {network} network", err=True)


if __name__ == "__main__":
    sys.exit(main())
