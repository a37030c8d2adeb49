"""`gridd storage`: what gridd keeps on this node, and applying the retention policy now.

Status: the Kubo repo's size against Datastore.StorageMax, gridd's pinned bytes by kind
(read from its named pins, see gridd.pins), and the size of each tree peer's tangle.log.
`--prune` applies the retention policy of each tangle found in the state directories (or
the one named by --genesis / --state-dir) and unpins compute results whose TTL passed;
`--gc` then runs Kubo's garbage collection so unpinned blocks go at once.

This runs beside a live peer, so it only reads the peer's files and never rewrites its log
(the peer compacts its own log), and it unpins only weights of transactions it read in the
log: a blob pinned by a transaction the peer inserted a moment ago is left alone.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from gridd import pins
from gridd.ipfs import IPFSError, KuboClient
from gridd.ipfs.address import API_ENV, DEFAULT_API


@dataclass(frozen=True)
class TangleDir:
    """One tree peer's state directory."""

    path: Path
    genesis_id: str

    @property
    def log(self) -> Path:
        from gridd.tree.state import LOG_FILE

        return self.path / LOG_FILE


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def state_root() -> Path:
    from gridd.tree.cli import DEFAULT_STATE_ROOT, STATE_ROOT_ENV

    return Path(os.environ.get(STATE_ROOT_ENV, str(DEFAULT_STATE_ROOT))).expanduser()


def find_tangles(root: Path, state_dir: str | None, genesis: str | None) -> list[TangleDir]:
    """State directories to look at: the one given, or those under the root (one per
    identity, <root>/<genesis16>/<peer id>, or <root>/<genesis16> as older gridd had it)."""
    from gridd.tree.state import STATE_FILE, PeerState

    if state_dir is not None:
        candidates = [Path(state_dir)]
    else:
        base = root / genesis[:16] if genesis is not None else root
        candidates = sorted({f.parent for pattern in (STATE_FILE, f"*/{STATE_FILE}",
                                                      f"*/*/{STATE_FILE}")
                             for f in base.glob(pattern)}) if base.is_dir() else []
    found = []
    for path in candidates:
        try:
            gid = PeerState.from_json((path / STATE_FILE).read_text()).genesis_id
        except (OSError, ValueError):
            if genesis is None or state_dir is None:
                continue
            gid = genesis
        if genesis is not None and gid != genesis:
            if state_dir is not None:
                raise click.UsageError(f"{path} belongs to tangle {gid}, not {genesis}")
            continue
        found.append(TangleDir(path, gid))
    return found


def pinned_by_kind(client: KuboClient) -> dict[str, tuple[int, int]]:
    """{kind: (pins, bytes)} over every recursive pin, by gridd's names."""
    named = client.pin_ls_names()
    sizes = client.dag_sizes(sorted(named))
    out: dict[str, tuple[int, int]] = {}
    for cid, name in named.items():
        kind = pins.kind_of(name)
        count, total = out.get(kind, (0, 0))
        out[kind] = (count + 1, total + sizes.get(cid, 0))
    return out


def print_status(client: KuboClient, tangles: list[TangleDir]) -> None:
    from tangle import TangleLog

    stat = client.repo_stat(count_objects=False)
    share = 100 * stat.size / stat.storage_max if stat.storage_max else 0.0
    click.echo(f"Kubo repo:   {human(stat.size)} of StorageMax {human(stat.storage_max)} "
               f"({share:.1f} %)")
    click.echo("Pinned (by pin name):")
    click.echo(f"  {'kind':34} {'pins':>7} {'bytes':>10}")
    for kind, (count, total) in sorted(pinned_by_kind(client).items()):
        click.echo(f"  {kind:34} {count:7d} {human(total):>10}")
    click.echo("Tangle logs:")
    if not tangles:
        click.echo("  (none found)")
    for t in tangles:
        log = TangleLog(t.log)
        records = len(log.load())
        kind = f"compacted at depth {log.horizon.depth}" if log.horizon else "full history"
        click.echo(f"  {t.genesis_id[:12]}  {human(log.size()):>9}  {records} transactions, "
                   f"{kind}  ({t.log})")


def prune_tangle(client: KuboClient, t: TangleDir, config: str | None) -> str:
    """Apply one tangle's retention policy from its log and state; a line to print."""
    from gridd.transport import IpfsStore
    from gridd.tree.genesis import load_genesis
    from gridd.tree.retention import Policy, keep_weights, to_unpin
    from gridd.tree.settings import load_tree_settings
    from gridd.tree.state import load_state
    from tangle import TangleLog, rebuild

    settings = load_tree_settings(config)
    policy = Policy(settings.retention_window, settings.retention_own,
                    settings.reference_window)
    if not policy.enabled:
        return f"tangle {t.genesis_id[:12]}: RETENTION_WINDOW off, everything stays pinned"
    store = IpfsStore(client)
    listed = store.pins(pins.tree_prefix(t.genesis_id))  # first: see retention.to_unpin
    genesis = load_genesis(store, t.genesis_id, timeout=settings.timeout)
    log = TangleLog(t.log)
    txs = log.load()
    tangle = rebuild(genesis.transaction, txs, horizon=log.horizon)
    state = load_state(t.path, t.genesis_id)
    keep = keep_weights(tangle, state.published, policy)
    names = {pins.tree(t.genesis_id, "weights")}
    if state.peer_id:
        names.add(pins.own(t.genesis_id, state.peer_id))
    known = {tx.weights_cid for tx in tangle.transactions()}
    drop = to_unpin(listed, keep, names, known)
    failed = 0
    for cid in drop:
        try:
            store.unpin(cid)
        except IPFSError:
            failed += 1
    held = sum(1 for n in listed.values() if n in names)
    return (f"tangle {t.genesis_id[:12]}: unpinned {len(drop) - failed} of {held} weights "
            f"blobs (window {policy.window}, own {policy.own})"
            + (f", {failed} failed" if failed else ""))


def prune_results(client: KuboClient) -> str:
    listed = client.pin_ls_names(pins.RESULT_PREFIX)
    drop = pins.expired_results(listed, time.time())
    for cid in drop:
        client.pin_rm(cid)
    return f"compute results: unpinned {len(drop)} expired of {len(listed)}"


@click.command("storage")
@click.option("--api", envvar=API_ENV, default=DEFAULT_API, show_default=True,
              help=f"Kubo RPC address, multiaddr or URL (env {API_ENV}).")
@click.option("--genesis", default=None, help="Only this tangle (its state dir by default).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="A tree peer's state directory (default: every one under $GRIDD_TREE_STATE "
              "or ~/.gridd/tree, as <genesis>/<peer id>).")
@click.option("--config", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Tree settings file (RETENTION_WINDOW, ...), as start_worker --tree takes.")
@click.option("--prune", is_flag=True, help="Apply the retention policy now.")
@click.option("--gc", is_flag=True, help="Then run Kubo's garbage collection (repo gc).")
def storage(api: str, genesis: str | None, state_dir: str | None, config: str | None,
            prune: bool, gc: bool) -> None:
    """What gridd keeps on this node: repo size, pinned bytes by kind, tangle logs."""
    try:
        client = KuboClient(api)
        client.id()
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--api") from None
    except IPFSError as e:
        click.echo(str(e), err=True)
        sys.exit(1)
    tangles = find_tangles(state_root(), state_dir, genesis)
    try:
        if prune:
            for t in tangles:
                try:
                    click.echo(prune_tangle(client, t, config))
                except (ValueError, OSError) as e:
                    click.echo(f"tangle {t.genesis_id[:12]}: cannot prune: {e}", err=True)
            click.echo(prune_results(client))
        if gc:
            before = client.repo_stat(count_objects=False).size
            removed = client.repo_gc()
            after = client.repo_stat(count_objects=False).size
            click.echo(f"garbage collection: {removed} blocks, {human(before - after)} freed")
        print_status(client, tangles)
    except IPFSError as e:
        click.echo(str(e), err=True)
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(storage)
