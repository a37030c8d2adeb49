"""What tree peers say on pubsub, and how a transaction is stored in IPFS.

Catch-up design (why it works with best-effort pubsub and late joiners):

* A transaction's *record* is exactly `Transaction.canonical_bytes()` (a few hundred bytes).
  The transaction id is the SHA-256 of those bytes, and IPFS addresses a small blob added as
  CIDv1 with raw leaves by the SHA-256 of its bytes. So the record of any transaction can be
  fetched from IPFS knowing only its id: `record_cid(tx_id)` is a pure conversion, no index
  and no "want" round trip. Every peer stores and pins the record of each transaction it
  inserts, so history stays available while any peer that saw it is online.
* `tree.tx` announces a new transaction and carries its record inline (no fetch needed in
  the common case). Its issuer must be the verified pubsub sender.
* `tree.heads` re-announces a peer's current tips (periodically, and in answer to
  `tree.hello`, which a peer sends when it joins). A receiver fetches each unknown head's
  record by id; a transaction with missing parents waits in the tangle's pending set while
  the parents' records are fetched the same way, down to what the peer already has. A
  record's integrity is checked by its hash, so heads from anyone can be trusted that far.
"""

from __future__ import annotations

import base64
from typing import Any

import msgpack

from gridd.wire import Field, WireError, decode, encode, register
from tangle import InvalidTransaction, Transaction, is_transaction_id

TOPIC_PREFIX = "gridd/tree/v1/"
MAX_RECORD_BYTES = 64 * 1024  # parents <= 8 ids, metadata <= 32 short scalars: far below
MAX_HEADS = 64
_RAW_SHA256_PREFIX = b"\x01\x55\x12\x20"  # CIDv1, raw codec, sha2-256, 32-byte digest

TX = "tree.tx"
HEADS = "tree.heads"
HELLO = "tree.hello"
RECIPE = "tree.recipe"

register(TX, {"record": Field(bytes, max_len=MAX_RECORD_BYTES)})
register(
    HEADS,
    {
        "heads": Field(
            list, max_len=MAX_HEADS, items=str, check=lambda v: all(map(is_transaction_id, v)),
            why="heads must be 64-character lowercase hex transaction ids",
        ),
        "size": Field(int, required=False),
    },
)
register(HELLO, {"size": Field(int, required=False), "nonce": Field(int, required=False)})
register(RECIPE, {"recipe": Field(dict, max_len=64)})


def topic_for(genesis_id: str) -> str:
    """The pubsub topic of one tangle: derived from its genesis id, so tangles never mix."""
    if not is_transaction_id(genesis_id):
        raise ValueError(f"genesis id: {genesis_id!r} is not a 64-character lowercase hex id")
    return TOPIC_PREFIX + genesis_id


def record_cid(tx_id: str) -> str:
    """The IPFS CID under which the record of transaction `tx_id` is stored."""
    if not is_transaction_id(tx_id):
        raise ValueError(f"{tx_id!r} is not a transaction id")
    raw = _RAW_SHA256_PREFIX + bytes.fromhex(tx_id)
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def encode_record(tx: Transaction) -> bytes:
    return tx.canonical_bytes()


def decode_record(data: bytes, expect_id: str | None = None) -> Transaction:
    """Parse a record from the network; InvalidTransaction on anything malformed.

    The rebuilt transaction must hash to the same bytes (and to `expect_id` if given), so a
    record cannot smuggle a different transaction under an id.
    """
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_RECORD_BYTES:
        raise InvalidTransaction("record: not bytes or over the size limit")
    try:
        obj = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, use_list=True)
    except Exception as e:  # msgpack raises many types
        raise InvalidTransaction(f"record: malformed msgpack ({type(e).__name__})") from None
    if isinstance(obj, list) and len(obj) == 7 and obj[0] == 1:
        _, parents, weights_cid, issuer, created_at, tag, meta = obj
        signature = b""
    elif isinstance(obj, list) and len(obj) == 8 and obj[0] == 2:
        _, parents, weights_cid, issuer, created_at, tag, meta, signature = obj
        if not isinstance(signature, bytes) or not signature:
            raise InvalidTransaction("record: a version-2 record needs a signature")
    else:
        raise InvalidTransaction("record: not a version-1 or version-2 transaction record")
    if not isinstance(meta, list) or not all(
        isinstance(kv, list) and len(kv) == 2 for kv in meta
    ):
        raise InvalidTransaction("record: metadata must be a list of [key, value] pairs")
    if not isinstance(parents, list):
        raise InvalidTransaction("record: parents must be a list")
    try:
        tx = Transaction.create(
            parents, weights_cid, issuer, created_at, tag, {k: v for k, v in meta}, signature
        )
    except TypeError as e:
        raise InvalidTransaction(f"record: {e}") from None
    if tx.canonical_bytes() != bytes(data):
        raise InvalidTransaction("record: not in canonical form")
    if expect_id is not None and tx.id != expect_id:
        raise InvalidTransaction(f"record: hashes to {tx.id}, expected {expect_id}")
    return tx


def tx_message(tx: Transaction) -> bytes:
    return encode(TX, {"record": encode_record(tx)})


def heads_message(heads: list[str], size: int) -> bytes:
    return encode(HEADS, {"heads": heads[-MAX_HEADS:], "size": size})


def hello_message(size: int, nonce: int) -> bytes:
    """A joining peer's request for heads; `nonce` lets the sender ignore its own echo."""
    return encode(HELLO, {"size": size, "nonce": nonce})


def parse(data: bytes) -> tuple[str, dict[str, Any]]:
    """(type, body) of a tree message; WireError for anything else."""
    env = decode(data, expect=[TX, HEADS, HELLO])
    return env.type, env.body


__all__ = [
    "HEADS", "HELLO", "MAX_HEADS", "MAX_RECORD_BYTES", "RECIPE", "TOPIC_PREFIX", "TX",
    "WireError", "decode_record", "encode_record", "heads_message", "hello_message", "parse",
    "record_cid", "topic_for", "tx_message",
]
