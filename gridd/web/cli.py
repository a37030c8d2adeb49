"""`gridd view --genesis <id>`: follow a tangle next to a Kubo daemon and show it.

An observer TreePeer (it never trains or publishes) follows the tangle on this process's
own identity of the daemon (the notebook client's), the feed copies what it sees from
this thread, and the web server answers from its own threads. With `--png FILE` it
catches up for `--wait` seconds, draws the tangle to FILE and exits. Compute workers'
ads (and this process's jobs: none) are listed too unless `--no-compute`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import click

from gridd.ipfs.address import API_ENV

DEFAULT_PORT = 9000  # the IPFS Learning Tangle's viewer port


@click.command("view", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--genesis", "genesis_id", required=True, help="Genesis id of the tangle.")
@click.option("--api", envvar=API_ENV, default=None, help=f"Kubo RPC address (env {API_ENV}).")
@click.option("--web-port", type=click.IntRange(0, 65535), default=DEFAULT_PORT,
              show_default=True, help="Port of the web view (0 picks a free one).")
@click.option("--web-host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 shows the view to your network).")
@click.option("--validation", type=click.Path(dir_okay=False, exists=True), default=None,
              help=".npz with x, y (or x_val, y_val): accuracy is measured on it, never "
                   "trained on; without it the issuers' own figures are shown, labelled so.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Catch up for --wait seconds, draw the tangle to this PNG and exit.")
@click.option("--window", type=click.IntRange(1, 100_000), default=500, show_default=True,
              help="Transactions drawn in the PNG (the newest).")
@click.option("--wait", type=click.FloatRange(0.5), default=10.0, show_default=True,
              help="Seconds to catch up before drawing the PNG.")
@click.option("--duration", type=click.FloatRange(0), default=None,
              help="Stop serving after this many seconds (default: until Ctrl-C).")
@click.option("--compute/--no-compute", default=True, show_default=True,
              help="Also list compute workers from their ads.")
def view(genesis_id: str, api: str | None, web_port: int, web_host: str,
         validation: str | None, png: Path | None, window: int, wait: float,
         duration: float | None, compute: bool) -> None:
    """Show a tangle live in a browser (or draw it to a PNG) without training."""
    from gridd.client import Client
    from gridd.data import DataError, load_npz
    from gridd.ipfs import IPFSError
    from gridd.tree.genesis import GenesisError, load_genesis
    from gridd.tree.messages import topic_for
    from gridd.tree.notebook import make_observer
    from gridd.tree.settings import load_tree_settings
    from gridd.web.feed import TangleFeed

    try:
        topic_for(genesis_id)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--genesis") from None
    try:
        settings = load_tree_settings(None, os.environ, {})
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        client = Client(api)
    except (IPFSError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    observer = None
    try:
        try:
            genesis = load_genesis(client.store, genesis_id, timeout=settings.timeout)
            data = None
            if validation:
                data = load_npz(validation, genesis.recipe.input_shape, genesis.recipe.classes)
            observer = make_observer(genesis_id, client.broker, client.store, data, settings)
            observer.open()
        except (GenesisError, DataError, IPFSError, ValueError) as e:
            raise click.ClickException(str(e)) from None
        feed = TangleFeed(observer)
        if png is not None:
            _catch_up(observer, feed, wait)
            from gridd.web.png import render_tangle_png

            try:
                render_tangle_png(feed, png, window)
            except ValueError as e:
                raise click.ClickException(str(e)) from None
            click.echo(f"{png}: {min(window, feed.snapshot.count)} of "
                       f"{feed.snapshot.count} transactions")
            return
        _serve(client, observer, feed, web_host, web_port, duration, compute)
    finally:
        if observer is not None:
            observer.close()
        client.close()


def _catch_up(observer: Any, feed: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        observer.process_messages(timeout=0.2)
        feed.refresh()
    feed.refresh(force=True)


def _serve(client: Any, observer: Any, feed: Any, host: str, port: int,
           duration: float | None, compute: bool) -> None:
    from gridd.web.server import WebView

    providers: dict[str, Any] = {}
    if compute:
        from gridd.compute.table import workers_table

        dispatcher = client.dispatcher  # started here, read from the server's threads
        providers["compute_workers"] = lambda: list(workers_table(dispatcher.workers()))
        client.hub  # noqa: B018 (listens to federated jobs' progress events: rows in jobs())
        providers["compute_jobs"] = lambda: list(client.jobs())
    feed.refresh(force=True)
    try:
        web = WebView(feed, host=host, port=port, providers=providers,
                      title=f"tangle {observer.genesis_id[:12]}")
    except OSError as e:
        raise click.ClickException(f"cannot serve on {host}:{port}: {e} (try --web-port 0)") \
            from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with web:
        click.echo(f"view: {web.url}   (tangle {observer.genesis_id[:12]}; Ctrl-C to stop)")
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            observer.process_messages(timeout=0.2)
            feed.refresh()


def register(group: click.Group) -> None:
    group.add_command(view)
