"""Immutable transactions whose id commits to their whole past.

The id is the hex SHA-256 of a canonical msgpack encoding of every field (parents sorted,
metadata keys sorted, floats always as float64), so two peers that agree on an id agree on
the transaction and, transitively, on all its ancestors: the tangle is a Merkle DAG.

A transaction may carry its issuer's `signature` over `signing_bytes()` (every field but
the signature). The id then commits to the signature too (encoding version 2), so a record
fetched by id is exactly what its issuer signed. This library stores the signature but
never checks it (no crypto here): the application verifies it against the issuer.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import msgpack

from tangle.errors import InvalidTransaction

Scalar = str | int | float | bool | None
"""A metadata value: small, JSON- and msgpack-safe, with one canonical encoding."""

ENCODING_VERSION = 1  # unsigned transactions (the genesis, tests)
SIGNED_ENCODING_VERSION = 2
MAX_SIGNATURE = 128
MAX_PARENTS = 8
MAX_METADATA_KEYS = 32
MAX_STRING = 256
ID_LENGTH = 64
_HEX = frozenset("0123456789abcdef")
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_DICT_KEYS = ("id", "parents", "weights_cid", "issuer", "created_at", "tag", "metadata",
              "signature")
_REQUIRED_KEYS = ("parents", "weights_cid", "issuer", "created_at")


def is_transaction_id(value: object) -> bool:
    """True for a well-formed id: 64 lowercase hex characters."""
    return isinstance(value, str) and len(value) == ID_LENGTH and _HEX.issuperset(value)


def _check_string(name: str, value: object, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise InvalidTransaction(f"{name}: expected a string, got {type(value).__name__}")
    if len(value) > MAX_STRING:
        raise InvalidTransaction(f"{name}: at most {MAX_STRING} characters, got {len(value)}")
    if not value and not allow_empty:
        raise InvalidTransaction(f"{name}: must not be empty")
    return value


def _check_float(name: str, value: object) -> float:
    # numbers.Real also admits numpy scalars (np.float32 accuracies), without importing numpy
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTransaction(f"{name}: expected a number, got {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:
        raise InvalidTransaction(f"{name}: number too large for a float64") from None
    if not math.isfinite(result):
        raise InvalidTransaction(f"{name}: must be finite, got {result!r}")
    return result


def _check_parents(value: object) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidTransaction(f"parents: expected a list of ids, got {type(value).__name__}")
    items = list(value) if not isinstance(value, (list, tuple)) else value
    if len(items) > MAX_PARENTS:
        raise InvalidTransaction(f"parents: at most {MAX_PARENTS} ids, got {len(items)}")
    for parent in items:
        if not is_transaction_id(parent):
            raise InvalidTransaction(f"parents: {parent!r} is not a 64-character lowercase hex id")
    return tuple(sorted(set(items)))


def _check_metadata(value: object) -> Mapping[str, Scalar]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise InvalidTransaction(f"metadata: expected a mapping, got {type(value).__name__}")
    if len(value) > MAX_METADATA_KEYS:
        raise InvalidTransaction(f"metadata: at most {MAX_METADATA_KEYS} keys, got {len(value)}")
    clean: dict[str, Scalar] = {}
    for key in sorted(value, key=lambda k: (not isinstance(k, str), str(k))):
        _check_string("metadata key", key, allow_empty=False)
        clean[key] = _check_scalar(f"metadata[{key!r}]", value[key])
    return MappingProxyType(clean)


def _check_scalar(name: str, value: object) -> Scalar:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):  # int, IntEnum, numpy integers -> plain int
        number = int(value)
        if not _INT_MIN <= number <= _INT_MAX:
            raise InvalidTransaction(f"{name}: integer outside the signed 64-bit range")
        return number
    if isinstance(value, numbers.Real):  # float, numpy floats -> plain float64
        return _check_float(name, value)
    if isinstance(value, str):
        return _check_string(name, value, allow_empty=True)
    raise InvalidTransaction(
        f"{name}: expected str, int, float, bool or None, got {type(value).__name__}"
    )


def _signature_from(value: object) -> bytes:
    """A signature from a dict: hex text (JSON-able) or raw bytes."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str) or len(value) > 2 * MAX_SIGNATURE:
        raise InvalidTransaction("signature: expected hex text")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidTransaction("signature: not hex") from None


@dataclass(frozen=True, slots=True, eq=False)
class Transaction:
    """One model update in the tangle. Equality and hashing go by id.

    Construct with `Transaction.create` (or the constructor: both validate and normalise,
    so every instance is canonical). Parents are a set of ids, stored sorted without
    duplicates; metadata is a read-only mapping with sorted keys.
    """

    parents: tuple[str, ...]
    weights_cid: str
    issuer: str
    created_at: float
    tag: str = ""
    metadata: Mapping[str, Scalar] = field(default_factory=lambda: MappingProxyType({}))
    signature: bytes = b""
    _id: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        setter = object.__setattr__
        setter(self, "parents", _check_parents(self.parents))
        cid = _check_string("weights_cid", self.weights_cid, allow_empty=False)
        setter(self, "weights_cid", cid)
        setter(self, "issuer", _check_string("issuer", self.issuer, allow_empty=False))
        setter(self, "created_at", _check_float("created_at", self.created_at))
        setter(self, "tag", _check_string("tag", self.tag, allow_empty=True))
        setter(self, "metadata", _check_metadata(self.metadata))
        if not isinstance(self.signature, (bytes, bytearray)) \
                or len(self.signature) > MAX_SIGNATURE:
            raise InvalidTransaction(f"signature: expected at most {MAX_SIGNATURE} bytes")
        setter(self, "signature", bytes(self.signature))
        setter(self, "_id", hashlib.sha256(self.canonical_bytes()).hexdigest())

    @classmethod
    def create(
        cls,
        parents: Iterable[str],
        weights_cid: str,
        issuer: str,
        created_at: float,
        tag: str = "",
        metadata: Mapping[str, Scalar] | None = None,
        signature: bytes = b"",
    ) -> Transaction:
        """Build a validated transaction; raises InvalidTransaction on bad input."""
        return cls(tuple(parents), weights_cid, issuer, created_at, tag, metadata,  # type: ignore[arg-type]
                   signature)

    def signed(self, signature: bytes) -> Transaction:
        """This transaction with the issuer's signature over `signing_bytes()` (a new id)."""
        return Transaction(self.parents, self.weights_cid, self.issuer, self.created_at,
                           self.tag, self.metadata, signature)

    @classmethod
    def genesis(
        cls,
        weights_cid: str,
        issuer: str = "genesis",
        created_at: float = 0.0,
        tag: str = "genesis",
        metadata: Mapping[str, Scalar] | None = None,
    ) -> Transaction:
        """The parentless root every other transaction descends from."""
        return cls.create((), weights_cid, issuer, created_at, tag, metadata)

    @property
    def id(self) -> str:
        """Hex SHA-256 of `canonical_bytes()`."""
        return self._id

    @property
    def is_genesis(self) -> bool:
        return not self.parents

    def _fields(self) -> list[Any]:
        return [
            list(self.parents),
            self.weights_cid,
            self.issuer,
            self.created_at,
            self.tag,
            [[key, value] for key, value in self.metadata.items()],
        ]

    def signing_bytes(self) -> bytes:
        """What the issuer signs: every field but the signature (the version-1 encoding)."""
        return msgpack.packb([ENCODING_VERSION, *self._fields()], use_bin_type=True)

    def canonical_bytes(self) -> bytes:
        """The one byte string the id is computed from (msgpack array, versioned): version 1
        without a signature, version 2 with the signature appended."""
        if not self.signature:
            return self.signing_bytes()
        return msgpack.packb([SIGNED_ENCODING_VERSION, *self._fields(), self.signature],
                             use_bin_type=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain msgpack/JSON-able dict, including the id."""
        return {
            "id": self._id,
            "parents": list(self.parents),
            "weights_cid": self.weights_cid,
            "issuer": self.issuer,
            "created_at": self.created_at,
            "tag": self.tag,
            "metadata": dict(self.metadata),
            **({"signature": self.signature.hex()} if self.signature else {}),
        }

    @classmethod
    def from_dict(cls, data: object) -> Transaction:
        """Parse untrusted input; checks types, caps and (if present) the claimed id."""
        if not isinstance(data, Mapping):
            raise InvalidTransaction(f"transaction: expected a mapping, got {type(data).__name__}")
        unknown = [key for key in data if key not in _DICT_KEYS]
        if unknown:
            shown = ", ".join(repr(key) for key in unknown[:5])
            raise InvalidTransaction(f"transaction: unknown field(s) {shown}")
        missing = [key for key in _REQUIRED_KEYS if key not in data]
        if missing:
            raise InvalidTransaction(f"transaction: missing field(s) {', '.join(missing)}")
        parents = data["parents"]
        if not isinstance(parents, (list, tuple)):
            raise InvalidTransaction(f"parents: expected a list, got {type(parents).__name__}")
        tx = cls(
            tuple(parents),
            data["weights_cid"],
            data["issuer"],
            data["created_at"],
            data.get("tag", ""),
            data.get("metadata"),
            _signature_from(data.get("signature", "")),
        )
        claimed = data.get("id")
        if claimed is not None and claimed != tx.id:
            raise InvalidTransaction(
                f"id: claimed {str(claimed)[:80]!r} but the content hashes to {tx.id}"
            )
        return tx

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Transaction):
            return self._id == other._id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return (
            f"Transaction(id={self._id[:12]}…, parents={len(self.parents)}, "
            f"issuer={self.issuer!r}, tag={self.tag!r})"
        )
