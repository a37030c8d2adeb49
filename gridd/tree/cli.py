"""Command line of tree mode: `start_worker --tree ...` and `gridd genesis ...`.

Settings flags take strings and go through load_tree_settings, so a bad value is refused at
start with the setting's name whether it came from configs/tree.yaml, the environment or a
flag. Progress goes to the log (LOGGER / LOGGING_LEVEL); `gridd genesis` prints only the
genesis id on stdout, so scripts can capture it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gridd.cli_modes import bootstrap_option, bootstrap_peers, keep_bootstrap
from gridd.ipfs import DEFAULT_API, IPFSError, KuboClient
from gridd.ipfs.address import API_ENV
from gridd.models.recipe import BUILTIN_ARCHITECTURES, Recipe
from gridd.tree.settings import TreeSettings, load_tree_settings

log = logging.getLogger("gridd.tree")

STATE_ROOT_ENV = "GRIDD_TREE_STATE"
DEFAULT_STATE_ROOT = Path("~/.gridd/tree")

_SETTING_FLAGS = [
    ("training_interval", "Seconds between training attempts (TRAINING_INTERVAL)."),
    ("active_quota", "Probability of training at each interval, 0..1 (ACTIVE_QUOTA)."),
    ("num_of_tips", "At most this many acceptable tips approved and averaged (NUM_OF_TIPS)."),
    ("num_of_sampling_round", "Tip samples for the reference model (NUM_OF_SAMPLING_ROUND)."),
    ("runtime", "auto | tf | no_tf: which model runtime to use (MODEL)."),
    ("timeout", "Seconds an IPFS fetch may take (TIMEOUT)."),
    ("logger", "stderr | stdout | none | file:<path> (LOGGER)."),
    ("logging_level", "DEBUG | INFO | WARNING | ERROR (LOGGING_LEVEL)."),
    ("storage", "ipfs (STORAGE; memory only inside `gridd lab`)."),
    ("message_broker", "ipfs (MESSAGE_BROKER; memory only inside `gridd lab`)."),
    ("announce_interval", "Seconds between re-announcements of our tips (ANNOUNCE_INTERVAL)."),
    ("tip_selector", "random_walk | accuracy | uniform (TIP_SELECTOR)."),
    ("selector_alpha", "Walk bias (SELECTOR_ALPHA)."),
    ("reference_top", "Transactions averaged into the reference model (REFERENCE_TOP)."),
    ("vet_tolerance", "Keep a tip if half-mixed into the best model it adds at most this loss "
     "(VET_TOLERANCE, nats)."),
    ("max_deviation", "Keep a tip only within this many times that model's norm of it "
     "(MAX_DEVIATION)."),
    ("vet_own_accuracy", "Also drop tips under this share of the best one's accuracy on "
     "local data: against label flipping where peers hold most labels (VET_OWN_ACCURACY)."),
    ("momentum", "Follow the network's last step this much further, 0..1 (MOMENTUM)."),
    ("retention_window", "Keep weights this deep below the tips; off = keep everything "
     "(RETENTION_WINDOW)."),
    ("retention_own", "Also keep the weights of this many own transactions; all = every one "
     "(RETENTION_OWN)."),
    ("log_compact_bytes", "Compact tangle.log past this size; 0 = never (LOG_COMPACT_BYTES)."),
]


def _setting_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for name, help_text in reversed(_SETTING_FLAGS):
        fn = click.option(f"--{name.replace('_', '-')}", name, type=str, default=None,
                          help=help_text)(fn)
    return fn


_api_option = click.option(
    "--api", envvar=API_ENV, default=None,
    help=f"Kubo RPC address, multiaddr or URL (env {API_ENV}; default: the daemon of "
    f"$IPFS_PATH, as the ipfs CLI finds it, else {DEFAULT_API}).",
)


def _recipe_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--model", "model_spec", default=None,
                     help="A .keras file or a builtin architecture "
                          f"({', '.join(BUILTIN_ARCHITECTURES)})."),
        click.option("--init-seed", type=int, default=None,
                     help="Seed of the initial weights (builtin models; re-initialises a .keras "
                          "model's weights when given)."),
        click.option("--input-shape", default=None, help="e.g. 64 or 28,28 (builtin softmax/mlp)."),
        click.option("--classes", type=int, default=None, help="Number of classes (softmax/mlp)."),
        click.option("--hidden", default=None, help="Hidden layer widths for mlp, e.g. 64,32."),
        click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd",
                     show_default=True),
        click.option("--learning-rate", type=float, default=0.1, show_default=True),
        click.option("--batch-size", type=int, default=16, show_default=True),
        click.option("--local-epochs", type=int, default=1, show_default=True),
        click.option("--loss", default="sparse_categorical_crossentropy", show_default=True),
        click.option("--metric", default="accuracy", show_default=True),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _ints(text: str | None, name: str) -> list[int]:
    if not text:
        return []
    try:
        return [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}",
                                 param_hint=name) from None


def make_genesis(client: KuboClient, model_spec: str | None, init_seed: int | None,
                 **recipe_args: Any) -> str:
    """Build the recipe (and .keras model) from CLI options, store the genesis, return its id."""
    from gridd.transport import IpfsStore
    from gridd.tree.genesis import create_genesis

    if not model_spec:
        raise click.UsageError("--model is required: a .keras file or one of "
                               + ", ".join(BUILTIN_ARCHITECTURES))
    input_shape = _ints(recipe_args.pop("input_shape"), "--input-shape")
    classes = recipe_args.pop("classes")
    hidden = _ints(recipe_args.pop("hidden"), "--hidden")
    store = IpfsStore(client)
    issuer = client.id().peer_id
    try:
        if model_spec in BUILTIN_ARCHITECTURES:
            if model_spec == "digits_mlp":
                input_shape, classes = input_shape or [64], classes or 10
            if not input_shape or classes is None:
                raise click.UsageError(f"--model {model_spec} needs --input-shape and --classes")
            recipe = Recipe(model_spec, tuple(input_shape), classes, hidden=tuple(hidden),
                            **recipe_args)
            return create_genesis(store, recipe, init_seed=init_seed or 0, issuer=issuer)
        path = Path(model_spec)
        if not path.is_file():
            raise click.BadParameter(
                f"{model_spec!r} is neither a file nor a builtin architecture "
                f"({', '.join(BUILTIN_ARCHITECTURES)})", param_hint="--model")
        from gridd.models import load_keras_file

        model = load_keras_file(path, compile=False)
        if init_seed is not None:
            import keras

            keras.utils.set_random_seed(init_seed)
            model = keras.models.clone_model(model)  # fresh, seeded initial weights
        recipe = Recipe("keras", tuple(int(d) for d in model.input_shape[1:]),
                        int(model.output_shape[-1]), **recipe_args)
        return create_genesis(store, recipe, keras_model=model, init_seed=init_seed or 0,
                              issuer=issuer)
    except ValueError as e:  # recipe, unsafe model and weight errors explain themselves
        raise click.ClickException(str(e)) from None


def default_state_dir(genesis_id: str, identity: str, root: Path | None = None) -> Path:
    """`<root>/<genesis id[:16]>/<identity>`, root being $GRIDD_TREE_STATE or ~/.gridd/tree.

    One directory per identity (the peer id the peer signs as), because a directory holds
    one peer's log and counters: several peers of one tangle on one machine must not share
    it (and lock_state_dir refuses a second process on the same directory).
    """
    if (not identity or identity in (".", "..") or "/" in identity or "\\" in identity
            or "\0" in identity):
        raise ValueError(f"identity {identity!r} cannot name a state directory")
    if root is None:
        root = Path(os.environ.get(STATE_ROOT_ENV) or str(DEFAULT_STATE_ROOT))
    return root.expanduser() / genesis_id[:16] / identity


def configure_logging(settings: TreeSettings) -> None:
    """LOGGER and LOGGING_LEVEL: where the peer's log goes and how much of it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if settings.logger == "none":
        root.addHandler(logging.NullHandler())
    else:
        if settings.logger.startswith("file:"):
            handler: logging.Handler = logging.FileHandler(settings.logger[5:])
        else:
            handler = logging.StreamHandler(sys.stdout if settings.logger == "stdout"
                                            else sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(settings.logging_level)
    # One line per RPC call drowns the peer's own log; show them only when debugging.
    quiet = logging.DEBUG if settings.logging_level == "DEBUG" else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--genesis", "genesis_id", default=None, help="Genesis id of the tangle to join.")
@click.option("--create-genesis", is_flag=True,
              help="Create a genesis first (with --model ...) and join it.")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="This peer's data: .npz with x, y (and optionally x_val, y_val).")
@click.option("--observer", is_flag=True, help="Follow the tangle without data or training.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML settings file (over configs/tree.yaml, under env and flags).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help=f"Where the tangle log and state live (default ${STATE_ROOT_ENV} or "
                   "~/.gridd/tree, then /<genesis>/<peer id>); one process per directory.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port (0 picks one).")
@click.option("--web-port", type=click.IntRange(0, 65535), default=None,
              help="Serve the live web view of the tangle on this port (0 picks one; off "
                   "by default).")
@click.option("--web-host", default="127.0.0.1", show_default=True,
              help="Address the web view binds to.")
@click.option("--seed", type=int, default=None, help="Seed of tip selection and training.")
@click.option("--duration", type=float, default=None,
              help="Stop after this many seconds (default: run until Ctrl-C / SIGTERM).")
@_api_option
@bootstrap_option
@_setting_options
@_recipe_options
def tree_worker(genesis_id: str | None, create_genesis: bool, data: str | None, observer: bool,
                config_file: str | None, state_dir: str | None, metrics_port: int | None,
                seed: int | None, duration: float | None, web_port: int | None,
                web_host: str, api: str, runtime: str | None,
                model_spec: str | None, init_seed: int | None, bootstrap: tuple[str, ...],
                **rest: Any) -> None:
    """Join a tangle: train on your own data and share model updates, without a server."""
    overrides = {name: rest.pop(name) for name, _ in _SETTING_FLAGS if name in rest}
    overrides["model"] = runtime
    try:
        settings = load_tree_settings(config_file, os.environ, overrides)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    boot_peers = bootstrap_peers(bootstrap, settings.bootstrap)
    if settings.storage != "ipfs":
        raise click.UsageError(
            f"STORAGE: {settings.storage!r} only works inside `gridd lab`; start_worker uses ipfs")
    try:
        configure_logging(settings)
    except OSError as e:
        raise click.UsageError(f"LOGGER: cannot open {settings.logger[5:]!r}: {e}") from None
    if settings.model == "no_tf":
        os.environ["MODEL"] = "no_tf"  # build_model honours it everywhere
    if create_genesis == bool(genesis_id):
        raise click.UsageError("give exactly one of --genesis <id> and --create-genesis")
    if not observer and not data:
        raise click.UsageError("--data <file.npz> is required (or --observer to only follow)")
    if observer and data:
        raise click.UsageError("--observer takes no --data")

    from gridd.data import DataError, load_npz
    from gridd.ipfs.roles import NoFreeIdentity, claim_role_key
    from gridd.metrics import TreeMetrics, serve
    from gridd.transport import IpfsBroker, IpfsStore
    from gridd.tree.genesis import GenesisError, load_genesis
    from gridd.tree.messages import topic_for
    from gridd.tree.peer import TreePeer
    from gridd.tree.state import STATE_FILE, StateError, StateLockedError, lock_state_dir

    try:
        client = KuboClient(api, timeout=max(30.0, settings.timeout))
        client.id()
        keep_bootstrap(api, boot_peers)  # before the genesis: it may come from those peers
        # this peer's own identity on the daemon (other peers and notebooks may share it)
        broker = IpfsBroker(client, claim_role_key(client, "tree"))
        if create_genesis:
            genesis_id = make_genesis(client, model_spec, init_seed, **rest)
            click.echo(f"created genesis {genesis_id}", err=True)
        elif model_spec is not None:
            raise click.UsageError("--model only goes with --create-genesis")
        assert genesis_id is not None
        try:
            topic_for(genesis_id)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--genesis") from None
        directory = (Path(state_dir) if state_dir
                     else default_state_dir(genesis_id, broker.peer_id))
        try:
            state_lock = lock_state_dir(directory)  # held until this process exits
        except StateLockedError as e:
            raise click.UsageError(str(e)) from None
        except OSError as e:
            raise click.ClickException(f"state directory {directory}: {e}") from None
        legacy = directory.parent / STATE_FILE  # the default before it was per identity
        if not state_dir and legacy.is_file() and not (directory / STATE_FILE).exists():
            click.echo(f"note: {legacy.parent} holds state from an older gridd; to resume "
                       f"it, pass --state-dir {legacy.parent}", err=True)
        genesis = load_genesis(IpfsStore(client), genesis_id, timeout=settings.timeout)
        dataset = None
        if data:
            dataset = load_npz(data, genesis.recipe.input_shape, genesis.recipe.classes)
        metrics = TreeMetrics()
        peer = TreePeer(genesis_id=genesis_id, broker=broker,
                        store=IpfsStore(client), dataset=dataset, settings=settings,
                        state_dir=directory, metrics=metrics, seed=seed)
        peer.open()
    except (DataError, GenesisError, StateError, ValueError) as e:
        # bad data, a genesis that is not one, a keras tangle on a no_tf peer, ...
        raise click.ClickException(str(e)) from None
    except (IPFSError, NoFreeIdentity) as e:
        raise click.ClickException(str(e)) from None
    if metrics_port is not None:
        port = serve(metrics.registry, metrics_port)
        click.echo(f"metrics on http://127.0.0.1:{port}/metrics", err=True)
    web = _start_web(peer, web_host, web_port) if web_port is not None else None
    click.echo(f"peer {peer.peer_id} joined tangle {genesis_id} "
               f"({len(peer.tangle)} transactions, state in {directory})", err=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    started = time.monotonic()
    try:
        peer.run(stop)
    finally:
        if web is not None:
            web.close()
        peer.close()
        state_lock.release()
        click.echo(f"stopped after {time.monotonic() - started:.0f}s: "
                   f"{len(peer.tangle)} transactions, {peer.counters.published} published",
                   err=True)


def _start_web(peer: Any, host: str, port: int) -> Any:
    """The web view of this peer's tangle (gridd.web): the feed refreshes as a node tick,
    on the peer's own thread; the server answers from its own threads."""
    from gridd.web.feed import TangleFeed
    from gridd.web.server import WebView

    feed = TangleFeed(peer)
    feed.refresh(force=True)
    try:
        web = WebView(feed, host=host, port=port,
                      title=f"peer {peer.peer_id[:16]}").start()
    except OSError as e:
        peer.close()
        raise click.ClickException(f"--web-port: cannot serve on {host}:{port}: {e}") from None
    peer.node.every(feed.min_interval, feed.refresh, name="web")
    click.echo(f"view on {web.url}", err=True)
    return web


@click.command("genesis")
@_api_option
@_recipe_options
def genesis_command(api: str, model_spec: str | None, init_seed: int | None,
                    **recipe_args: Any) -> None:
    """Create a tangle: store model, initial weights and recipe in IPFS; print the genesis id.

    Peers join with: start_worker --tree --genesis <id> --data <file.npz>
    """
    try:
        client = KuboClient(api)
        genesis_id = make_genesis(client, model_spec, init_seed, **recipe_args)
    except IPFSError as e:
        raise click.ClickException(str(e)) from None
    click.echo(genesis_id)


def register(group: click.Group) -> None:
    """Add `gridd genesis` to the gridd command group."""
    group.add_command(genesis_command)
