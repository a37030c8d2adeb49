"""CLI for the two modes (filled in by the tree and compute modules)."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add mode commands (genesis, lab, ...) to the `gridd` group."""


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--compute", "mode", flag_value="compute", help="Offer compute to the grid.")
@click.option("--tree", "mode", flag_value="tree", help="Join a tangle (federated learning).")
def start_worker(mode: str | None) -> None:
    """Run a gridd node next to your Kubo daemon."""
    if mode is None:
        raise click.UsageError("choose a mode: --compute or --tree")
