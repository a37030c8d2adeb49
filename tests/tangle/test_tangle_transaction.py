"""Transaction: canonical ids that commit to every field and to the past, and validation."""

from __future__ import annotations

import dataclasses
import json

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tangle import InvalidTransaction, Transaction, is_transaction_id

A, B, C = "a" * 64, "b" * 64, "c" * 64
BASE = {
    "parents": (A, B),
    "weights_cid": "bafy-w",
    "issuer": "peer-1",
    "created_at": 12.5,
    "tag": "round-3",
    "metadata": {"accuracy": 0.75, "round": 3, "note": "x", "ok": True, "none": None},
}
ids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20) | (
    st.floats(allow_nan=False, allow_infinity=False)
)


def tx_with(**changes: object) -> Transaction:
    return Transaction.create(**{**BASE, **changes})  # type: ignore[arg-type]


def test_golden_ids_pin_the_canonical_encoding() -> None:
    """Peers on other versions must compute the same ids: any encoding change fails here."""
    assert Transaction.genesis("bafy-genesis").id == (
        "f86d8d1af9a99823bc02c51be74196fa70b77c5794ecc6543e4abc0126c560fd"
    )
    assert tx_with(parents=(B, A)).id == (
        "a02c7a406f602689b4010bdb07cc61647513ad092d21467051d27a15e86abe59"
    )


def test_parent_and_metadata_order_and_duplicates_do_not_matter() -> None:
    base = tx_with()
    assert tx_with(parents=[B, A, B]).id == base.id
    assert tx_with(metadata=dict(reversed(list(BASE["metadata"].items())))).id == base.id
    assert base.parents == (A, B)
    assert list(base.metadata) == sorted(BASE["metadata"])


@pytest.mark.parametrize(
    "change",
    [
        {"parents": (A, C)},
        {"parents": (A,)},
        {"weights_cid": "bafy-v"},
        {"issuer": "peer-2"},
        {"created_at": 12.25},
        {"tag": "round-4"},
        {"metadata": {**BASE["metadata"], "accuracy": 0.76}},
        {"metadata": {**BASE["metadata"], "round": 3.0}},  # int and float stay distinct
        {"metadata": {**BASE["metadata"], "extra": None}},
    ],
)
def test_every_field_changes_the_id(change: dict) -> None:
    assert tx_with(**change).id != tx_with().id


@settings(max_examples=200)
@given(parents=st.lists(ids, min_size=1, max_size=8, unique=True), data=st.data())
def test_replacing_any_parent_changes_the_id(parents: list[str], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(parents) - 1))
    other = data.draw(ids.filter(lambda x: x not in parents))
    changed = [*parents[:i], other, *parents[i + 1:]]
    assert tx_with(parents=changed).id != tx_with(parents=parents).id


@settings(max_examples=200)
@given(
    parents=st.lists(ids, max_size=8),
    cid=st.text(min_size=1, max_size=256),
    issuer=st.text(min_size=1, max_size=256),
    created_at=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**15), 10**15),
    tag=st.text(max_size=256),
    metadata=st.dictionaries(st.text(min_size=1, max_size=20), scalars, max_size=32),
)
def test_dict_round_trip_through_msgpack_and_json_keeps_the_id(
    parents: list[str], cid: str, issuer: str, created_at: float, tag: str, metadata: dict
) -> None:
    tx = Transaction.create(parents, cid, issuer, created_at, tag, metadata)
    assert is_transaction_id(tx.id)
    packed = msgpack.unpackb(msgpack.packb(tx.to_dict(), use_bin_type=True), raw=False)
    assert Transaction.from_dict(packed).id == tx.id
    assert Transaction.from_dict(json.loads(json.dumps(tx.to_dict()))).id == tx.id


def test_transactions_are_immutable_and_compare_by_id() -> None:
    tx = tx_with()
    with pytest.raises(dataclasses.FrozenInstanceError):
        tx.issuer = "mallory"  # type: ignore[misc]
    with pytest.raises(TypeError):
        tx.metadata["accuracy"] = 1.0  # type: ignore[index]
    twin = tx_with(parents=(B, A))
    assert twin == tx and hash(twin) == hash(tx) and twin is not tx
    assert len({tx, twin}) == 1 and tx != tx.id
    assert Transaction.genesis("bafy-g").is_genesis and not tx.is_genesis
    assert tx.id[:12] in repr(tx)


def test_numpy_scalars_are_stored_as_plain_python_values() -> None:
    plain = tx_with(metadata={"accuracy": 0.5, "round": 3})
    numpy = tx_with(metadata={"accuracy": np.float32(0.5), "round": np.int64(3)})
    assert numpy.id == plain.id
    assert type(numpy.metadata["round"]) is int and type(numpy.metadata["accuracy"]) is float
    assert tx_with(created_at=np.float64(12.5)).id == tx_with().id


@pytest.mark.parametrize(
    "change",
    [
        {"parents": "a" * 64},
        {"parents": ["A" * 64]},
        {"parents": ["a" * 63]},
        {"parents": [1]},
        {"parents": [f"{i:064x}" for i in range(9)]},
        {"weights_cid": ""},
        {"weights_cid": b"bafy"},
        {"issuer": ""},
        {"issuer": "x" * 257},
        {"created_at": float("nan")},
        {"created_at": float("inf")},
        {"created_at": True},
        {"created_at": "now"},
        {"created_at": 10**400},
        {"tag": None},
        {"metadata": [("a", 1)]},
        {"metadata": {"": 1}},
        {"metadata": {1: 1}},
        {"metadata": {"k": [1, 2]}},
        {"metadata": {"k": {"nested": 1}}},
        {"metadata": {"k": 2**63}},
        {"metadata": {"k": float("nan")}},
        {"metadata": {f"k{i}": i for i in range(33)}},
    ],
)
def test_invalid_fields_are_rejected(change: dict) -> None:
    with pytest.raises(InvalidTransaction):
        tx_with(**change)


def test_from_dict_rejects_tampering_and_bad_shapes() -> None:
    good = tx_with().to_dict()
    assert Transaction.from_dict(good) == tx_with()
    assert Transaction.from_dict({k: v for k, v in good.items() if k != "id"}) == tx_with()
    for bad in (
        {**good, "id": "0" * 64},
        {**good, "issuer": "mallory"},  # content no longer matches the claimed id
        {**good, "evil": 1},
        {k: v for k, v in good.items() if k != "weights_cid"},
        {**good, "parents": A},
        ["not", "a", "mapping"],
    ):
        with pytest.raises(InvalidTransaction):
            Transaction.from_dict(bad)


def test_is_transaction_id() -> None:
    assert is_transaction_id(A) and is_transaction_id(tx_with().id)
    assert not any(is_transaction_id(x) for x in ("A" * 64, "a" * 65, "g" * 64, None, 5))


def test_a_signature_is_carried_and_committed_to_by_the_id() -> None:
    import io

    from tangle import TangleLog

    base = Transaction.create(["a" * 64], "bafyweights", "alice", 1.0, metadata={"x": 1})
    signed = base.signed(b"\x01" * 64)
    assert signed.signing_bytes() == base.signing_bytes() == base.canonical_bytes()
    assert signed.id != base.id and signed.signature == b"\x01" * 64
    assert base.signed(b"\x02" * 64).id != signed.id  # the id commits to the signature
    again = Transaction.from_dict(signed.to_dict())
    assert again.id == signed.id and again.signature == signed.signature
    buf = io.BytesIO()
    log = TangleLog(buf)
    log.append(signed)
    buf.seek(0)
    assert [t.id for t in TangleLog(buf).load()] == [signed.id]
    with pytest.raises(InvalidTransaction, match="signature"):
        base.signed(b"\x00" * 200)
