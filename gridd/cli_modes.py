"""`start_worker` and the mode commands of `gridd`; each mode owns its CLI module.

start_worker only picks the mode and hands the remaining arguments to that mode's click
command (gridd.compute.cli.compute_worker or gridd.tree.cli.tree_worker), so
`start_worker --tree --help` shows the tree options and the modes never share flags by accident.
The few options every mode has on purpose (`--bootstrap`) are defined here once.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from gridd.ipfs.bootstrap import (
    BOOTSTRAP_ENV,
    BootstrapError,
    BootstrapKeeper,
    BootstrapPeer,
    bootstrap_entries,
    parse_bootstrap,
    start_keeper,
)

MODES = {
    "--compute": ("gridd.compute.cli", "compute_worker"),
    "--tree": ("gridd.tree.cli", "tree_worker"),
}

USAGE = """Usage: start_worker --compute [OPTIONS] | --tree [OPTIONS]

  Run a gridd node next to your Kubo (IPFS) daemon.

  --compute   offer this machine's compute: train Keras models for data scientists
  --tree      join a tangle: serverless federated learning on your own data

  start_worker --compute --help / start_worker --tree --help list each mode's options.
  Start Kubo first with ./bin/start_ipfs; check it with `gridd ipfs status`.
  Both modes take --bootstrap MULTIADDR (repeatable; env GRIDD_BOOTSTRAP): peers to dial
  at start and keep connected.
"""


def bootstrap_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--bootstrap MULTIADDR`, repeatable: the same option and help in every mode."""
    return click.option(
        "--bootstrap", "bootstrap", multiple=True, metavar="MULTIADDR",
        help="A peer to dial at start and keep connected, e.g. /ip4/203.0.113.7/tcp/4001/"
        f"p2p/12D3KooW... (repeatable). Env {BOOTSTRAP_ENV} (comma or space separated); "
        "else the config file's bootstrap list.",
    )(fn)


def bootstrap_peers(flags: Sequence[str], config: Sequence[str] | str | None
                    ) -> list[BootstrapPeer]:
    """The bootstrap list in force (flags, else $GRIDD_BOOTSTRAP, else the config), checked:
    a malformed entry stops the worker at start with a usage error naming it."""
    try:
        return parse_bootstrap(bootstrap_entries(flags, os.environ, config))
    except BootstrapError as e:
        raise click.UsageError(str(e)) from None


def keep_bootstrap(api: str | None, peers: Sequence[BootstrapPeer]) -> BootstrapKeeper | None:
    """Dial the bootstrap peers now (an unreachable one is a logged warning) and keep them
    connected from a background thread for the life of the worker."""
    return start_keeper(api, peers)


def register(group: click.Group) -> None:
    """Add mode commands (genesis, lab, ...) to the `gridd` group, where a mode provides them."""
    for module_name, _ in MODES.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue
        hook = getattr(module, "register", None)
        if hook is not None:
            hook(group)


def start_worker(argv: list[str] | None = None) -> None:
    """Entry point of the `start_worker` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    chosen = sorted({a for a in args if a in MODES})
    if not chosen:
        if any(a in ("-h", "--help") for a in args):
            click.echo(USAGE)
            sys.exit(0)
        click.echo(USAGE + "\nError: choose a mode: --compute or --tree", err=True)
        sys.exit(2)
    if len(chosen) > 1:
        click.echo("Error: --compute and --tree cannot be combined; run two workers", err=True)
        sys.exit(2)
    flag = chosen[0]
    rest = [a for a in args if a != flag]
    module_name, command_name = MODES[flag]
    command = getattr(importlib.import_module(module_name), command_name)
    command.main(args=rest, prog_name=f"start_worker {flag}")
