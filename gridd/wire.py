"""The wire format: versioned msgpack envelopes with per-type schemas, and a numpy codec.

Every byte that arrives from the network goes through `decode`, which either returns an
`Envelope` whose body matches the registered schema or raises `WireError` — never anything else.
No pickle anywhere: arrays travel as (dtype from a whitelist, shape, raw little-endian bytes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
# Kubo drops pubsub messages over ~1 MiB *silently*; stay well under with room for framing.
MAX_MESSAGE_BYTES = 1_000_000 - 16_384
# Blobs stored in IPFS (weights, jobs) may be larger; readers still cap them.
MAX_BLOB_BYTES = 512 * 1024 * 1024
MAX_ARRAY_DIMS = 8
ALLOWED_DTYPES = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "float32", "float64"]
)


class WireError(ValueError):
    """The one exception for any input the wire layer refuses (malformed, oversized, bad schema)."""


@dataclass(frozen=True)
class Field:
    """One body field: its type, whether it is required, and bounds."""

    kind: type | tuple[type, ...]
    required: bool = True
    max_len: int | None = None
    items: type | tuple[type, ...] | None = None
    check: Callable[[Any], bool] | None = None
    why: str = ""


@dataclass(frozen=True)
class Schema:
    fields: Mapping[str, Field]
    allow_extra: bool = False


@dataclass(frozen=True)
class Envelope:
    type: str
    version: int
    body: dict[str, Any] = field(default_factory=dict)


_SCHEMAS: dict[str, Schema] = {}


def register(msg_type: str, fields: Mapping[str, Field], allow_extra: bool = False) -> None:
    """Declare a message type; decode refuses types nobody registered."""
    _SCHEMAS[msg_type] = Schema(dict(fields), allow_extra)


def registered_types() -> list[str]:
    return sorted(_SCHEMAS)


def _is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for k in kinds:
        if k is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if k is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return math.isfinite(value)
        if k is type(None) and value is None:
            return True
        if k not in (int, float, type(None)) and isinstance(value, k):
            return True
    return False


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def validate(msg_type: str, body: Any) -> dict[str, Any]:
    schema = _SCHEMAS.get(msg_type)
    if schema is None:
        raise WireError(f"unknown message type {msg_type!r}")
    if not isinstance(body, dict):
        raise WireError(f"{msg_type}: body must be a map, got {type(body).__name__}")
    for name, f in schema.fields.items():
        if name not in body:
            if f.required:
                raise WireError(f"{msg_type}: missing field {name!r}")
            continue
        value = body[name]
        if not _is_kind(value, f.kind):
            raise WireError(
                f"{msg_type}.{name}: expected {_kind_name(f.kind)}, got {type(value).__name__}"
            )
        if f.max_len is not None and hasattr(value, "__len__") and len(value) > f.max_len:
            raise WireError(f"{msg_type}.{name}: longer than {f.max_len}")
        if f.items is not None and isinstance(value, list):
            for item in value:
                if not _is_kind(item, f.items):
                    raise WireError(
                        f"{msg_type}.{name}: items must be {_kind_name(f.items)}, "
                        f"got {type(item).__name__}"
                    )
        if f.check is not None and not f.check(value):
            raise WireError(f"{msg_type}.{name}: {f.why or 'invalid value'}")
    if not schema.allow_extra:
        extra = set(body) - set(schema.fields)
        if extra:
            raise WireError(f"{msg_type}: unknown fields {sorted(map(str, extra))}")
    return body


def encode(msg_type: str, body: Mapping[str, Any], max_size: int = MAX_MESSAGE_BYTES) -> bytes:
    """Validate and pack; refuse (before sending anything) when over max_size."""
    validate(msg_type, dict(body))
    try:
        data = msgpack.packb(
            {"t": msg_type, "v": PROTOCOL_VERSION, "b": dict(body)}, use_bin_type=True
        )
    except (TypeError, ValueError, OverflowError) as e:
        raise WireError(f"{msg_type}: cannot encode body: {e}") from e
    if len(data) > max_size:
        raise WireError(f"{msg_type}: message is {len(data)} bytes, over the {max_size} limit")
    return data


def decode(
    data: bytes, max_size: int = MAX_MESSAGE_BYTES, expect: Sequence[str] | None = None
) -> Envelope:
    """Unpack and check an envelope. Any problem raises WireError; nothing else escapes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise WireError(f"message is {len(data)} bytes, over the {max_size} limit")
    try:
        obj = msgpack.unpackb(
            bytes(data), raw=False, strict_map_key=True, use_list=True,
            ext_hook=_refuse_ext, timestamp=0,
        )
    except WireError:
        raise
    except Exception as e:  # msgpack raises many types (ExtraData, FormatError, StackError...)
        raise WireError(f"malformed message: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict) or set(obj) != {"t", "v", "b"}:
        raise WireError("malformed message: not a gridd envelope")
    msg_type, version, body = obj["t"], obj["v"], obj["b"]
    if not isinstance(msg_type, str):
        raise WireError("malformed message: type is not a string")
    if not _is_kind(version, int):
        raise WireError("malformed message: version is not an integer")
    if version != PROTOCOL_VERSION:
        raise WireError(
            f"unsupported protocol version {version} (this gridd speaks {PROTOCOL_VERSION}); "
            "upgrade the older peer"
        )
    if expect is not None and msg_type not in expect:
        raise WireError(f"unexpected message type {msg_type!r} (expected {list(expect)})")
    return Envelope(msg_type, version, validate(msg_type, body))


def _refuse_ext(code: int, data: bytes) -> Any:
    raise WireError(f"malformed message: msgpack extension type {code} is not allowed")


# -- numpy codec ---------------------------------------------------------------------------------


def array_to_wire(a: np.ndarray) -> dict[str, Any]:
    """(dtype name, shape, raw little-endian bytes); refuses dtypes outside the whitelist."""
    arr = np.asarray(a)
    name = arr.dtype.name
    if name not in ALLOWED_DTYPES:
        allowed = sorted(ALLOWED_DTYPES)
        raise WireError(f"dtype {name!r} cannot travel on the wire (allowed: {allowed})")
    le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return {"dtype": name, "shape": list(arr.shape), "data": np.ascontiguousarray(le).tobytes()}


def array_from_wire(obj: Any, max_bytes: int = MAX_BLOB_BYTES) -> np.ndarray:
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape", "data"}:
        raise WireError("array must be a map with exactly dtype, shape, data")
    name, shape, raw = obj["dtype"], obj["shape"], obj["data"]
    if not isinstance(name, str) or name not in ALLOWED_DTYPES:
        raise WireError(f"array dtype {name!r} is not allowed")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_ARRAY_DIMS
        or not all(_is_kind(d, int) and 0 <= d < 2**40 for d in shape)
    ):
        raise WireError(f"array shape {shape!r} is invalid")
    if not isinstance(raw, bytes):
        raise WireError("array data must be bytes")
    dtype = np.dtype(name).newbyteorder("<")
    expected = math.prod(shape) * dtype.itemsize
    if expected > max_bytes:
        raise WireError(f"array of {expected} bytes is over the {max_bytes} limit")
    if len(raw) != expected:
        raise WireError(f"array data has {len(raw)} bytes, shape {shape} {name} needs {expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.dtype(name))


register(
    "weights",
    {
        "arrays": Field(list, max_len=4096, items=dict),
        "meta": Field(dict, required=False, max_len=64),
    },
)


def encode_weights(arrays: Sequence[np.ndarray], meta: Mapping[str, Any] | None = None) -> bytes:
    """Model weights as one IPFS blob."""
    body: dict[str, Any] = {"arrays": [array_to_wire(a) for a in arrays]}
    if meta:
        body["meta"] = dict(meta)
    return encode("weights", body, max_size=MAX_BLOB_BYTES)


def decode_weights(data: bytes, max_bytes: int = MAX_BLOB_BYTES) -> list[np.ndarray]:
    env = decode(data, max_size=max_bytes, expect=["weights"])
    return [array_from_wire(a, max_bytes) for a in env.body["arrays"]]
