"""The legitimate data scientist of the attack benchmark, in a process of its own.

Why a process: a notebook does not share a Python interpreter with an attacker. Run inside
the harness, the honest Client would compete for the GIL with the attack's publishing
threads, read its subscription late, and lose messages in Kubo's 32-message buffer: a
failure of the benchmark, not of gridd. So the harness starts this once (TensorFlow loaded
once) and sends it one JSON command per line on stdin; it answers one JSON line on stdout:

    {"cmd": "warm_up", "workers": 2, "id": 1}     one job per worker at once
    {"cmd": "fit", "timeout": 38.0, "id": 2}      a fresh gridd.Client, one small Keras fit
    {"cmd": "quit"}

Answers echo the command's id, so a late answer is never taken for the next one's.

Each fit uses a fresh Client (as a notebook re-run would), so one phase's damage to a
client's state does not leak into the next phase. A fit's answer says whether the model it
returned is trained (its accuracy on the client's data, judged here, independently of the
client's own audit) and how many results the client's audit refused (gridd.compute.audit).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

TRAINED_ACCURACY = 0.5  # the digits MLP after 5 epochs: ~0.9; untrained: ~0.1


class LegitClient:
    """gridd.Client.fit of a digits MLP, seeded, on the honest client daemon."""

    def __init__(self, api: str, topic: str, seed: int, epochs: int,
                 trusted: list[str] | None = None) -> None:
        from gridd.data import load_digits_split

        self.api, self.topic, self.seed, self.epochs = api, topic, seed, epochs
        self.trusted = trusted
        self.x, self.y, _, _ = load_digits_split()

    def model(self) -> Any:
        import keras

        keras.utils.set_random_seed(self.seed)
        m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
        return m

    def client(self) -> Any:
        """A fresh gridd.Client; with a trust list only if one was given (the default client
        gives jobs to any worker on the topic, which is what most notebooks do)."""
        from gridd import Client

        if self.trusted:
            return Client(self.api, topic=self.topic, workers=self.trusted)
        return Client(self.api, topic=self.topic)

    def warm_up(self, workers: int) -> dict[str, Any]:
        """One job per worker at once, so no phase pays a worker's first-job cost."""
        t0 = time.monotonic()
        with self.client() as grid:
            grid.workers(wait=30, min_workers=workers)
            jobs = [grid.fit(self.model(), self.x, self.y, epochs=1, wait=False,
                             progress=False) for _ in range(workers)]
            for job in jobs:
                job.result(timeout=180)
        return {"seconds": time.monotonic() - t0}

    def fit(self, timeout: float) -> dict[str, Any]:
        from gridd.compute.dispatch import JobFailed

        t0 = time.monotonic()
        out: dict[str, Any] = {"completed": False, "seconds": None, "worker": None}
        with self.client() as grid:
            job = grid.fit(self.model(), self.x, self.y, epochs=self.epochs, batch_size=32,
                           wait=False, progress=False)
            try:
                model, hist = job.result(timeout=max(0.1, timeout - (time.monotonic() - t0)))
            except TimeoutError:
                out["status"] = f"timeout ({job.status})"
                out["worker"] = job.worker
                job.cancel()
                return out
            except JobFailed as e:
                out["status"] = f"failed: {e.reason}"
                out["worker"] = e.worker
                return out
            finally:
                out["results_refused"] = dict(grid.dispatcher.results_refused)
                out["attempts"] = job.remote.attempt + 1
            out["seconds"] = time.monotonic() - t0
            out["worker"] = hist.worker
            accuracy = float(model.evaluate(self.x, self.y, verbose=0,
                                            return_dict=True)["accuracy"])
            out["accuracy"] = accuracy
            if accuracy < TRAINED_ACCURACY:
                out["status"] = "bogus result"  # e.g. a forged done: no training happened
                return out
            out.update(completed=True, status="ok")
            return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="honest client of the attack benchmark")
    ap.add_argument("--api", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--trust", action="append", default=[], metavar="PEER_ID",
                    help="give jobs only to these workers (Client(workers=...))")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    client = LegitClient(args.api, args.topic, args.seed, args.epochs, args.trust or None)
    client.model()  # import TF before saying ready
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd: Any = {}
        try:
            cmd = json.loads(line)
            if cmd["cmd"] == "quit":
                break
            if cmd["cmd"] == "warm_up":
                answer = client.warm_up(int(cmd["workers"]))
            elif cmd["cmd"] == "fit":
                answer = client.fit(float(cmd["timeout"]))
            else:
                answer = {"error": f"unknown command {cmd['cmd']!r}"}
        except Exception as e:  # the client broke under attack: that is a result too
            cmd = cmd if isinstance(cmd, dict) else {}
            answer = {"completed": False, "status": f"error: {type(e).__name__}: {e}"[:300]}
        answer["id"] = cmd.get("id")
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
