"""Federated jobs on real workers vs the same rounds in one process (issue 12's benchmark).

Setup (the tree benchmark's and the Flower anchor's): sklearn digits / 16, stratified 20 %
test split (random_state 0), 10 workers with a Dirichlet(alpha) label partition (seed 0),
Input(64) -> Dense(32, relu) -> Dense(10, softmax), SGD 0.1, batch 16, 1 local epoch,
30 rounds, every worker every round. Each worker is a real `start_worker --compute` with its
own Kubo daemon; the coordinator is a Client on an 11th daemon. The baseline runs the same
rounds in this process with the workers' own training code (gridd.federated.simulation).

Rows: FedAvg at alpha 0.5 (the targets: accuracy within 0.5 pt of the baseline, job wall
time <= 22.5 s, per-round overhead <= 100 ms at p50), FedProx and FedMedian at alpha 0.1,
and Krum / trimmed mean with 2 of the 10 workers sending random weights. Prints a table,
saves bench-results/federated.json.

    python -m gridd.bench.federated [--rounds 30] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from gridd.bench import machine, save, table

WORKERS = 10
SHUFFLE_SEEDS = (0, 1, 2)
FLOWER = {"accuracy": 0.928, "wall_s": 45.0, "memory_gb": 2.7}  # measured here (issue 12)


def model(seed: int = 0) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.Input(shape=(64,)), keras.layers.Dense(32, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
    m.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def partitions(alpha: float) -> list[tuple[np.ndarray, np.ndarray]]:
    from gridd.data import dirichlet_partition, load_digits_split

    x, y, _, _ = load_digits_split()
    return [(x[i], y[i]) for i in dirichlet_partition(y, WORKERS, alpha, 0)]


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a live process (its peak resident memory), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def baseline(alpha: float, strategy: Any, rounds: int, attackers: int = 0) -> list[float]:
    """Test accuracy per round of the same rounds in this process, mean of SHUFFLE_SEEDS."""
    from gridd.bench.fed_attacker import tampered
    from gridd.data import load_digits_split
    from gridd.federated.simulation import simulate

    _, _, xt, yt = load_digits_split()
    rng = np.random.default_rng(1)

    def tamper(i: int, w: list[np.ndarray]) -> list[np.ndarray]:
        return tampered(w, "random", rng) if i < attackers else w

    curves = []
    for seed in SHUFFLE_SEEDS:  # the mean over shuffles: one run's order moves it ~0.5 pt
        h = simulate(model(), partitions(alpha), rounds=rounds, strategy=strategy,
                     batch_size=16, validation_data=(xt, yt),
                     tamper=tamper if attackers else None, seed=seed)
        curves.append(h["val_accuracy"])
    return [float(v) for v in np.mean(curves, axis=0)]


class Grid:
    """11 daemons, 10 honest workers keeping both partitions, 2 attackers on demand."""

    def __init__(self, log_dir: Path) -> None:
        from gridd.compute.local import WorkerProcess
        from gridd.ipfs.cluster import LocalCluster

        self.t0 = time.perf_counter()
        self.log_dir = log_dir
        self.cluster = LocalCluster(WORKERS + 1).start()
        self.topic = f"gridd-bench-fed-{uuid.uuid4().hex[:8]}"
        for alpha in (0.5, 0.1):
            for i, (x, y) in enumerate(partitions(alpha)):
                np.savez(log_dir / f"a{alpha}-{i}.npz", x=x, y=y)
        self.workers = [self._spawn(i, WorkerProcess) for i in range(WORKERS)]
        self.attackers: list[Any] = []
        for w in self.workers:
            w.wait_ready()
        self.ready_s = time.perf_counter() - self.t0

    def _spawn(self, i: int, cls: Any, program: list[str] | None = None) -> Any:
        args = ["--dataset", f"digits={self.log_dir / f'a0.5-{i}.npz'}",
                "--dataset", f"digits_a01={self.log_dir / f'a0.1-{i}.npz'}", "--holdout", "0"]
        w = cls(self.cluster.clients[i + 1].address.multiaddr, self.topic, args,
                heartbeat=1.0, program=program)
        return w.start(self.log_dir)

    def add_attackers(self, n: int) -> list[str]:
        """n random-weight workers holding the shares of honest workers 0..n-1."""
        import sys

        from gridd.compute.local import WorkerProcess

        for i in range(n):
            prog = [sys.executable, "-m", "gridd.bench.fed_attacker", "--attack", "random"]
            self.attackers.append(self._spawn(i, WorkerProcess, prog))
        for a in self.attackers:
            a.wait_ready()
        return [_peer(a) for a in self.attackers]

    def memory_mb(self, client_pid: int) -> float:
        pids = [w.proc.pid for w in self.workers + self.attackers if w.proc is not None]
        pids += [d.process.pid for d in self.cluster.daemons if d.process is not None]
        return sum(peak_rss_mb(p) for p in pids + [client_pid])

    def stop(self) -> None:
        for w in self.workers + self.attackers:
            w.stop()
        self.cluster.stop()


def _peer(worker: Any) -> str:
    for line in worker.log().splitlines():
        if "READY " in line:
            return line.split("READY ", 1)[1].strip()
    raise RuntimeError("worker printed no READY line")


def run_job(grid: Grid, dataset: str, strategy: Any, rounds: int,
            workers: list[str] | None = None) -> dict[str, Any]:
    from gridd import Client
    from gridd.data import load_digits_split

    _, _, xt, yt = load_digits_split()
    client = Client(grid.cluster.clients[0].address.multiaddr, topic=grid.topic,
                    workers=workers)
    try:
        client.workers(wait=10, min_workers=WORKERS)
        t0 = time.perf_counter()
        _, history = client.federated_fit(
            model(), dataset, rounds=rounds, local_epochs=1, batch_size=16,
            strategy=strategy, min_workers=WORKERS, fraction=1.0, evaluate=False,
            validation_data=(xt, yt), progress=False, round_timeout=60)
        wall = time.perf_counter() - t0
    finally:
        client.close()
    return {"history": history, "wall_s": wall}


def row(name: str, alpha: float, result: dict[str, Any], base: list[float]) -> dict[str, Any]:
    h = result["history"].history
    acc = h["val_accuracy"]
    over = h["overhead_seconds"]
    return {
        "case": name, "alpha": alpha, "final_acc": round(acc[-1], 4),
        "best_acc": round(max(acc), 4), "baseline_acc": round(base[-1], 4),
        "gap_pt": round(100 * (acc[-1] - base[-1]), 2), "job_wall_s": round(result["wall_s"], 2),
        "round_p50_s": round(statistics.median(h["round_seconds"]), 3),
        "overhead_p50_ms": round(1000 * statistics.median(over), 1),
        "overhead_p90_ms": round(1000 * float(np.percentile(over, 90)), 1),
        "timing_p50_ms": {k: round(1000 * statistics.median(
            r["timing"][k] for r in result["history"].rounds if k in r.get("timing", {})), 1)
            for k in result["history"].rounds[-1].get("timing", {})},
        "acc_per_round": [round(a, 4) for a in acc], "baseline_per_round": [
            round(a, 4) for a in base],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="FedAvg row only")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # ten TensorFlow workers share 2 cores: one thread each, instead of 2 x 10 fighting
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    from gridd.strategies import FedAvg, FedMedian, FedProx, Krum, TrimmedMean

    print(f"load average at start: {machine()['loadavg']}")
    t_start = time.perf_counter()
    log_dir = Path(tempfile.mkdtemp(prefix="gridd-bench-fed-"))
    grid = Grid(log_dir)
    rows: list[dict[str, Any]] = []
    try:
        print(f"10 workers ready in {grid.ready_s:.1f}s")
        fedavg = run_job(grid, "digits", FedAvg(), args.rounds)
        end_to_end = time.perf_counter() - t_start
        memory = grid.memory_mb(os.getpid())
        rows.append(row("FedAvg", 0.5, fedavg, baseline(0.5, FedAvg(), args.rounds)))
        if not args.quick:
            for name, strat in (("FedProx mu=0.01", FedProx(0.01)), ("FedMedian", FedMedian())):
                res = run_job(grid, "digits_a01", strat, args.rounds)
                rows.append(row(name, 0.1, res, baseline(0.1, strat, args.rounds)))
            bad = grid.add_attackers(2)
            honest = [_peer(w) for w in grid.workers[2:]]
            for name, make in (("Krum m=6, 2/10 random", lambda: Krum(f=2, m=6)),
                               ("TrimmedMean beta=0.2, 2/10 random",
                                lambda: TrimmedMean(beta=0.2))):
                res = run_job(grid, "digits", make(), args.rounds, workers=honest + bad)
                rows.append(row(name, 0.5, res, baseline(0.5, make(), args.rounds,
                                                         attackers=2)))
            res = run_job(grid, "digits", FedAvg(), args.rounds, workers=honest + bad)
            rows.append(row("FedAvg, 2/10 random (no defence)", 0.5, res,
                            baseline(0.5, FedAvg(), args.rounds, attackers=2)))
    finally:
        grid.stop()
    main_row = rows[0]
    summary = {
        "workers_ready_s": round(grid.ready_s, 1), "end_to_end_s": round(end_to_end, 1),
        "job_wall_s": main_row["job_wall_s"], "summed_peak_memory_mb": round(memory),
        "targets": {
            "accuracy_within_0.5pt": abs(main_row["gap_pt"]) <= 0.5,
            "job_wall_le_22.5s": main_row["job_wall_s"] <= 22.5,
            "overhead_p50_le_100ms": main_row["overhead_p50_ms"] <= 100,
        },
        "flower_anchor": FLOWER,
    }
    print(table(rows, ["case", "alpha", "final_acc", "best_acc", "baseline_acc", "gap_pt",
                       "job_wall_s", "round_p50_s", "overhead_p50_ms", "overhead_p90_ms"]))
    print(table([{k: v for k, v in summary.items() if k not in ("targets", "flower_anchor")}]))
    print("targets:", summary["targets"])
    print("FedAvg test accuracy per round:", main_row["acc_per_round"])
    print("FedAvg round timing, p50 ms:", main_row["timing_p50_ms"])
    path = save("federated", {"rows": rows, "summary": summary, "rounds": args.rounds,
                              "loadavg_end": os.getloadavg(), "quick": args.quick})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
