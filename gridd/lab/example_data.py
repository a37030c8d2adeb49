"""`gridd example-data`: the lab's digits shards as .npz files, to try tree mode by hand.

The same split the lab and the benchmarks use (gridd.lab.partition): each peer file holds
x, y and its own validation split x_val, y_val, as `start_worker --tree --data` reads them;
test.npz holds the held-out test set that no peer sees.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from gridd.data import save_npz
from gridd.lab.partition import lab_data


@click.command("example-data")
@click.option("--peers", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="How many peer files to write.")
@click.option("--alpha", type=click.FloatRange(min=0.001), default=0.5, show_default=True,
              help="Dirichlet label skew (small = each peer sees few classes).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"),
              show_default=True, help="Folder to write peer0.npz ... and test.npz into.")
def example_data(peers: int, alpha: float, seed: int, out: Path) -> None:
    """Write sklearn's digits, split among PEERS peers, as .npz files for start_worker --tree."""
    data = lab_data("digits", peers, alpha, seed)
    out.mkdir(parents=True, exist_ok=True)
    for i, dataset in enumerate(data.peers):
        save_npz(out / f"peer{i}.npz", dataset)
    np.savez(out / "test.npz", x=data.x_test, y=data.y_test)
    click.echo(f"wrote {peers} peer files and test.npz to {out}/ "
               f"({sum(len(d.y) for d in data.peers)} training rows, {len(data.y_test)} test)")
