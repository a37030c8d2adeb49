"""Attack benchmark (issue 9): `python -m gridd.bench.attack [--attacks a,b] [--seconds 40]`.

A foreign node (a plain Kubo daemon driven by raw RPC, no gridd code on its sending path)
attacks honest real-Kubo nodes: 3 `start_worker --tree` peers on the digits data with the
lab's fast TRAINING_INTERVAL and 2 `start_worker --compute` workers, each with its own
daemon, all swarm-connected. Every phase starts a fresh tangle (same seeds), so a clean
phase of the same length is the baseline for each attack. Per attack it reports:

* honest tree peers' transactions published per minute (gridd_tx_published_total) relative
  to the clean phase — target >= 80 %;
* peak RSS growth of tree peers, workers and their Kubo daemons (psutil; the client's
  daemon too) — target <= 100 MB;
* rejection counts by reason: every metric whose name holds rejected/refused/dropped, plus
  the results the legitimate client's audit refused (gridd.compute.audit);
* crashes (any honest process exited) — target 0;
* whether a legitimate Client.fit from a separate honest client daemon, issued 2 s into
  the attack, returns a trained model (judged on its data) within the attack window —
  target: it does.

The foreign node signs what it sends with its own keys (Kubo key/sign): peers verify
signatures before they fetch anything, so only signed records and claims reach the fetch
paths and the compute protocol; `unsigned` and `forged_signer` attack the check itself.
`--trust-workers` gives the legitimate client a trust list of the honest workers' identities.

Prints the table and writes bench-results/attack.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from gridd.bench import save, table
from gridd.bench.attack_foreign import ForeignNode, Watch
from gridd.bench.attack_grid import COUNTER_WORDS, GROUPS, Grid, Sampler
from gridd.bench.attack_kinds import ATTACKS, Attack, AttackContext
from gridd.bench.attack_payloads import ComputeSpeaker, open_sealed

TARGETS = {"throughput_ratio": 0.8, "rss_growth_mb": 100.0, "crashes": 0, "fit": "completes"}
CLEAN = "clean"
CLEAN_END = "clean (end)"
Log = Callable[[str], None]


@dataclass
class Options:
    attacks: list[str] = field(default_factory=lambda: list(ATTACKS))
    seconds: float = 40.0
    seed: int = 0
    tree_peers: int = 3
    workers: int = 2
    fit: bool = True
    fit_epochs: int = 5
    fit_delay: float = 2.0
    trust_workers: bool = False  # the legitimate client uses Client(workers=[honest ids])
    rss_limit_mb: float = 4000.0  # stop an attack early rather than exhaust a shared machine
    cooldown: float = 30.0
    clean_end: bool = True  # a second clean phase at the end: the baseline is their mean
    stop_grace: float = 10.0  # seconds a tree peer gets to honour SIGTERM after a phase
    workdir: Path | None = None
    keep: bool = False

    def validate(self) -> None:
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown:
            raise ValueError(f"--attacks: unknown {unknown}; choose from {sorted(ATTACKS)}")
        if self.seconds <= 0:
            raise ValueError("--seconds: must be > 0")
        if self.fit and self.seconds <= self.fit_delay + 1:
            raise ValueError(f"--seconds: the fit needs more than {self.fit_delay + 1:.0f} s")
        if self.tree_peers < 1:
            raise ValueError("--tree-peers: need at least 1")
        if self.fit and self.workers < 1:
            raise ValueError("--workers: the legitimate fit needs at least 1 worker")


def _counters(samples: dict[str, dict[str, float]]) -> dict[str, float]:
    """Sum over processes of every rejected/refused/dropped sample."""
    out: dict[str, float] = {}
    for per in samples.values():
        for k, v in per.items():
            if any(w in k.split("{")[0] for w in COUNTER_WORDS):
                out[k] = out.get(k, 0.0) + v
    return out


def _delta(end: dict[str, float], base: dict[str, float]) -> dict[str, int]:
    return {k: int(v - base.get(k, 0.0)) for k, v in sorted(end.items())
            if v - base.get(k, 0.0) > 0}


def _published(samples: dict[str, dict[str, float]], names: list[str]) -> float:
    return sum(samples.get(n, {}).get("gridd_tx_published_total", 0.0) for n in names)


def _short(counts: dict[str, int]) -> str:
    """gridd_tx_rejected_total{reason=malformed} -> tx_rejected.malformed=12."""
    parts = []
    for k, v in counts.items():
        name, _, labels = k.partition("{")
        name = name.removeprefix("gridd_").removesuffix("_total")
        label = labels.rstrip("}").split("=", 1)[-1] if labels else ""
        parts.append(f"{name}{'.' + label if label else ''}={v}")
    return " ".join(parts)


def run_phase(grid: Grid, node: ForeignNode, sampler: Sampler, speaker: ComputeSpeaker,
              name: str, attack: Attack | None, opts: Options, log: Log) -> dict[str, Any]:
    """One attack (or the clean baseline) on a fresh tangle; returns its row."""
    t_setup = time.monotonic()
    tangle = grid.open_tangle(name)
    tree_ids = {grid.peer_ids[grid.tree_daemon(i)] for i in range(grid.tree_peers)}
    worker_ids = {grid.peer_ids[grid.worker_daemon(i)] for i in range(grid.workers)}
    meshed = (node.wait_topic_peers(tangle.topic, tree_ids)
              and node.wait_topic_peers(grid.compute_topic, worker_ids))
    stop = threading.Event()
    ctx = AttackContext(node, tangle.genesis_id, tangle.topic, grid.compute_topic, stop,
                        opts.seed, random.Random(f"{opts.seed}:{name}"), speaker=speaker)
    errors: list[str] = []
    notes: list[str] = [] if meshed else ["foreign node did not see every honest subscriber"]
    try:
        if attack is not None and attack.prepare is not None:
            ctx.prepared = attack.prepare(ctx)
        sent0 = node.counters()
        tree_names = [p.name for p in tangle.peers]
        base = sampler.begin()
        t0 = time.monotonic()
        setup_s = t0 - t_setup

        def attacker() -> None:
            try:
                if attack is not None:
                    attack.run(ctx)
            except Exception:
                errors.append(traceback.format_exc(limit=3))

        threads = [threading.Thread(target=attacker, name=f"attack:{name}", daemon=True)]
        fit_result: dict[str, Any] = {}
        client = grid.client
        if client is not None:
            def legit() -> None:
                if stop.wait(opts.fit_delay):
                    return
                window = opts.seconds - opts.fit_delay
                answer = client.ask({"cmd": "fit", "timeout": window}, timeout=window + 30)
                fit_result.update(answer or {"completed": False, "status": "no answer"})

            threads.append(threading.Thread(target=legit, name="legit-fit", daemon=True))
        for t in threads:
            t.start()
        while time.monotonic() - t0 < opts.seconds:
            if sampler.over_limit:
                notes.append(f"stopped early: {sampler.over_limit}")
                break
            stop.wait(0.25)
        stop.set()
        elapsed = time.monotonic() - t0
        for t in threads:
            t.join(30)
            if t.is_alive():
                notes.append(f"thread {t.name} still running 30 s after the phase ended")
        end = sampler.end()
        crashed = grid.crashed()
        sent = [a - b for a, b in zip(node.counters(), sent0, strict=True)]
    finally:
        stop.set()
        sampler.halt()
        ctx.close()
    if fit_result and fit_result.get("worker") in {node.peer_id, *ctx.identities}:
        fit_result["status"] += " (the job went to the foreign node)"
    published = _published(end, tree_names) - _published(base, tree_names)
    rejections = _delta(_counters(end), _counters(base))
    # The client has no metrics endpoint: its refusals (gridd.compute.audit) come with the
    # fit's answer, counted like the honest nodes' rejections.
    for reason, n in ((fit_result or {}).get("results_refused") or {}).items():
        rejections[f"gridd_client_results_refused_total{{reason={reason}}}"] = int(n)
    row: dict[str, Any] = {
        "attack": name,
        "seconds": elapsed,
        "tx_published": int(published),
        "tx_per_min": published / elapsed * 60,
        "rss_growth_mb": sampler.growth_mb(),
        "rss_per_process": sampler.per_process_mb(),
        "rejections": rejections,
        "crashed": crashed,
        "fit": fit_result or None,
        "sent_messages": sent[0],
        "send_errors": sent[1],
        "sent_mb": sent[2] / 2**20,
        "signed": sent[3],
        "attack_stats": dict(ctx.stats),
        "attack_errors": errors,
        "notes": notes,
        "genesis": tangle.genesis_id,
    }
    log(f"  {name}: {row['tx_published']} tx in {elapsed:.0f}s, sent {sent[0]} msgs "
        f"({row['sent_mb']:.0f} MB), crashed {crashed or 'none'}, fit "
        f"{(fit_result or {}).get('status', '-')}, rejections {_short(rejections) or '-'}")
    for e in errors:
        log(f"  attack error:\n{e}")
    t_down = time.monotonic()
    killed = grid.close_tangle(grace=opts.stop_grace)
    if killed:
        row["notes"].append(f"{killed} ignored SIGTERM for {opts.stop_grace:.0f} s: killed")
    row["slow_stop"] = killed
    healed = grid.heal()
    if healed:
        row["notes"].append(f"restarted {healed}")
    row["cooldown_s"] = _cool_down(grid, sampler, opts.cooldown)
    row["setup_s"], row["teardown_s"] = setup_s, time.monotonic() - t_down
    return row


def _learn(speaker: ComputeSpeaker, data: bytes) -> None:
    got = open_sealed(data)
    if got is not None:
        speaker.learn(got[1], got[2])


def _failed_row(name: str, error: Exception, grid: Grid) -> dict[str, Any]:
    """The row of a phase that broke before measuring (e.g. honest peers would not start)."""
    return {"attack": name, "seconds": 0.0, "tx_published": 0, "tx_per_min": 0.0,
            "rss_growth_mb": {g: 0.0 for g in GROUPS}, "rss_per_process": {},
            "rejections": {}, "crashed": grid.crashed(), "fit": None, "sent_messages": 0,
            "send_errors": 0, "sent_mb": 0.0, "signed": 0, "attack_stats": {},
            "attack_errors": [],
            "notes": [f"phase failed: {type(error).__name__}: {error}"[:2000]],
            "slow_stop": [], "setup_s": None, "teardown_s": None, "cooldown_s": None}


def _cool_down(grid: Grid, sampler: Sampler, limit: float) -> float:
    """Let one phase's aftermath end before the next begins: until, for 2 s in a row, no
    rejection counter moves, no worker runs a job (gridd_jobs_running, where it exists) and
    the workers use under half a core. At most `limit` seconds; returns the time it took."""
    t0 = time.monotonic()
    procs = {}
    for _name, group, pid in grid.tracked():
        if group == "worker":
            try:
                procs[pid] = psutil.Process(pid)
                procs[pid].cpu_percent(None)
            except psutil.Error:
                continue
    last = _counters(sampler.scrape_all())
    quiet_since: float | None = None
    while time.monotonic() - t0 < limit:
        time.sleep(1.0)
        samples = sampler.scrape_all()
        now = _counters(samples)
        running = sum(v for per in samples.values() for k, v in per.items()
                      if k == "gridd_jobs_running")
        cpu = 0.0
        for p in procs.values():
            try:
                cpu += p.cpu_percent(None)
            except psutil.Error:
                continue
        quiet = now == last and running == 0 and cpu < 50.0
        last = now
        if not quiet:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 2.0:
            break
    return time.monotonic() - t0


def _judge(row: dict[str, Any], baseline: float | None) -> None:
    """Add the ratio to the clean baseline (tx/min) and whether each target is met."""
    ratio = None
    if baseline:
        ratio = row["tx_per_min"] / baseline
    row["throughput_ratio"] = ratio
    worst = max(row["rss_growth_mb"].values(), default=0.0)
    fit = row["fit"]
    row["met"] = {
        "throughput": ratio is not None and ratio >= TARGETS["throughput_ratio"],
        "rss": worst <= TARGETS["rss_growth_mb"],
        "crashes": not row["crashed"],
        "fit": None if fit is None else bool(fit.get("completed")),
    }


def run_benchmark(opts: Options, log: Log = print) -> dict[str, Any]:
    """Start the grid, run the clean phase then each attack, stop everything; the results."""
    opts.validate()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="gridd-attack-"))
    grid = Grid(workdir, tree_peers=opts.tree_peers, workers=opts.workers, seed=opts.seed,
                fit_epochs=opts.fit_epochs if opts.fit else None,
                trust_workers=opts.trust_workers)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    node: ForeignNode | None = None
    listening: Watch | None = None
    # The attacker listens to the compute topic from the start, as an outsider would, and so
    # learns the message shapes of the protocol under test during the warm-up.
    speaker = ComputeSpeaker()
    try:
        log(f"starting {2 + opts.tree_peers + opts.workers} Kubo daemons, "
            f"{opts.workers} compute workers and the honest client in {workdir}")
        grid.start()
        node = ForeignNode(grid.api(Grid.FOREIGN))
        speaker.sign_as(node.sign, node.peer_id)
        listening = node.watch(grid.compute_topic)
        listening.listen(lambda h: _learn(speaker, h.data))
        listening.wait_open()
        sampler = Sampler(grid, opts.rss_limit_mb)
        if grid.client is not None:
            log("warming up the workers with one job each")
            if grid.client.ask({"cmd": "warm_up", "workers": opts.workers}, 300) is None:
                raise RuntimeError(f"warm-up failed:\n{grid.client.tail()}")
        phases: list[tuple[str, Attack | None]] = [(CLEAN, None)]
        phases += [(a, ATTACKS[a]) for a in opts.attacks]
        if opts.clean_end and opts.attacks:
            phases.append((CLEAN_END, None))
        for i, (name, attack) in enumerate(phases):
            log(f"[{i + 1}/{len(phases)}] {name}: "
                f"{attack.what if attack else 'no attack (baseline)'}, {opts.seconds:.0f} s")
            try:
                rows.append(run_phase(grid, node, sampler, speaker, name, attack, opts, log))
            except Exception as e:  # a phase that cannot even start is a result, not the end
                log(f"  {name}: phase failed: {type(e).__name__}: {e}")
                rows.append(_failed_row(name, e, grid))
                grid.close_tangle(grace=opts.stop_grace)
                grid.heal()
    finally:
        if listening is not None:
            listening.close()
        if node is not None:
            node.close()
        grid.stop()
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    cleans = [r["tx_per_min"] for r in rows if r["attack"] in (CLEAN, CLEAN_END)
              and r["seconds"] > 0]
    baseline = sum(cleans) / len(cleans) if cleans else None
    for row in rows:
        _judge(row, baseline)
    opt = asdict(opts)
    opt["workdir"] = str(opts.workdir) if opts.workdir else None
    return {"options": opt, "targets": TARGETS, "commit": _commit(), "rows": rows,
            "clean_tx_per_min": baseline,
            "owner_field_in": sorted(speaker.owner_types),
            "wall_seconds": time.monotonic() - started, "foreign_peer": node.peer_id
            if node else None}


def _commit() -> str | None:
    """The commit measured: $GRIDD_BENCH_COMMIT (a run from an exported tree), else git's."""
    if os.environ.get("GRIDD_BENCH_COMMIT"):
        return os.environ["GRIDD_BENCH_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _fit_cell(fit: dict[str, Any] | None) -> str:
    if fit is None:
        return "-"
    if fit.get("completed"):
        refused = sum((fit.get("results_refused") or {}).values())
        return f"ok {fit['seconds']:.0f}s" + (f" ({refused} refused)" if refused else "")
    status = str(fit.get("status", "?"))
    return "bogus: foreign worker" if "foreign node" in status else status[:32]


def summary(result: dict[str, Any]) -> tuple[str, str]:
    """The main table and the rejections table, house style."""
    rows = []
    for r in result["rows"]:
        g = r["rss_growth_mb"]
        fit = r["fit"]
        rows.append({
            "attack": r["attack"],
            "tx/min": r["tx_per_min"],
            "vs clean": r["throughput_ratio"],
            **{f"rss {k}": g.get(k, 0.0) for k in (*GROUPS, "client_kubo")},
            "crashes": len(r["crashed"]),
            "fit": _fit_cell(fit),
            "sent": r["sent_messages"],
            "MB sent": r["sent_mb"],
            "targets missed": " ".join(k for k, v in r["met"].items() if v is False) or "-",
        })
    main = table(rows)
    rej = table([{"attack": r["attack"], "rejected / refused / dropped / throttled (delta)":
                  _short(r["rejections"]) or "-"} for r in result["rows"]])
    return main, rej


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attacks", default=",".join(ATTACKS),
                    help=f"comma-separated, from: {', '.join(ATTACKS)}")
    ap.add_argument("--seconds", type=float, default=40.0, help="length of each phase")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tree-peers", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-fit", action="store_true", help="skip the legitimate Client.fit")
    ap.add_argument("--trust-workers", action="store_true",
                    help="the legitimate client gives jobs only to the honest workers "
                         "(Client(workers=[...])); default: to anyone, like most notebooks")
    ap.add_argument("--no-clean-end", action="store_true",
                    help="no second clean phase at the end (baseline = the first one alone)")
    ap.add_argument("--rss-limit-mb", type=float, default=4000.0,
                    help="stop an attack early when an honest process grows past this")
    ap.add_argument("--keep", type=Path, default=None, metavar="DIR",
                    help="run in DIR and keep logs and state there")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default bench-results)")
    args = ap.parse_args(argv)
    opts = Options(attacks=[a for a in args.attacks.split(",") if a], seconds=args.seconds,
                   seed=args.seed, tree_peers=args.tree_peers, workers=args.workers,
                   fit=not args.no_fit, trust_workers=args.trust_workers,
                   rss_limit_mb=args.rss_limit_mb, clean_end=not args.no_clean_end,
                   workdir=args.keep,
                   keep=args.keep is not None)
    try:
        opts.validate()
    except ValueError as e:
        ap.error(str(e))
    logging.basicConfig(level=logging.ERROR)  # the harness's own chatter stays off the table
    t0 = time.monotonic()
    result = run_benchmark(opts, log=lambda s: print(f"{time.monotonic() - t0:6.1f}s {s}",
                                                      flush=True))
    main_table, rej_table = summary(result)
    print(f"\nattacks from a foreign Kubo node on {opts.tree_peers} tree peers + "
          f"{opts.workers} compute workers, {opts.seconds:.0f} s each (commit "
          f"{result['commit']})")
    print(f"clean baseline {result['clean_tx_per_min'] or 0:.0f} tx/min (mean of the clean "
          "phases); targets: throughput >= "
          f"{TARGETS['throughput_ratio']:.0%} of clean, RSS growth <= "
          f"{TARGETS['rss_growth_mb']:.0f} MB per process, 0 crashes, fit completes")
    print(main_table)
    print("\nrejections by reason during each phase (sums over the honest processes)")
    print(rej_table)
    notes = [(r["attack"], n) for r in result["rows"] for n in r["notes"] + r["attack_errors"]]
    if notes:
        print("\nnotes")
        for attack, note in notes:
            print(f"  {attack}: {note}")
    path = save("attack", result, out=args.out)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
