"""`start_worker --compute`: run a compute worker next to the local Kubo daemon.

Flags override --config (a YAML file like configs/compute.yaml), which overrides the built-in
defaults of ComputeSettings. SIGTERM/SIGINT stop it cleanly: running jobs are reported as
'shutdown' so their clients re-offer them at once instead of waiting for the lease.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from gridd.cli_modes import bootstrap_option, bootstrap_peers, keep_bootstrap
from gridd.compute.settings import ComputeSettings
from gridd.ipfs.address import API_ENV, DEFAULT_API


def load_settings(config: Path | None, overrides: dict[str, Any]) -> ComputeSettings:
    """Defaults < YAML file < flags given on the command line; validated."""
    values: dict[str, Any] = {}
    if config is not None:
        import yaml

        raw = yaml.safe_load(config.read_text()) or {}
        if not isinstance(raw, dict):
            raise click.BadParameter(f"{config}: expected a mapping of settings",
                                     param_hint="--config")
        names = {f.name for f in dataclasses.fields(ComputeSettings)}
        unknown = set(raw) - names
        if unknown:
            raise click.BadParameter(f"{config}: unknown settings {sorted(unknown)}",
                                     param_hint="--config")
        values.update(raw)
    values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
    for key in ("accept_from", "datasets", "bootstrap"):
        if key in values:
            if isinstance(values[key], str):
                values[key] = [values[key]]
            values[key] = tuple(values[key] or ())
    try:
        settings = ComputeSettings(**values)
        settings.validate()
    except (TypeError, ValueError) as e:
        raise click.UsageError(str(e)) from e
    return settings


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--api", envvar=API_ENV, default=None,
              help=f"Kubo RPC address, multiaddr or URL (env {API_ENV}; default {DEFAULT_API}).")
@click.option("--slots", type=int, default=None, help="Jobs trained at once (default 1).")
@click.option("--accept-from", "accept_from", multiple=True, metavar="PEER_ID",
              help="Only accept jobs from this peer id (repeat for several).")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus /metrics here.")
@click.option("--max-job-bytes", type=int, default=None, help="Cap on model + data per job.")
@click.option("--max-params", type=int, default=None,
              help="Refuse models declaring more parameters (default 50 million).")
@click.option("--max-epochs", type=int, default=None, help="Refuse jobs asking for more epochs.")
@click.option("--max-wall-seconds", type=float, default=None, help="Stop jobs running longer.")
@click.option("--heartbeat-interval", type=float, default=None,
              help="Seconds between ads and lease beats (default 2).")
@click.option("--result-ttl", type=float, default=None,
              help="Seconds a trained model stays pinned here for its client (default 86400).")
@click.option("--topic", envvar="GRIDD_COMPUTE_TOPIC", default=None,
              help="Compute topic (env GRIDD_COMPUTE_TOPIC; default gridd/compute/v2).")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME=PATH.npz",
              help="Offer federated jobs this dataset (arrays x, y, optionally x_val, y_val); "
              "it never leaves this machine, only its description is advertised. Repeatable.")
@click.option("--holdout", type=float, default=None,
              help="Fraction of each dataset without x_val/y_val kept aside to evaluate "
              "federated models on (default 0.1; 0 trains on every row).")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="YAML settings file (see configs/compute.yaml).")
@click.option("--state-dir", envvar="GRIDD_COMPUTE_STATE", default=None,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where the worker keeps what must survive a restart (replay marks). "
              "Env GRIDD_COMPUTE_STATE; default ~/.gridd/compute/<peer id>.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@bootstrap_option
def compute_worker(config: Path | None, verbose: bool, state_dir: Path | None,
                   **flags: Any) -> None:
    """Offer this machine's compute: train Keras models that clients send as IPFS CIDs."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    boot = flags.pop("bootstrap")
    settings = load_settings(config, flags)
    run_worker(settings, state_dir, bootstrap=boot)


def run_worker(settings: ComputeSettings, state_dir: Path | None = None,
               bootstrap: tuple[str, ...] = ()) -> None:
    """`bootstrap`: --bootstrap flags (else $GRIDD_BOOTSTRAP, else settings.bootstrap)."""
    from gridd.compute.sysinfo import machine_info
    from gridd.compute.trainer import KerasTrainer
    from gridd.compute.worker import ComputeWorker
    from gridd.data import DataError
    from gridd.federated.datasets import load_datasets
    from gridd.ipfs import IPFSError, KuboClient
    from gridd.ipfs.roles import NoFreeIdentity, claim_role_key
    from gridd.metrics import ComputeMetrics, serve
    from gridd.transport import IpfsBroker, IpfsStore

    log = logging.getLogger("gridd.compute")
    boot_peers = bootstrap_peers(bootstrap, settings.bootstrap)
    try:  # a wrong file stops the worker now, with the reason, not a job later
        datasets = load_datasets(settings.datasets, settings.holdout)
    except (DataError, ValueError) as e:
        click.echo(f"start_worker --compute: {e}", err=True)
        sys.exit(2)
    for d in datasets.values():
        info = d.description
        log.info("dataset %s: %d rows (+%d held out), features %s, %d classes, from %s",
                 d.name, info["samples"], info["holdout"], tuple(info["shape"]),
                 info["num_classes"], d.path)
    kubo = KuboClient(settings.api)
    try:
        # this worker's own identity on the daemon (a notebook or other workers may share it)
        broker = IpfsBroker(kubo, claim_role_key(kubo, "worker"))
        kubo.pubsub_ls()
        keep_bootstrap(settings.api, boot_peers)
    except (IPFSError, NoFreeIdentity) as e:
        click.echo(str(e), err=True)
        sys.exit(1)
    metrics = ComputeMetrics()
    if settings.metrics_port is not None:
        port = serve(metrics.registry, settings.metrics_port)
        log.info("metrics on http://127.0.0.1:%d/metrics", port)
    info = machine_info(with_tf=True)  # import TF now: the first job then starts at once
    if state_dir is None:
        home = Path(os.environ.get("GRIDD_HOME", Path.home() / ".gridd"))
        state_dir = home / "compute" / broker.peer_id
    worker = ComputeWorker(broker, IpfsStore(kubo), settings, KerasTrainer(settings.max_params),
                           metrics, info, state_path=state_dir / "replay.json",
                           datasets=datasets)
    stopping = {"done": False}

    def on_signal(signum: int, _frame: Any) -> None:
        if not stopping["done"]:
            stopping["done"] = True
            log.info("signal %d: stopping", signum)
            worker.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.start()
    log.info("compute worker %s ready: %d slot(s), topic %s%s", broker.peer_id, settings.slots,
             settings.topic, f", accepting only {list(settings.accept_from)}"
             if settings.accept_from else "")
    click.echo(f"READY {broker.peer_id}", err=True)
    try:
        worker.wait()
    finally:
        worker.stop()
        kubo.close()


def register(group: click.Group) -> None:
    """`gridd compute ...`: look at the compute grid from a terminal."""

    @group.group()
    def compute() -> None:
        """Compute mode: workers that train Keras models for clients."""

    @compute.command()
    @click.option("--api", envvar=API_ENV, default=None, help=f"Kubo RPC address (env {API_ENV}).")
    @click.option("--topic", envvar="GRIDD_COMPUTE_TOPIC", default=None, help="Compute topic.")
    @click.option("--wait", type=float, default=5.0, show_default=True,
                  help="Seconds to listen for worker ads (each worker advertises every few "
                  "seconds, so all of them are listed only after a full wait).")
    @click.option("--min-workers", type=int, default=None,
                  help="Stop listening as soon as this many workers are live.")
    def workers(api: str | None, topic: str | None, wait: float,
                min_workers: int | None) -> None:
        """List the live compute workers this node can reach, with their limits."""
        from gridd.client import Client
        from gridd.compute.dispatch import no_workers_message
        from gridd.ipfs import IPFSError

        try:
            client = Client(api, topic=topic)
        except IPFSError as e:
            click.echo(str(e), err=True)
            sys.exit(1)
        with client:
            table = client.workers(wait=wait, min_workers=min_workers)
            click.echo(repr(table) if table else
                       no_workers_message(client.topic, wait, client.trusted))
