"""The compute job protocol: message types on one pubsub topic, and their schemas.

There is no server. A client *offers* a job (CIDs only), free workers *claim* it, the client
*assigns* it to one claimer, and the assignee sends *beats* (its lease), *progress* per epoch,
then *done* (the trained model's CID) or *failed* (a reason code and a sentence). A job that
stops beating is re-offered with a higher `attempt`; messages of an older attempt are ignored,
which is what makes "exactly one result" hold. The author of every message is the pubsub
sender (Kubo's verified `from`); no body field ever names its own author.

Every message is signed by its author's key and carries `ts`, its sending time: it travels
sealed as {"sealed": envelope bytes, "sig": signature, "by": author peer id}, and receivers
check the signature against the author and the time against a window and their replay
memory (gridd/compute/authentic.py) before they read a field of it. The author, not the
pubsub sender (the daemon that relayed it), is who a message is from: several gridd
processes share one daemon, each with its own role key (gridd/ipfs/roles.py).

A job is identified by (owner, job id): the owner is the offering client's verified sender,
so anyone can pick any job id without touching someone else's job. Workers' messages about a
job carry its `owner`; a client ignores those about jobs that are not its own.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import msgpack

from gridd.wire import Field, WireError, decode, encode, register

TOPIC = "gridd/compute/v2"  # v2: messages about a job carry its owner
TOPIC_ENV = "GRIDD_COMPUTE_TOPIC"  # another topic = a separate grid (tests, private pools)
# Compute messages only carry CIDs and a few numbers: anything bigger is refused unread.
MAX_COMPUTE_MESSAGE = 64 * 1024

AD = "compute.ad"
OFFER = "compute.offer"
CLAIM = "compute.claim"
ASSIGN = "compute.assign"
BEAT = "compute.beat"
PROGRESS = "compute.progress"
DONE = "compute.done"
FAILED = "compute.failed"
REFUSED = "compute.refused"
CANCEL = "compute.cancel"

# Data names a job may carry, each the CID of one .npy file.
DATA_KEYS = ("x", "y", "val_x", "val_y")
# model.fit arguments a worker accepts; anything else is refused (no callbacks, no code).
FIT_ARGS = ("epochs", "batch_size", "validation_split", "shuffle", "class_weight")
# Failures after which the client offers the job again instead of giving up.
RETRYABLE = frozenset({"busy", "shutdown", "fetch_failed"})

_CID = re.compile(r"^[A-Za-z0-9]{10,128}$")
_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _cid(v: Any) -> bool:
    return isinstance(v, str) and bool(_CID.match(v))


def _job_id(v: Any) -> bool:
    return isinstance(v, str) and bool(_JOB_ID.match(v))


def _data(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and {"x", "y"} <= set(v)
        and set(v) <= set(DATA_KEYS)
        and all(_cid(c) for c in v.values())
    )


def _floats(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and len(k) <= 64 and isinstance(x, (int, float))
        and not isinstance(x, bool)
        for k, x in v.items()
    )


MAX_DATASETS = 16
_DATASET = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
           "uint16", "uint32", "uint64", "bool"}


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**40


def _dataset_entry(d: Any) -> bool:
    """One advertised dataset: {name, samples, holdout, shape, dtype, num_classes, classes}."""
    return (
        isinstance(d, dict) and set(d) <= {"name", "samples", "holdout", "shape", "dtype",
                                           "num_classes", "classes"}
        and isinstance(d.get("name"), str) and bool(_DATASET.match(d["name"]))
        and _count(d.get("samples")) and _count(d.get("holdout"))
        and isinstance(d.get("shape"), (list, tuple)) and len(d["shape"]) <= 8
        and all(_count(x) for x in d["shape"])
        and d.get("dtype") in _DTYPES and _count(d.get("num_classes"))
        and isinstance(d.get("classes", ()), (list, tuple)) and len(d.get("classes", ())) <= 64
        and all(_count(c) for c in d.get("classes", ()))
    )


JOB = Field(str, max_len=64, check=_job_id, why="job id: 1-64 of [A-Za-z0-9_.-]")
MAX_ATTEMPT = 999
ATTEMPT = Field(int, check=lambda v: 0 <= v <= MAX_ATTEMPT, why="attempt must be 0..999")
OWNER = Field(str, max_len=128, check=lambda v: len(v) > 0, why="owner must be a peer id")
TS = Field((int, float), check=lambda v: math.isfinite(v) and v > 0,
           why="ts must be a positive unix time")


def register_kind(kind: str, fields: dict[str, Field]) -> None:
    """A message type of the compute topic: its fields plus the sending time every message
    carries. Other modes on the topic (gridd.federated) register theirs the same way."""
    register(kind, {**fields, "ts": TS})
    if kind not in KNOWN_TYPES:
        KNOWN_TYPES.append(kind)


KNOWN_TYPES: list[str] = []  # every type a compute-topic receiver decodes
NONNEG = Field((int, float), check=lambda v: v >= 0, why="must be >= 0")

register_kind(AD, {
    # Seconds the worker keeps a result pinned (gridd.pins): fetch it before then. Optional.
    "result_ttl": Field((int, float), required=False, check=lambda v: math.isfinite(v) and v > 0,
                        why="result_ttl must be a positive number of seconds"),
    "slots": Field(int, check=lambda v: 0 < v < 1024, why="slots must be 1..1023"),
    "free": Field(int, check=lambda v: 0 <= v < 1024, why="free must be 0..1023"),
    "cpus": Field(int, check=lambda v: v >= 0, why="cpus must be >= 0"),
    "memory": NONNEG,
    "gpus": Field(list, max_len=16, items=str),
    "tf": Field(str, max_len=32),
    "load": NONNEG,
    "running": Field(list, max_len=1024, items=str),
    "interval": Field(float, check=lambda v: 0 < v <= 600, why="interval must be in (0, 600]"),
    "restricted": Field(bool),
    # The worker's limits, so a client can refuse a job before uploading it. Optional:
    # workers from before they were advertised still parse (their limits are unknown).
    "max_job_bytes": Field(int, required=False, check=lambda v: v >= 1,
                           why="max_job_bytes must be >= 1"),
    "max_epochs": Field(int, required=False, check=lambda v: v >= 1,
                        why="max_epochs must be >= 1"),
    "max_wall_seconds": Field((int, float), required=False,
                              check=lambda v: math.isfinite(v) and v > 0,
                              why="max_wall_seconds must be a positive number"),
    "max_params": Field(int, required=False, check=lambda v: v >= 1,
                        why="max_params must be >= 1"),
    # Datasets kept on this worker for federated jobs: their description, never the data
    # (gridd.federated.datasets.LocalDataset.description). Optional: older workers have none.
    "datasets": Field(list, required=False, max_len=MAX_DATASETS, items=dict,
                      check=lambda v: all(_dataset_entry(d) for d in v),
                      why="datasets: entries need name, samples, holdout, shape, dtype, "
                      "num_classes"),
})
register_kind(OFFER, {
    "job": JOB,
    "attempt": ATTEMPT,
    "model": Field(str, check=_cid, why="model must be a CID"),
    "data": Field(dict, max_len=4, check=_data, why="data needs x and y CIDs (val_x, val_y)"),
    "fit": Field(dict, max_len=16),
    "bytes": Field(int, check=lambda v: v >= 0, why="bytes must be >= 0"),
    "exclude": Field(list, max_len=256, items=str),
})
register_kind(CLAIM, {"job": JOB, "attempt": ATTEMPT, "owner": OWNER})
register_kind(ASSIGN, {"job": JOB, "attempt": ATTEMPT, "worker": Field(str, max_len=128)})
register_kind(BEAT, {
    "job": JOB, "attempt": ATTEMPT, "owner": OWNER,
    "state": Field(str, check=lambda v: v in ("fetching", "training", "uploading"),
                   why="state must be fetching, training or uploading"),
})
register_kind(PROGRESS, {
    "job": JOB, "attempt": ATTEMPT, "owner": OWNER,
    "first": Field(int, check=lambda v: v >= 0, why="first epoch must be >= 0"),
    "logs": Field(list, max_len=1000, items=dict),
    "epochs": Field(int, check=lambda v: v >= 1, why="epochs must be >= 1"),
})
HISTORY = Field(dict, max_len=64, check=lambda h: all(isinstance(v, list) for v in h.values()),
                why="history values must be lists")
register_kind(DONE, {
    "job": JOB, "attempt": ATTEMPT, "owner": OWNER,
    "model": Field(str, check=_cid, why="model must be a CID"),
    # Inline when it fits the message cap, else the CID of a HISTORY blob (long runs).
    "history": Field(dict, required=False, max_len=64, check=HISTORY.check, why=HISTORY.why),
    "history_cid": Field(str, required=False, check=_cid, why="history_cid must be a CID"),
    "seconds": NONNEG,
})
HISTORY_BLOB = "compute.history"
MAX_HISTORY_BYTES = 64 * 1024 * 1024
register(HISTORY_BLOB, {"history": HISTORY})
register_kind(FAILED, {
    "job": JOB, "attempt": ATTEMPT, "owner": OWNER,
    "reason": Field(str, max_len=32), "error": Field(str, max_len=2000),
})
register_kind(REFUSED, {
    "job": JOB, "attempt": ATTEMPT, "owner": OWNER,
    "reason": Field(str, max_len=32), "error": Field(str, max_len=2000),
})
register_kind(CANCEL, {"job": JOB})

COMPUTE_TYPES = (AD, OFFER, CLAIM, ASSIGN, BEAT, PROGRESS, DONE, FAILED, REFUSED, CANCEL)


def pack(msg_type: str, **body: Any) -> bytes:
    """Encode one compute message, stamped with its sending time (validated against its
    schema before it leaves; the runtime's outbox seals it with a signature)."""
    body.setdefault("ts", time.time())
    return encode(msg_type, body, max_size=MAX_COMPUTE_MESSAGE - SEAL_OVERHEAD)


SEAL_OVERHEAD = 256  # map keys and a 64-byte signature, with room to spare


def seal(envelope: bytes, signature: bytes, author: str) -> bytes:
    """The signed form every compute message travels in."""
    return msgpack.packb({"sealed": envelope, "sig": signature, "by": author},
                         use_bin_type=True)


def sealer(sign: Callable[[bytes], bytes], author: str) -> Callable[[bytes], bytes]:
    """What a node's outbox applies to each compute message: sign it, seal it."""
    return lambda envelope: seal(envelope, sign(envelope), author)


def unseal(data: bytes) -> tuple[bytes, bytes, str]:
    """(envelope, signature, author) of a sealed message; WireError otherwise."""
    if len(data) > MAX_COMPUTE_MESSAGE:
        raise WireError(f"message is {len(data)} bytes, over the {MAX_COMPUTE_MESSAGE} limit")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=False)
    except Exception as e:  # msgpack raises many types
        raise WireError(f"malformed message: {type(e).__name__}") from None
    if isinstance(obj, dict) and set(obj) == {"t", "v", "b"}:
        raise WireError("unsigned: compute messages must be sealed with the sender's signature")
    if not isinstance(obj, dict) or set(obj) != {"sealed", "sig", "by"} \
            or not isinstance(obj["sealed"], bytes) or not isinstance(obj["sig"], bytes) \
            or not isinstance(obj["by"], str) or not 0 < len(obj["by"]) <= 128:
        raise WireError("malformed message: not a sealed compute message")
    return obj["sealed"], obj["sig"], obj["by"]


def pack_history(history: dict[str, list[float]]) -> bytes:
    return encode(HISTORY_BLOB, {"history": history}, max_size=MAX_HISTORY_BYTES)


def unpack_history(data: bytes) -> dict[str, list[float]]:
    """A history blob from IPFS: {metric: [floats]}; WireError if it is anything else."""
    body = decode(data, max_size=MAX_HISTORY_BYTES, expect=[HISTORY_BLOB]).body
    return {str(k): [float(x) for x in v if isinstance(x, (int, float))]
            for k, v in body["history"].items()}


def unpack(data: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a compute message; WireError carries a reason via `rejection_reason`."""
    env = decode(data, max_size=MAX_COMPUTE_MESSAGE, expect=KNOWN_TYPES)
    return env.type, env.body


def rejection_reason(data: bytes, error: WireError) -> str:
    """Metric label for a refused message: oversized, malformed, schema, or the reason an
    authentication check gave (unsigned, bad_signature, stale, future, replayed)."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, str):
        return reason
    if len(data) > MAX_COMPUTE_MESSAGE:
        return "oversized"
    text = str(error)
    if text.startswith("unsigned"):
        return "unsigned"
    if text.startswith(("malformed", "unsupported protocol", "expected bytes")):
        return "malformed"
    return "schema"


def check_fit_args(fit: dict[str, Any], max_epochs: int) -> dict[str, Any]:
    """The model.fit keyword arguments of a job, checked; ValueError names what is wrong."""
    unknown = set(fit) - set(FIT_ARGS)
    if unknown:
        raise ValueError(f"fit arguments {sorted(unknown)} are not allowed (allowed: {FIT_ARGS})")
    out: dict[str, Any] = {}
    epochs = fit.get("epochs", 1)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if epochs > max_epochs:
        raise ValueError(f"epochs={epochs} is over this worker's limit of {max_epochs}")
    out["epochs"] = epochs
    if "batch_size" in fit:
        b = fit["batch_size"]
        if not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= 1_000_000:
            raise ValueError(f"batch_size must be an integer in 1..1000000, got {b!r}")
        out["batch_size"] = b
    if "validation_split" in fit:
        s = fit["validation_split"]
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not 0.0 <= s < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {s!r}")
        out["validation_split"] = float(s)
    if "shuffle" in fit:
        if not isinstance(fit["shuffle"], bool):
            raise ValueError("shuffle must be true or false")
        out["shuffle"] = fit["shuffle"]
    if "class_weight" in fit:
        cw = fit["class_weight"]
        if not isinstance(cw, dict) or len(cw) > 100_000:
            raise ValueError("class_weight must be a map of class index to weight")
        weights: dict[int, float] = {}
        for k, v in cw.items():
            try:
                idx = int(k)
            except (TypeError, ValueError):
                raise ValueError(f"class_weight key {k!r} is not a class index") from None
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"class_weight[{k!r}] must be a non-negative number")
            weights[idx] = float(v)
        out["class_weight"] = weights
    return out


def fit_to_wire(fit: dict[str, Any]) -> dict[str, Any]:
    """Client side: make fit args msgpack-safe (class_weight keys become strings)."""
    out = dict(fit)
    if "class_weight" in out and out["class_weight"] is not None:
        out["class_weight"] = {str(int(k)): float(v) for k, v in out["class_weight"].items()}
    return {k: v for k, v in out.items() if v is not None}


def clean_logs(logs: dict[str, Any] | None) -> dict[str, float]:
    """Per-epoch Keras logs as plain floats (drops anything that is not a finite number)."""
    out: dict[str, float] = {}
    for k, v in (logs or {}).items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if f == f and abs(f) != float("inf"):
            out[str(k)[:64]] = f
    return out
