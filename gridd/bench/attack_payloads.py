"""Every byte the attack benchmark sends, crafted in one place from the documented formats.

Why by hand: the attacker must be able to send what gridd's own encoder would refuse to
build (wrong types, oversized fields, bad versions), so nothing here calls gridd.wire or
gridd.compute.protocol. The formats are those of the wire docs: an envelope is the msgpack
map {"t": type, "v": 1, "b": body}; a weights blob is the envelope "weights" whose body holds
arrays as {"dtype", "shape", "data"}; a tree transaction record is tangle.Transaction's
canonical bytes (its SHA-256 is the id): version 1 unsigned, version 2 with the issuer's
signature over the version-1 bytes (`signing_bytes()`), which peers verify before they fetch
anything the record names. A compute message travels sealed: the msgpack map {"sealed":
envelope, "sig": signature over the envelope, "by": author peer id}, and every body carries
`ts` (unix seconds). Signatures are Kubo's (`key/sign`: Ed25519 over "libp2p-key signed
message:" + data), made by the foreign node's own key through its RPC (`Signer`), so forged
records and claims pass the signature check and reach the logic behind it. When the compute
protocol gains or renames fields, this module (`ComputeSpeaker`, `COMPUTE_OWNER_TYPES`,
`wrong_schema_corpus`) is what to adapt.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import random
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from tangle import Transaction

PROTOCOL_VERSION = 1
# libp2p pubsub refuses messages of 1 MiB and more *including* its framing (from, seqno,
# topic, signature, key); measured with Kubo 0.43: 1 MiB - 256 bytes of data arrives with a
# one-letter topic, so 1 KiB of room covers gridd's longest topic.
FLOOD_BYTES = 1_048_576 - 1024
TREE_TOPIC_PREFIX = "gridd/tree/v1/"
# Message types whose body names the job owner (the offering client's peer id): the
# compute protocol v2 (gridd/compute/v2, commit c3af3ed). ComputeSpeaker also learns the
# shape from honest traffic, so a later change costs at most the first few messages.
COMPUTE_OWNER_TYPES: frozenset[str] = frozenset({
    "compute.claim", "compute.beat", "compute.progress", "compute.done", "compute.failed",
    "compute.refused"})
Signer = Callable[[bytes], bytes]  # data -> signature (the foreign node's key/sign)


# -- envelopes ----------------------------------------------------------------------------------


def envelope(msg_type: Any, body: Any, version: Any = PROTOCOL_VERSION) -> bytes:
    """A gridd envelope with anything in it (no schema check: that is the point)."""
    return msgpack.packb({"t": msg_type, "v": version, "b": body}, use_bin_type=True)


def peek(data: bytes) -> tuple[str, dict[str, Any]] | None:
    """(type, body) of a well-formed envelope heard on a topic; None for anything else."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # msgpack raises many types
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        return None
    body = obj.get("b")
    return (obj["t"], body) if isinstance(body, dict) else None


def seal(envelope_bytes: bytes, signature: bytes, author: str) -> bytes:
    """The sealed form every compute message travels in (the signature is not checked)."""
    return msgpack.packb({"sealed": envelope_bytes, "sig": signature, "by": author},
                         use_bin_type=True)


def open_sealed(data: bytes) -> tuple[str, str, dict[str, Any]] | None:
    """(author, type, body) of a sealed compute message heard on the topic, unverified:
    the attacker only reads what it hears. None for anything else."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("sealed"), bytes) \
            or not isinstance(obj.get("by"), str):
        return None
    inner = peek(obj["sealed"])
    return None if inner is None else (obj["by"], *inner)


def padded_envelope(msg_type: str, field: str, size: int, extra: dict[str, Any] | None = None
                    ) -> bytes:
    """An envelope of exactly `size` bytes: `field` is a binary string padding it out."""
    body = dict(extra or {})
    body[field] = b""
    base = len(envelope(msg_type, body))
    pad = size - base
    for _ in range(4):  # the bin header grows with the length: settle in a few steps
        body[field] = b"\xa5" * max(0, pad)
        got = len(envelope(msg_type, body))
        if got == size:
            break
        pad -= got - size
    return envelope(msg_type, body)


# -- tree ---------------------------------------------------------------------------------------


def tree_topic(genesis_id: str) -> str:
    return TREE_TOPIC_PREFIX + genesis_id


def random_id(rng: random.Random) -> str:
    """A well-formed transaction id (64 lowercase hex) that names nothing."""
    return rng.randbytes(32).hex()


def tx_record(parents: list[str], weights_cid: str, issuer: str,
              metadata: dict[str, Any] | None = None, created_at: float | None = None,
              sign: Signer | None = None) -> tuple[str, bytes]:
    """(id, canonical record) of a transaction: unsigned (version 1) without `sign`, else
    signed over its signing bytes (version 2). Peers accept it only if `issuer` signed it."""
    tx = Transaction.create(parents, weights_cid, issuer,
                            time.time() if created_at is None else created_at,
                            metadata=metadata or {"accuracy": 0.99, "samples": 500,
                                                  "client_epochs": 1})
    if sign is not None:
        tx = tx.signed(sign(tx.signing_bytes()))
    return tx.id, tx.canonical_bytes()


def tree_tx(record: bytes) -> bytes:
    return envelope("tree.tx", {"record": record})


def tree_heads(heads: list[str], size: int = 1_000_000) -> bytes:
    return envelope("tree.heads", {"heads": heads, "size": size})


def record_fields(record: bytes) -> dict[str, Any] | None:
    """parents/weights_cid/issuer of a version-1 or -2 record heard on the wire (else None)."""
    try:
        obj = msgpack.unpackb(record, raw=False, strict_map_key=False)
    except Exception:
        return None
    if not isinstance(obj, list) or (len(obj), obj[0]) not in ((7, 1), (8, 2)):
        return None
    return {"id": hashlib.sha256(record).hexdigest(), "parents": obj[1],
            "weights_cid": obj[2], "issuer": obj[3]}


def record_cid(tx_id: str) -> str:
    """Where a transaction's record lives in IPFS: the raw CID of its SHA-256 (= its id)."""
    raw = b"\x01\x55\x12\x20" + bytes.fromhex(tx_id)
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


# -- weights ------------------------------------------------------------------------------------


def weights_blob(arrays: list[np.ndarray], meta: dict[str, Any] | None = None) -> bytes:
    """A `weights` envelope: (dtype, shape, little-endian bytes) per array."""
    body: dict[str, Any] = {"arrays": [
        {"dtype": a.dtype.name, "shape": list(a.shape),
         "data": np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"))).tobytes()}
        for a in arrays]}
    if meta:
        body["meta"] = meta
    return envelope("weights", body)


def weights_spec(blob: bytes) -> list[tuple[tuple[int, ...], str]]:
    """(shape, dtype) of each array of a weights blob (the genesis's, fetched by the attacker)."""
    kind_body = peek(blob)
    if kind_body is None or kind_body[0] != "weights":
        raise ValueError("not a weights envelope")
    return [(tuple(a["shape"]), str(a["dtype"])) for a in kind_body[1]["arrays"]]


def nan_weights(spec: list[tuple[tuple[int, ...], str]], salt: int) -> bytes:
    """Right count, shapes and dtype; NaN and inf inside (salt makes each blob distinct)."""
    arrays = []
    for shape, dtype in spec:
        a = np.full(shape, np.nan, dtype=dtype)
        if a.size:
            a.flat[0] = np.inf
            a.flat[-1] = salt
        arrays.append(a)
    return weights_blob(arrays)


def wrong_shape_weights(spec: list[tuple[tuple[int, ...], str]], salt: int) -> bytes:
    """Every array one row/column too big, and one array missing: finite, plausible values."""
    rng = np.random.default_rng(salt)
    arrays = [rng.normal(0, 0.1, tuple(d + 1 for d in shape)).astype(dtype)
              for shape, dtype in spec[:-1] or spec]
    return weights_blob(arrays)


def huge_weights(spec: list[tuple[tuple[int, ...], str]], salt: int,
                 size: int = 16 * 1024 * 1024) -> bytes:
    """The right arrays plus an extra one: a blob of ~`size` bytes, far over the genesis."""
    rng = np.random.default_rng(salt)
    arrays = [rng.normal(0, 0.1, shape).astype(dtype) for shape, dtype in spec]
    arrays.append(np.full(size // 4, salt, dtype=np.float32))
    return weights_blob(arrays)


# -- compute ------------------------------------------------------------------------------------


# Messages a worker sends about a job: the ones that may name the job's owner.
WORKER_REPORTS = frozenset({"compute.claim", "compute.beat", "compute.progress", "compute.done",
                            "compute.failed", "compute.refused"})


class ComputeSpeaker:
    """Builds compute-topic messages shaped like the honest ones, sealed and signed.

    Starts from COMPUTE_OWNER_TYPES and then copies what honest workers do: once a claim
    (beat, done...) with or without an `owner` field has been heard, that is the shape this
    speaker uses for that type. The harness lets it listen from the warm-up on, so it
    speaks the protocol of the code under test before the first attack starts. Every
    message gets a fresh `ts` and is sealed with the signature of `sign_as`'s key (the
    foreign node's own), so it passes the signature, window and replay checks and reaches
    the protocol logic; before `sign_as` it is sealed with an empty signature.
    """

    def __init__(self, owner_types: frozenset[str] = COMPUTE_OWNER_TYPES) -> None:
        self.owner_types = set(owner_types)
        self.learned: set[str] = set()
        self.sign: Signer | None = None
        self.author = ""

    def sign_as(self, sign: Signer, author: str) -> None:
        self.sign, self.author = sign, author

    def speaking_as(self, sign: Signer, author: str) -> ComputeSpeaker:
        """The same speaker (shapes learned so far and from now on) for another identity."""
        other = copy.copy(self)
        other.sign_as(sign, author)
        return other

    def learn(self, msg_type: str, body: dict[str, Any]) -> None:
        if msg_type not in WORKER_REPORTS:
            return
        self.learned.add(msg_type)
        if "owner" in body:
            self.owner_types.add(msg_type)
        else:
            self.owner_types.discard(msg_type)

    def sealed(self, envelope_bytes: bytes, author: str | None = None) -> bytes:
        """Seal with our signature; `author` other than ours is a forged seal."""
        sig = self.sign(envelope_bytes) if self.sign is not None else b""
        return seal(envelope_bytes, sig, author or self.author)

    def _msg(self, msg_type: str, owner: str | None, **body: Any) -> bytes:
        if owner is not None and msg_type in self.owner_types:
            body["owner"] = owner
        body.setdefault("ts", time.time())
        return self.sealed(envelope(msg_type, body))

    def ad(self, slots: int = 8) -> bytes:
        return self._msg("compute.ad", None, slots=slots, free=slots, cpus=64,
                         memory=float(2**40), gpus=["H100"], tf="2.20.0", load=0.0, running=[],
                         interval=1.0, restricted=False)

    def offer(self, job: str, attempt: int, model: str, data: dict[str, str],
              fit: dict[str, Any] | None = None, nbytes: int = 1024,
              exclude: list[str] | None = None) -> bytes:
        return self._msg("compute.offer", None, job=job, attempt=attempt, model=model,
                         data=data, fit=fit or {"epochs": 1}, bytes=nbytes,
                         exclude=exclude or [])

    def claim(self, job: str, attempt: int, owner: str | None = None) -> bytes:
        return self._msg("compute.claim", owner, job=job, attempt=attempt)

    def assign(self, job: str, attempt: int, worker: str) -> bytes:
        return self._msg("compute.assign", None, job=job, attempt=attempt, worker=worker)

    def beat(self, job: str, attempt: int, owner: str | None = None,
             state: str = "training") -> bytes:
        return self._msg("compute.beat", owner, job=job, attempt=attempt, state=state)

    def done(self, job: str, attempt: int, model: str, owner: str | None = None,
             epochs: int = 1) -> bytes:
        """A result with the history of a good training (what a careful liar reports)."""
        return self._msg("compute.done", owner, job=job, attempt=attempt, model=model,
                         history=plausible_history(epochs), seconds=1.0)

    def failed(self, job: str, attempt: int, reason: str, owner: str | None = None) -> bytes:
        return self._msg("compute.failed", owner, job=job, attempt=attempt, reason=reason,
                         error="forged by the attack benchmark")

    def cancel(self, job: str) -> bytes:
        return self._msg("compute.cancel", None, job=job)


def plausible_history(epochs: int) -> dict[str, list[float]]:
    """Loss falling from 1.5 to 0.15 and accuracy rising to 0.96 over `epochs` epochs."""
    n = max(1, min(int(epochs), 1000))
    steps = [i / max(1, n - 1) for i in range(n)] if n > 1 else [1.0]
    return {"loss": [1.5 * 0.1 ** t for t in steps],
            "accuracy": [0.5 + 0.46 * t for t in steps]}


# -- malformed input ----------------------------------------------------------------------------


def random_payloads(rng: random.Random, count: int = 256, max_len: int = 65_536) -> list[bytes]:
    """Random byte strings, log-uniform lengths 1..max_len (some happen to start like msgpack)."""
    out = []
    for _ in range(count):
        n = int(round(2 ** rng.uniform(0, np.log2(max_len))))
        out.append(rng.randbytes(max(1, n)))
    return out


def _nested(depth: int) -> Any:
    node: Any = []
    for _ in range(depth):
        node = [node]
    return node


def wrong_schema_corpus(rng: random.Random, now: float | None = None
                        ) -> list[tuple[str, bytes]]:
    """(kind, bytes): valid msgpack, right envelope, wrong bodies. Kinds: "tree" (send as
    is), "compute" (an envelope to seal and sign before sending, so that the signature
    passes and the schema is what refuses it) and "compute_raw" (send as is: unsigned, or
    a seal that is itself malformed).

    One case per way a body can be wrong: missing field, wrong type, out-of-range value,
    unknown field, wrong version, body not a map, unknown type, plus records and arrays that
    pass the envelope check and are wrong one level down; for compute also a `ts` that is
    missing, not a number, hours old (`stale`) or far ahead (`future`).
    """
    hx = random_id(rng)
    bad_record = msgpack.packb([1, "not-a-list", 5, None, "x", 7, {}], use_bin_type=True)
    noncanonical = msgpack.packb([1, [hx], "bafyfake", "issuer", 1.0, "", []],
                                 use_bin_type=True) + b"\x00"
    tree: list[Any] = [
        envelope("tree.tx", {}),
        envelope("tree.tx", {"record": 12345}),
        envelope("tree.tx", {"record": "a string, not bytes"}),
        envelope("tree.tx", {"record": b"\x01" * 70_000}),
        envelope("tree.tx", {"record": bad_record}),
        envelope("tree.tx", {"record": noncanonical}),
        envelope("tree.tx", {"record": bad_record, "extra": True}),
        envelope("tree.tx", {"record": bad_record}, version=2),
        envelope("tree.tx", {"record": bad_record}, version="1"),
        envelope("tree.tx", [1, 2, 3]),
        envelope("tree.heads", {"heads": "not-a-list"}),
        envelope("tree.heads", {"heads": [1, 2, 3]}),
        envelope("tree.heads", {"heads": ["ZZ" * 32]}),
        envelope("tree.heads", {"heads": [hx] * 65}),
        envelope("tree.heads", {"heads": [hx], "size": "big"}),
        envelope("tree.hello", {"size": -1.5, "nonce": "x"}),
        envelope("tree.recipe", {"recipe": {"architecture": "keras"}}),
        envelope("weights", {"arrays": [{"dtype": "object", "shape": [1], "data": b"x"}]}),
        envelope("no.such.type", {}),
        envelope(12, {}),
        envelope("tree.tx", _nested(400)),
        msgpack.packb({1: "int keys", 2: b"x"}, use_bin_type=True),
        msgpack.packb({"t": "tree.tx", "v": 1}, use_bin_type=True),
        msgpack.packb([1, "tree.tx", {"record": b""}], use_bin_type=True),
        msgpack.packb(msgpack.ExtType(42, b"ext"), use_bin_type=True),
    ]
    job = {"job": "j" + hx[:15], "attempt": 0}
    cid = "bafkrei" + "a" * 52
    ts = time.time() if now is None else now
    owner = {"owner": "12D3KooW" + "x" * 44}

    def c(kind: Any, body: Any, version: Any = PROTOCOL_VERSION) -> bytes:
        """A compute envelope whose body carries a valid `ts` (unless it sets its own)."""
        if isinstance(body, dict):
            body = {"ts": ts, **body}
        return envelope(kind, body, version)

    compute: list[Any] = [
        c("compute.offer", {**job, "model": cid, "data": {"x": cid}, "fit": {},
                            "bytes": 1, "exclude": []}),
        c("compute.offer", {**job, "model": "not a cid!", "data": {"x": cid, "y": cid},
                            "fit": {}, "bytes": 1, "exclude": []}),
        c("compute.offer", {**job, "model": cid, "data": {"x": cid, "y": cid},
                            "fit": "epochs=5", "bytes": -5, "exclude": [1, 2]}),
        c("compute.offer", {"job": ["list"], "attempt": 10**9, "model": cid,
                            "data": {}, "fit": {}, "bytes": 0, "exclude": []}),
        c("compute.claim", {"job": "x" * 65, "attempt": 0, **owner}),
        c("compute.claim", {"job": "ok", "attempt": -1, **owner}),
        c("compute.claim", {"job": "ok", "attempt": True, **owner}),
        c("compute.claim", {**job}),  # no owner
        c("compute.claim", {**job, "owner": ""}),
        c("compute.assign", {**job, "worker": 12345}),
        c("compute.beat", {**job, **owner, "state": "sleeping"}),
        c("compute.progress", {**job, **owner, "first": -1, "logs": ["a"], "epochs": 0}),
        c("compute.done", {**job, **owner, "model": cid, "history": {"loss": 5},
                           "seconds": -1}),
        c("compute.failed", {**job, **owner, "reason": 5, "error": None}),
        c("compute.refused", {**job, **owner, "reason": "x" * 33, "error": "e" * 3000}),
        c("compute.cancel", {"job": None}),
        c("compute.ad", {"slots": 0, "free": -1, "cpus": "many", "memory": float("nan"),
                         "gpus": "H100", "tf": 2, "load": -1, "running": {},
                         "interval": 0, "restricted": "no"}),
        c("compute.ad", {}),
        c("compute.offer", {**job}, version=0),
        c("compute.claim", "not a map"),
        c("tree.tx", {"record": b"wrong topic"}),
        c("compute.cancel", _nested(400)),
        envelope("compute.claim", {**job, **owner}),  # no ts
        c("compute.claim", {**job, **owner, "ts": "now"}),
        c("compute.claim", {**job, **owner, "ts": -1.0}),
        c("compute.claim", {**job, **owner, "ts": float("inf")}),
        c("compute.claim", {**job, **owner, "ts": ts - 3 * 3600}),  # valid but stale
        c("compute.claim", {**job, **owner, "ts": ts + 3 * 3600}),  # valid but future
        msgpack.packb({"t": "compute.claim", "v": 1, "b": {**job, "ts": ts}, "x": 1},
                      use_bin_type=True),
        msgpack.packb(None),
        msgpack.packb(3.14),
    ]
    good = c("compute.cancel", {"job": job["job"]})
    raw: list[bytes] = [
        good,  # a plain envelope: unsigned
        msgpack.packb({"sealed": good, "sig": b"", "by": ""}, use_bin_type=True),
        msgpack.packb({"sealed": good, "sig": b"\x00" * 64, "by": "x" * 129},
                      use_bin_type=True),
        msgpack.packb({"sealed": "text", "sig": b"\x00" * 64, "by": owner["owner"]},
                      use_bin_type=True),
        msgpack.packb({"sealed": good, "sig": b"\x00" * 64, "by": owner["owner"], "x": 1},
                      use_bin_type=True),
        msgpack.packb({"sealed": good, "sig": b"\x00" * 64, "by": "not-a-peer-id"},
                      use_bin_type=True),
    ]
    return ([("tree", b) for b in tree] + [("compute", b) for b in compute]
            + [("compute_raw", b) for b in raw])


# -- job files ----------------------------------------------------------------------------------


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


PICKLED_NONE = b"\x80\x02N."  # the pickle stream of None (protocol 2), written by hand


def pickled_npy() -> bytes:
    """An object-dtype .npy: loading it needs pickle. Built by hand (a header declaring
    dtype object, then a pickle stream of None), so no pickling runs anywhere here; the
    point is whether a worker unpickles at all, not what a pickle could do."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    buf.write(PICKLED_NONE)
    return buf.getvalue()


def job_arrays(rows: int = 64, features: int = 64, seed: int = 0) -> tuple[bytes, bytes]:
    """x (rows, features) float32 and y (rows,) int64 as .npy: valid data for a digits model."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, features), dtype=np.float32)
    y = rng.integers(0, 10, rows).astype(np.int64)
    return npy(x), npy(y)


def _keras_bytes(build: Any) -> bytes:
    import keras

    with tempfile.TemporaryDirectory(prefix="gridd-attack-") as tmp:
        path = Path(tmp) / "model.keras"
        model = build(keras)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.save(path)
        return path.read_bytes()


def safe_keras(features: int = 64) -> bytes:
    """A plain compiled Input -> Dense(10) model: a job that loads fine."""
    return _keras_bytes(lambda k: k.Sequential([k.Input((features,)),
                                                k.layers.Dense(10, activation="softmax")]))


def lambda_keras(features: int = 64) -> bytes:
    """A compiled model with a Lambda layer: loading it runs Python bytecode from the file."""
    return _keras_bytes(lambda k: k.Sequential([
        k.Input((features,)), k.layers.Lambda(lambda x: x * 1.0),
        k.layers.Dense(10, activation="softmax")]))


def _rewrite(node: Any, small_in: int, big_in: int, small_units: int, big_units: int) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "units" and v == small_units:
                out[k] = big_units
            else:
                out[k] = _rewrite(v, small_in, big_in, small_units, big_units)
        return out
    if isinstance(node, list):
        if len(node) == 2 and node[0] is None and node[1] == small_in:
            return [None, big_in]
        return [_rewrite(v, small_in, big_in, small_units, big_units) for v in node]
    return node


def param_bomb_keras(inputs: int = 16384, units: int = 8192) -> bytes:
    """A few-KB .keras whose config.json declares Input(inputs) -> Dense(units).

    Built from a real 3 -> 5 model whose config is rewritten: only plain Keras layers (so no
    name check refuses it), but building it allocates inputs x units float32 (512 MiB for
    16384 x 8192) before the tiny weights file is even looked at.
    """
    small = _keras_bytes(lambda k: k.Sequential([k.Input((3,)),
                                                 k.layers.Dense(5, activation="softmax")]))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(small)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = _rewrite(json.loads(data), 3, inputs, 5, units)
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    return out.getvalue()


def cycle(items: list[Any], rng: random.Random) -> Iterator[Any]:
    """Endless shuffled rounds over `items` (seeded)."""
    items = list(items)
    while True:
        rng.shuffle(items)
        yield from items
