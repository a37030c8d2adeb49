"""Records, ids and CIDs: a transaction can be fetched from the store by its id alone."""

from __future__ import annotations

import msgpack
import pytest

from gridd.transport import raw_cid
from gridd.tree import messages
from gridd.wire import WireError, encode
from tangle import InvalidTransaction, Transaction

PARENT = "a" * 64


def _tx(**kw: object) -> Transaction:
    args: dict[str, object] = dict(parents=[PARENT], weights_cid="bafkweights", issuer="peerA",
                                   created_at=12.5, metadata={"accuracy": 0.5, "n": 3})
    args.update(kw)
    return Transaction.create(**args)  # type: ignore[arg-type]


def test_record_cid_is_the_store_address_of_the_record() -> None:
    tx = _tx()
    record = messages.encode_record(tx)
    assert messages.record_cid(tx.id) == raw_cid(record)
    assert messages.decode_record(record, expect_id=tx.id) == tx


def test_decode_record_refuses_tampering_and_garbage() -> None:
    tx = _tx()
    record = messages.encode_record(tx)
    with pytest.raises(InvalidTransaction, match="hashes to"):
        messages.decode_record(record, expect_id="b" * 64)
    fields = msgpack.unpackb(record)
    fields[3] = "mallory"
    with pytest.raises(InvalidTransaction, match="hashes to"):
        messages.decode_record(msgpack.packb(fields), expect_id=tx.id)
    # same content, not canonical (a float written as an int) -> a different id: refused
    fields = msgpack.unpackb(record)
    fields[4] = 12
    fields_bytes = msgpack.packb(fields)
    with pytest.raises(InvalidTransaction, match="canonical"):
        messages.decode_record(fields_bytes)
    bad_version = msgpack.packb([2, [], "", "", 0.0, "", []])
    for junk in (b"", b"\xc1", msgpack.packb({"a": 1}), bad_version):
        with pytest.raises(InvalidTransaction):
            messages.decode_record(junk)


def test_topics_differ_per_genesis_and_bad_ids_are_refused() -> None:
    assert messages.topic_for("1" * 64) != messages.topic_for("2" * 64)
    for bad in ("", "ABC", "g" * 64, "1" * 63):
        with pytest.raises(ValueError):
            messages.topic_for(bad)


def test_parse_accepts_tree_messages_only() -> None:
    kind, body = messages.parse(messages.heads_message(["c" * 64], 3))
    assert kind == messages.HEADS and body["heads"] == ["c" * 64]
    with pytest.raises(WireError):
        messages.parse(encode("weights", {"arrays": []}))
    forged = msgpack.packb({"t": messages.HEADS, "v": 1, "b": {"heads": ["../etc/passwd"]}})
    with pytest.raises(WireError, match="heads"):
        messages.parse(forged)
