"""A compute worker that answers federated rounds with bad weights, for tests and benchmarks.

`python -m gridd.bench.fed_attacker --attack random|nan|wrong_shape|scaled [start_worker
--compute flags]` runs a real worker (its own identity, datasets, ads) whose updates are
replaced: random weights (a model-poisoning worker), NaN, a wrong shape, or its honest
update scaled by 100. It exists to show that coordinators refuse what they must refuse
and that robust strategies outvote the rest; it is not installed as a command.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from gridd.federated.participant import Participant

ATTACKS = ("random", "nan", "wrong_shape", "scaled")


def tampered(weights: list[np.ndarray], attack: str, rng: np.random.Generator
             ) -> list[np.ndarray]:
    if attack == "random":
        return [rng.normal(0, 1, w.shape).astype(w.dtype) for w in weights]
    if attack == "nan":
        return [np.full_like(w, np.nan) for w in weights]
    if attack == "wrong_shape":
        return [np.zeros((*w.shape, 2), w.dtype) for w in weights]
    if attack == "scaled":
        return [w * 100 for w in weights]
    raise ValueError(f"attack must be one of {ATTACKS}")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--attack" not in args:
        raise SystemExit(f"usage: --attack {{{','.join(ATTACKS)}}} [start_worker flags]")
    i = args.index("--attack")
    attack = args[i + 1]
    del args[i:i + 2]
    if attack not in ATTACKS:
        raise SystemExit(f"--attack must be one of {ATTACKS}")
    rng = np.random.default_rng(0)

    class Attacker(Participant):
        def outgoing(self, weights: list[Any]) -> list[Any]:
            return tampered(weights, attack, rng)

    import gridd.compute.worker as worker_module
    from gridd.cli_modes import start_worker

    worker_module.Participant = Attacker  # type: ignore[misc]
    start_worker(args)


if __name__ == "__main__":
    main()
