"""Wire format: envelopes, schemas and the numpy codec refuse bad input with one error type."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridd import wire
from gridd.wire import Field, WireError

wire.register(
    "test.ping",
    {
        "n": Field(int),
        "name": Field(str, max_len=8),
        "tags": Field(list, required=False, items=str),
    },
)


def test_round_trip() -> None:
    env = wire.decode(wire.encode("test.ping", {"n": 3, "name": "abc", "tags": ["x"]}))
    assert (env.type, env.version, env.body) == (
        "test.ping",
        1,
        {"n": 3, "name": "abc", "tags": ["x"]},
    )


@pytest.mark.parametrize(
    "body,reason",
    [
        ({"name": "a"}, "missing field 'n'"),
        ({"n": "3", "name": "a"}, "expected int"),
        ({"n": True, "name": "a"}, "expected int"),
        ({"n": 1, "name": "too long name"}, "longer than 8"),
        ({"n": 1, "name": "a", "tags": [1]}, "items must be str"),
        ({"n": 1, "name": "a", "evil": 1}, "unknown fields"),
    ],
)
def test_schema_violations(body: dict, reason: str) -> None:
    raw = msgpack.packb({"t": "test.ping", "v": 1, "b": body})
    with pytest.raises(WireError, match=reason):
        wire.decode(raw)


def test_unknown_version_and_type() -> None:
    with pytest.raises(WireError, match="unsupported protocol version 2"):
        wire.decode(msgpack.packb({"t": "test.ping", "v": 2, "b": {"n": 1, "name": "a"}}))
    with pytest.raises(WireError, match="unknown message type"):
        wire.decode(msgpack.packb({"t": "nope", "v": 1, "b": {}}))
    with pytest.raises(WireError, match="unexpected message type"):
        wire.decode(wire.encode("test.ping", {"n": 1, "name": "a"}), expect=["weights"])


def test_oversized_refused_both_ways() -> None:
    with pytest.raises(WireError, match="over the"):
        wire.encode("test.ping", {"n": 1, "name": "a"}, max_size=5)
    with pytest.raises(WireError, match="over the"):
        wire.decode(b"\x00" * (wire.MAX_MESSAGE_BYTES + 1))


def test_ext_types_and_nan_refused() -> None:
    raw = msgpack.packb(
        {"t": "test.ping", "v": 1, "b": {"n": msgpack.ExtType(5, b"x"), "name": "a"}}
    )
    with pytest.raises(WireError, match="extension"):
        wire.decode(raw)
    wire.register("test.float", {"x": Field(float)})
    with pytest.raises(WireError, match="expected float"):
        wire.decode(msgpack.packb({"t": "test.float", "v": 1, "b": {"x": float("nan")}}))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_wire_error(data: bytes) -> None:
    try:
        wire.decode(data)
    except WireError:
        pass


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=12),
    st.binary(max_size=12),
)
_obj = st.recursive(
    _leaf,
    lambda c: st.one_of(
        st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(st.sampled_from(["test.ping", "weights", "x"]), _obj),
    st.one_of(st.just(1), _obj),
    _obj,
)
def test_random_envelopes_only_raise_wire_error(t: object, v: object, body: object) -> None:
    data = msgpack.packb({"t": t, "v": v, "b": body}, use_bin_type=True)
    try:
        wire.decode(data)
    except WireError:
        pass


@pytest.mark.parametrize(
    "dtype", ["float32", "float64", "float16", "int8", "int64", "uint8", "bool"]
)
def test_array_round_trip(dtype: str) -> None:
    a = (
        np.arange(24).reshape(2, 3, 4) % 2 if dtype == "bool" else np.arange(24).reshape(2, 3, 4)
    ).astype(dtype)
    b = wire.array_from_wire(wire.array_to_wire(a))
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
    assert b.flags.writeable


def test_big_endian_input_is_normalised() -> None:
    a = np.arange(5, dtype=">f4")
    b = wire.array_from_wire(wire.array_to_wire(a))
    assert np.array_equal(a, b) and b.dtype == np.float32


@pytest.mark.parametrize(
    "obj,reason",
    [
        ({"dtype": "object", "shape": [1], "data": b"x"}, "not allowed"),
        ({"dtype": "float32", "shape": [2], "data": b"\x00" * 4}, "needs 8"),
        ({"dtype": "float32", "shape": [-1], "data": b""}, "shape"),
        ({"dtype": "float32", "shape": [1] * 9, "data": b"\x00" * 4}, "shape"),
        ({"dtype": "float32", "shape": [2**20, 2**20], "data": b""}, "over the"),
        ({"dtype": "float32", "shape": [1]}, "exactly dtype, shape, data"),
    ],
)
def test_bad_arrays(obj: dict, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        wire.array_from_wire(obj)


def test_object_and_complex_arrays_cannot_be_sent() -> None:
    with pytest.raises(WireError, match="cannot travel"):
        wire.array_to_wire(np.array([{"a": 1}], dtype=object))
    with pytest.raises(WireError, match="cannot travel"):
        wire.array_to_wire(np.zeros(2, dtype=np.complex64))


def test_weights_blob_round_trip() -> None:
    ws = [np.random.default_rng(0).normal(size=(64, 32)).astype("float32"), np.zeros(32, "float32")]
    out = wire.decode_weights(wire.encode_weights(ws, meta={"round": 3}))
    assert len(out) == len(ws)
    assert all(np.array_equal(a, b) for a, b in zip(ws, out, strict=True))
    with pytest.raises(WireError):
        wire.decode_weights(wire.encode_weights(ws), max_bytes=100)
