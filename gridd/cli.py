"""Command line: `gridd ...` (node, tangle and lab commands) and `start_worker` (run a node)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from gridd import __version__
from gridd.ipfs import (
    DEFAULT_API,
    IPFSError,
    IPFSUnreachable,
    KuboClient,
    KuboDaemon,
    PubsubDisabled,
)
from gridd.ipfs.address import API_ENV
from gridd.ipfs.daemon import DEFAULT_STORAGE_MAX, STORAGE_MAX_ENV

api_option = click.option(
    "--api", envvar=API_ENV, default=None,
    help=f"Kubo RPC address, multiaddr or URL (env {API_ENV}; default: the daemon of "
    f"$IPFS_PATH, as the ipfs CLI finds it, else {DEFAULT_API}).",
)


def _client(api: str | None) -> KuboClient:
    try:
        return KuboClient(api)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--api") from e


def _fail(e: Exception, code: int = 1) -> None:
    click.echo(str(e), err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gridd")
def main() -> None:
    """gridd: a peer-to-peer machine-learning grid on IPFS.

    Every node runs next to a Kubo (IPFS) daemon. Start one with ./bin/start_ipfs, check it with
    `gridd ipfs status`, connect to other nodes with `gridd peers connect`, then run
    `start_worker --compute` or `start_worker --tree`.
    """


# -- ipfs ----------------------------------------------------------------------------------------


@main.group()
def ipfs() -> None:
    """Check or start the local Kubo daemon."""


@ipfs.command()
@api_option
def status(api: str) -> None:
    """Is the daemon up, which version, is pubsub on, how many peers.

    Exit code: 0 healthy, 1 daemon unreachable, 2 pubsub disabled.
    """
    client = _client(api)
    try:
        node = client.id()
        version = client.version()
    except IPFSUnreachable as e:
        _fail(e, 1)
    click.echo(f"daemon:  running at {client.address.multiaddr} (Kubo {version})")
    click.echo(f"peer id: {node.peer_id}")
    try:
        client.pubsub_ls()
    except PubsubDisabled as e:
        click.echo("pubsub:  DISABLED")
        _fail(e, 2)
    click.echo("pubsub:  enabled")
    peers = client.swarm_peers()
    click.echo(f"peers:   {len(peers)} connected")
    if not peers:
        click.echo(
            "warning: no peers connected; connect with `gridd peers connect <multiaddr>`", err=True
        )


@ipfs.command()
@click.option("--repo", envvar="IPFS_PATH", type=click.Path(file_okay=False),
              help="IPFS repo (env IPFS_PATH; default ~/.gridd/ipfs).")
@click.option("--local-only", is_flag=True,
              help="Loopback only, random ports, no bootstrap/DHT (labs and tests).")
@click.option("--foreground", is_flag=True, help="Stay attached until Ctrl-C.")
@click.option("--storage-max", envvar=STORAGE_MAX_ENV, default=None,
              help=f"Datastore.StorageMax: GC keeps the repo under it (env {STORAGE_MAX_ENV}; "
              f"a new repo gets {DEFAULT_STORAGE_MAX}, an existing one keeps its setting).")
@click.option("--gc/--no-gc", default=True, show_default=True,
              help="Start the daemon with --enable-gc, so unpinned blocks really go.")
def start(repo: str | None, local_only: bool, foreground: bool, storage_max: str | None,
          gc: bool) -> None:
    """Initialise the repo if needed, enable pubsub, start the daemon, print its addresses."""
    try:
        daemon = KuboDaemon(repo, local_only=local_only, storage_max=storage_max, gc=gc)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--storage-max") from None
    if storage_max is None and not daemon.initialised():
        daemon.storage_max = DEFAULT_STORAGE_MAX
    try:
        if daemon.initialised():
            try:
                existing = KuboClient(daemon.api_address()) if daemon.api_address() else None
                if existing is not None:
                    existing.id()
                    click.echo(f"ipfs daemon already running for {daemon.repo}")
                    _print_addrs(existing)
                    return
            except IPFSError:
                pass
        daemon.init()
        client = daemon.start()
    except IPFSError as e:
        _fail(e)
    click.echo(f"ipfs daemon started (repo {daemon.repo}, log {daemon.log_path})")
    click.echo(f"API: {daemon.api_address()}   (export {API_ENV}={daemon.api_address()})")
    _print_addrs(client)
    if foreground:
        try:
            assert daemon.process is not None
            daemon.process.wait()
        except KeyboardInterrupt:
            daemon.stop()


@ipfs.command()
@click.option("--repo", envvar="IPFS_PATH", type=click.Path(file_okay=False),
              help="IPFS repo (env IPFS_PATH; default ~/.gridd/ipfs).")
def stop(repo: str | None) -> None:
    """Stop the daemon `gridd ipfs start` (or bin/start_ipfs) started for the repo."""
    from gridd.ipfs.daemon import default_repo, stop_repo_daemon

    path = Path(repo) if repo else default_repo()
    if stop_repo_daemon(path):
        click.echo(f"ipfs daemon of {path} stopped")
    else:
        _fail(RuntimeError(f"no ipfs daemon started by gridd is running for {path}"))


def _print_addrs(client: KuboClient) -> None:
    click.echo("Other peers connect to this node with one of:")
    for addr in client.swarm_addrs_local():
        click.echo(f"  gridd peers connect {addr}")


# -- peers ---------------------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@api_option
@click.pass_context
def peers(ctx: click.Context, api: str) -> None:
    """List connected peers and this node's own multiaddrs."""
    ctx.obj = api
    if ctx.invoked_subcommand is not None:
        return
    client = _client(api)
    try:
        own = client.swarm_addrs_local()
        connected = client.swarm_peers()
    except IPFSError as e:
        _fail(e)
    click.echo("This node (give one of these to other peers):")
    for a in own:
        click.echo(f"  {a}")
    click.echo(f"Connected peers ({len(connected)}):")
    for peer, addr in connected:
        click.echo(f"  {addr}/p2p/{peer}")


@peers.command("connect")
@click.argument("multiaddr")
@click.option("--api", "own_api", envvar=API_ENV, default=None,
              help="Kubo RPC address (also accepted before `connect`).")
@click.pass_obj
def peers_connect(api: str | None, multiaddr: str, own_api: str | None) -> None:
    """Connect to a peer: /ip4/1.2.3.4/tcp/4001/p2p/12D3Koo..."""
    client = _client(own_api or api)
    try:
        client.swarm_connect(multiaddr)
    except IPFSError as e:
        _fail(e)
    click.echo(f"connected to {multiaddr}")


def _register_mode_commands() -> None:
    """Mode commands live next to their mode; imported lazily so `gridd --help` stays fast."""
    from gridd import cli_modes
    from gridd.lab import cli as lab_cli

    cli_modes.register(main)
    lab_cli.register(main)
    from gridd import storage_cli

    storage_cli.register(main)
    from gridd.web import cli as web_cli

    web_cli.register(main)


def start_worker_main() -> Any:
    from gridd.cli_modes import start_worker

    return start_worker()


_register_mode_commands()
