"""`gridd lab`: run N tree-mode peers on this machine and watch the consensus learn."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import click

from gridd.bench import RESULTS_DIR, table


@click.command("lab", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--peers", type=click.IntRange(1, 10_000), default=10, show_default=True,
              help="Number of peers.")
@click.option("--dataset", type=click.Choice(["digits"]), default="digits", show_default=True,
              help="sklearn's bundled digits (no download).")
@click.option("--alpha", type=float, default=0.5, show_default=True,
              help="Dirichlet label skew among peers (small = more non-IID).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--transport", type=click.Choice(["ipfs", "memory"]), default="ipfs",
              show_default=True,
              help="ipfs: a real Kubo daemon and process per peer; memory: one process.")
@click.option("--malicious", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True, help="Fraction of peers that attack.")
@click.option("--attack", type=click.Choice(["random", "labelflip"]), default=None,
              help="random: publish noise weights; labelflip: train on flipped labels.")
@click.option("--client-epochs", type=click.IntRange(1), default=None,
              help="Stop after this many local epochs in total [default: 30 per peer].")
@click.option("--num-of-tips", type=click.IntRange(1, 8), default=8, show_default=True,
              help="At most this many tips approved and averaged per transaction.")
@click.option("--reference-top", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--vet-tolerance", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Keep a tip if half-mixed into the best model it adds at most this loss "
                   "(nats).")
@click.option("--vet-own-accuracy", type=click.FloatRange(0, 1), default=0.0,
              show_default=True,
              help="Also drop tips under this share of the best one's own accuracy: 0.5 "
                   "stops label flippers when peers hold most labels, hurts strong skew.")
@click.option("--tip-selector", type=click.Choice(["random_walk", "accuracy", "uniform"]),
              default="accuracy", show_default=True,
              help="accuracy: walks prefer models that do well on the peer's own data.")
@click.option("--sampling-rounds", type=click.IntRange(1), default=35, show_default=True)
@click.option("--training-interval", type=float, default=0.5, show_default=True,
              help="Seconds between trainings of a real-Kubo peer.")
@click.option("--overlap", type=click.IntRange(0), default=2, show_default=True,
              help="Memory lab: results reach others only after this many more trainings "
                   "started (0 = one after another, peers-1 = synchronized rounds; 2 matches "
                   "real Kubo peers).")
@click.option("--model", type=click.Choice(["no_tf", "tf"]), default="no_tf", show_default=True,
              help="no_tf: numpy peers (fast); tf: Keras peers.")
@click.option("--max-seconds", type=float, default=1800.0, show_default=True,
              help="Give up a real-Kubo lab after this long.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON results [default: bench-results/lab-<transport>-<peers>p.json]; "
                   "the accuracy plot goes next to it as .png.")
@click.option("--web-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve the live web view on this port (0 picks a free one).")
@click.option("--no-web", is_flag=True, help="Do not serve the web view.")
@click.option("--web-host", default="127.0.0.1", show_default=True,
              help="Address the web view binds to (0.0.0.0 shows it to your network).")
@click.option("--keep-web", is_flag=True,
              help="Keep serving the view after the lab ends, until Ctrl-C.")
@click.option("--prometheus-targets", type=click.Path(path_type=Path), default=None,
              help="Write the peers' (and Kubo daemons') metrics endpoints to this file as "
                   "a Prometheus file_sd list (a directory: <dir>/lab.json); "
                   "configs/prometheus.yml reads configs/targets/.")
def lab(out: Path | None, web_port: int, no_web: bool, web_host: str, keep_web: bool,
        prometheus_targets: Path | None, **kw: object) -> None:
    """Run N peers on this machine on a shared tangle and print consensus accuracy over time.

    The training part of digits is split among the peers by Dirichlet(alpha) labels; a
    held-out test set that no peer sees scores the consensus model as the peers train.
    Every process and daemon the lab starts is stopped when it ends.
    """
    from tqdm.auto import tqdm

    from gridd.lab.kubo_lab import run_kubo_lab
    from gridd.lab.memory_lab import run_memory_lab
    from gridd.lab.options import LabOptions
    from gridd.lab.partition import lab_data
    from gridd.lab.watch import LabWatch, fedavg_baseline, write_accuracy_png

    opts = LabOptions(out=out, **kw)  # type: ignore[arg-type]
    try:
        opts.validate()
        data = lab_data(opts.dataset, opts.peers, opts.alpha, opts.seed, opts.malicious,
                        opts.attack)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if prometheus_targets is not None and prometheus_targets.is_dir():
        prometheus_targets = prometheus_targets / "lab.json"
    if keep_web and no_web:
        raise click.UsageError("--keep-web needs the web view (drop --no-web)")
    bar = tqdm(total=opts.budget, unit="epoch", desc=f"lab ({opts.transport})")
    watch = LabWatch(opts, web_port=None if no_web else web_port, web_host=web_host,
                     targets_path=prometheus_targets, say=bar.write,
                     baseline=fedavg_baseline(opts))

    def progress(epochs: int, acc: float, txs: int) -> None:
        bar.n = min(epochs, opts.budget)
        bar.set_postfix(consensus=f"{acc:.3f}", transactions=txs)
        bar.refresh()

    def ready(result: object) -> None:
        urls = getattr(result, "metrics_urls", [])
        bar.write(f"{len(urls)} peers running; metrics:")
        for url in urls:
            bar.write(f"  {url}")

    def memory_ready(lab: object) -> None:
        from gridd.lab.memory_lab import MemoryLab

        assert isinstance(lab, MemoryLab)
        registries = None
        if prometheus_targets is not None:
            registries = [p.metrics.registry for p in (*lab.trainers, lab.observer)]
        watch.start(lab.observer, registries=registries)

    try:
        if opts.transport == "memory":
            result = run_memory_lab(opts, data, progress, on_ready=memory_ready,
                                    on_point=watch.point)
        else:
            result = run_kubo_lab(opts, data, progress, on_ready=ready, watch=watch)
    except KeyboardInterrupt:
        bar.close()
        watch.close()
        raise click.Abort() from None
    except Exception as e:
        bar.close()
        watch.close()
        raise click.ClickException(f"lab failed: {e}") from e
    bar.close()
    click.echo(report(result))
    path = out or RESULTS_DIR / f"lab-{opts.transport}-{opts.peers}p.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = result.to_json()
    payload["baseline"] = {"label": "FedAvg, all clients, same data",
                           "curve": [{"client_epochs": e, "accuracy": a}
                                     for e, a in watch.baseline]}
    path.write_text(json.dumps(payload, indent=2))
    png = write_accuracy_png(path.with_suffix(".png"), result.timeline, watch.baseline,
                             f"{opts.peers} peers, {opts.transport}, Dirichlet({opts.alpha}), "
                             f"seed {opts.seed}")
    click.echo(f"saved {path} and {png}")
    if keep_web and watch.url:
        click.echo(f"view stays at {watch.url} (the final tangle); Ctrl-C to stop")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    watch.close()


def report(result: object) -> str:
    """The accuracy-over-client-epochs table and a summary."""
    from gridd.lab.options import LabResult

    assert isinstance(result, LabResult)
    opts = result.options
    marks = sorted({max(1, round(opts.budget * f / 10)) for f in range(1, 11)})
    rows = []
    for mark in marks:
        point = next((p for p in result.timeline if p.client_epochs >= mark), None)
        if point is not None and (not rows or rows[-1]["client_epochs"] != point.client_epochs):
            rows.append({"client_epochs": point.client_epochs, "seconds": point.seconds,
                         "transactions": point.transactions,
                         "consensus_accuracy": point.consensus_accuracy})
    attack = f", {opts.malicious:.0%} {opts.attack} attackers" if opts.malicious else ""
    lines = [
        f"\n{opts.peers} peers, {opts.transport} transport, Dirichlet({opts.alpha}), "
        f"seed {opts.seed}{attack}",
        table(rows),
        f"final consensus accuracy: {result.final_accuracy:.4f}",
        f"client-epochs to reach 93%: {result.epochs_to(0.93) or 'not reached'}",
        f"median staleness (transactions published between a transaction's newest parent and "
        f"itself): {result.staleness_median}",
        f"wall time: {result.wall_seconds:.1f} s, peak memory (summed over processes): "
        f"{result.peak_memory_bytes / 2**30:.2f} GiB",
    ]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def register(group: click.Group) -> None:
    from gridd.lab.example_data import example_data

    group.add_command(lab)
    group.add_command(example_data)
