"""Federated-job messages: they travel on the compute topic, sealed and signed like the rest.

A federated job is driven by its coordinator (the notebook that called federated_fit; its
verified author is the job's *owner*). Per round it publishes one *task* naming the selected
workers, the global weights by CID and the local-training settings; each selected worker
answers with an *update* (its new weights by CID, its sample count and metrics) or says it
*declined* (a reason code and a sentence). After every round the coordinator publishes a
*progress* event that anyone may follow. Worker messages carry the job's owner, so nobody can
answer, or spoil, someone else's job by reusing its id.
"""

from __future__ import annotations

import math
import re
from typing import Any

from gridd.compute.protocol import JOB, OWNER, register_kind
from gridd.wire import Field

TASK = "fed.task"
UPDATE = "fed.update"
DECLINED = "fed.declined"
PROGRESS = "fed.progress"
WORKER_KINDS = (UPDATE, DECLINED)

MAX_ROUNDS = 100_000
MAX_TRIES = 100  # tries of one round (a round with too few updates is run again)
MAX_SELECTED = 500
# Weights blobs up to this size also ride inside the message (signed with it): a small
# model's round then needs no IPFS round trip at all. Larger ones travel by CID only.
INLINE_MAX = 32 * 1024  # workers named in one task: 500 peer ids fit the message cap
STATES = ("running", "done", "failed", "cancelled")

_CID = re.compile(r"^[A-Za-z0-9]{10,128}$")
DATASET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _cid(v: Any) -> bool:
    return isinstance(v, str) and bool(_CID.match(v))


def _finite_map(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and len(k) <= 64 and isinstance(x, (int, float))
        and not isinstance(x, bool) and math.isfinite(x) for k, x in v.items())


def _int(lo: int, hi: int, what: str) -> Field:
    return Field(int, check=lambda v: lo <= v <= hi, why=f"{what} must be {lo}..{hi}")


CID = Field(str, check=_cid, why="must be a CID")
ROUND = _int(0, MAX_ROUNDS, "round")
TRY = _int(0, MAX_TRIES, "try")
METRICS = Field(dict, max_len=16, check=_finite_map, why="metrics must map names to finite "
                "numbers")
SECONDS = Field((int, float), check=lambda v: math.isfinite(v) and v >= 0,
                why="seconds must be >= 0")

register_kind(TASK, {
    "job": JOB, "round": ROUND, "try": TRY,
    # One per run of the coordinator: a job resumed from its checkpoint counts its rounds
    # again from there, and must not look like a repeat of what the last run sent.
    "session": Field(str, max_len=32, check=lambda v: len(v) > 0, why="session: 1-32 chars"),
    "model": CID,  # the .keras file (architecture, loss, optimizer); fetched once per job
    "weights": CID,  # the global weights (gridd.wire weights blob)
    "inline": Field(bytes, required=False, max_len=INLINE_MAX),  # the same blob, if small
    "bytes": Field(int, check=lambda v: 0 < v < 2**40, why="bytes must be positive"),
    "dataset": Field(str, max_len=64, check=lambda v: bool(DATASET_NAME.match(v)),
                     why="dataset: 1-64 of [A-Za-z0-9_.-]"),
    "epochs": _int(0, 1000, "epochs"),  # local epochs; 0 = evaluate only
    "batch_size": _int(1, 1_000_000, "batch_size"),
    "options": METRICS,  # local-training options of the strategy, e.g. {"mu": 0.01}
    "evaluate": Field(bool),
    "workers": Field(list, max_len=MAX_SELECTED, items=str,
                     check=lambda v: all(0 < len(w) <= 128 for w in v),
                     why="workers must be peer ids"),
    "timeout": Field((int, float), check=lambda v: math.isfinite(v) and 0 < v <= 86_400,
                     why="timeout must be in (0, 86400] seconds"),
})
register_kind(UPDATE, {
    "job": JOB, "owner": OWNER, "round": ROUND, "try": TRY,
    "weights": Field(str, required=False, check=_cid, why="weights must be a CID"),
    "inline": Field(bytes, required=False, max_len=INLINE_MAX),  # or the blob itself
    "samples": _int(0, 2**40, "samples"),
    "metrics": METRICS,  # training loss/accuracy of the last local epoch
    "eval": Field(dict, required=False, max_len=16, check=_finite_map,
                  why="eval must map names to finite numbers"),  # received model, held out
    "seconds": SECONDS,  # compute time: evaluating and training, not transfers
})
register_kind(DECLINED, {
    "job": JOB, "owner": OWNER, "round": ROUND, "try": TRY,
    "reason": Field(str, max_len=32), "error": Field(str, max_len=2000),
})
register_kind(PROGRESS, {
    "job": JOB, "round": ROUND, "rounds": _int(1, MAX_ROUNDS, "rounds"),
    "state": Field(str, check=lambda v: v in STATES, why=f"state must be one of {STATES}"),
    "model": CID,
    "weights": Field(str, required=False, check=_cid, why="weights must be a CID"),
    "bytes": Field(int, required=False, check=lambda v: 0 < v < 2**40,
                   why="bytes must be positive"),
    "dataset": Field(str, max_len=64),
    "strategy": Field(str, max_len=64),
    "workers": _int(0, 1_000_000, "workers"),
    "metrics": METRICS,
    "error": Field(str, required=False, max_len=2000),
})
