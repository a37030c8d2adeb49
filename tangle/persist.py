"""Append-only transaction log that survives a crash mid-write, and a graph export.

Each record is framed as 4-byte big-endian payload length, 4-byte CRC-32 of the payload,
then the payload (msgpack of `Transaction.to_dict()`). On load a torn tail (short header or
short payload, as a crash mid-append leaves) ends the log; a record whose checksum or
content is bad is skipped and the next one read, so damage never spreads to earlier records.

`TangleLog.compact` replaces the log with a snapshot (tangle.snapshot): a header frame (the
horizon) followed by the kept transactions, written to a temporary file, fsynced and renamed
over the log, so a crash leaves the old log or the new one, never a mix. Appends continue
after it; `rebuild(..., horizon=log.horizon)` restores the tangle from both.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import msgpack

from tangle.errors import DuplicateTransaction, TangleError
from tangle.graph import DEFAULT_MAX_PENDING, Tangle
from tangle.snapshot import SNAPSHOT_KEY, Horizon, restore
from tangle.transaction import Transaction

HEADER = struct.Struct(">II")
MAX_RECORD_BYTES = 1 << 20
"""A larger length field can only be damage: stop reading there."""


@dataclass(frozen=True, slots=True)
class LoadStats:
    """What the last load found, so callers can count and log damage."""

    records: int
    corrupt: int
    invalid: int
    torn_bytes: int
    valid_end: int
    """Offset just after the last readable frame: where the next append belongs."""
    horizon: Horizon | None = None
    """The snapshot header of a compacted log (None: the log holds everything)."""


def encode_record(tx: Transaction) -> bytes:
    return _frame(tx.to_dict())


def _frame(obj: Any) -> bytes:
    payload = msgpack.packb(obj, use_bin_type=True)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_records(stream: IO[bytes]) -> tuple[list[Transaction], LoadStats]:
    """Read frames from the stream's current position to its end."""
    txs: list[Transaction] = []
    corrupt = invalid = 0
    offset = 0
    torn = 0
    horizon: Horizon | None = None
    while True:
        header = stream.read(HEADER.size)
        if len(header) < HEADER.size:
            torn = len(header)
            break
        length, checksum = HEADER.unpack(header)
        if length == 0 or length > MAX_RECORD_BYTES:
            torn = len(header) + len(stream.read())
            break
        payload = stream.read(length)
        if len(payload) < length:
            torn = len(header) + len(payload)
            break
        offset += HEADER.size + length
        if zlib.crc32(payload) != checksum:
            corrupt += 1
            continue
        try:
            obj = msgpack.unpackb(payload, raw=False)
            if isinstance(obj, dict) and SNAPSHOT_KEY in obj:
                horizon = Horizon.from_dict(obj)
            else:
                txs.append(Transaction.from_dict(obj))
        except (ValueError, TypeError, msgpack.UnpackException):
            invalid += 1
    return txs, LoadStats(len(txs), corrupt, invalid, torn, offset, horizon)


class TangleLog:
    """Append-only log on a path or on a binary file object.

    With a path, the first append truncates any torn tail left by a crash so that new
    records stay readable. `append(tx, sync=True)` fsyncs (and, for a new file, its
    directory) before returning. With a file object, the caller owns it: load() reads it
    from the start (truncating a torn tail, so the file must then be writable) and append()
    writes at its current position.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[bytes]) -> None:
        if isinstance(target, (str, os.PathLike)):
            self.path: str | None = os.fspath(target)
            self._file: IO[bytes] | None = None
        else:
            self.path = None
            self._file = target
        self.last_load: LoadStats | None = None

    def load(self) -> list[Transaction]:
        """All readable transactions in append order; details in `last_load`."""
        if self.path is None:
            assert self._file is not None
            start = self._file.seek(0) if self._file.seekable() else 0
            txs, self.last_load = read_records(self._file)
            if self.last_load.torn_bytes and self._file.seekable():
                # The next append must land where the readable frames end, not after the
                # torn bytes (which would make it unreadable too).
                self._file.seek(start + self.last_load.valid_end)
                self._file.truncate()
            return txs
        try:
            with open(self.path, "rb") as stream:
                txs, self.last_load = read_records(stream)
        except FileNotFoundError:
            txs, self.last_load = [], LoadStats(0, 0, 0, 0, 0)
        return txs

    @property
    def horizon(self) -> Horizon | None:
        """The snapshot header found by the last load (None: an uncompacted log)."""
        return self.last_load.horizon if self.last_load is not None else None

    def size(self) -> int:
        """Bytes in the log file now (0 if it does not exist yet)."""
        if self.path is None:
            f = self._file
            assert f is not None
            if not f.seekable():
                return 0
            here = f.tell()
            end = f.seek(0, os.SEEK_END)
            f.seek(here)
            return end
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0

    def compact(self, horizon: Horizon, txs: Iterable[Transaction]) -> int:
        """Replace the log with a snapshot atomically (temp file, fsync, rename, fsync the
        directory); returns the new size. Later appends go after the snapshot. Only for a
        log on a path: a caller's file object cannot be replaced atomically."""
        if self.path is None:
            raise ValueError("only a log on a path can be compacted")
        data = b"".join([_frame(horizon.to_dict()), *(encode_record(tx) for tx in txs)])
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".tangle-compact.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            if self._file is not None:  # the append handle points at the old file
                self._file.close()
                self._file = None
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_directory(directory)
        self.last_load = LoadStats(0, 0, 0, 0, len(data), horizon)
        return len(data)

    def append(self, tx: Transaction, sync: bool = False) -> None:
        """Write one framed record in a single write; flush, and fsync if sync."""
        stream = self._file if self._file is not None else self._open_for_append(sync)
        stream.write(encode_record(tx))
        stream.flush()
        if sync:
            os.fsync(stream.fileno())

    def close(self) -> None:
        """Close a file this log opened itself (never a caller's file object)."""
        if self.path is not None and self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TangleLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_for_append(self, sync: bool) -> IO[bytes]:
        assert self.path is not None
        created = not os.path.exists(self.path)
        if not created:
            with open(self.path, "r+b") as stream:
                _, stats = read_records(stream)
                if stats.torn_bytes:
                    stream.truncate(stats.valid_end)
                    stream.flush()
                    os.fsync(stream.fileno())
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across appends
        if created and sync:
            _fsync_directory(os.path.dirname(os.path.abspath(self.path)))
        return self._file


def _fsync_directory(path: str) -> None:
    """Make a new file's directory entry durable (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rebuild(
    genesis: Transaction,
    txs: Iterable[Transaction],
    *,
    max_pending: int = DEFAULT_MAX_PENDING,
    horizon: Horizon | None = None,
) -> Tangle:
    """Replay logged transactions onto a fresh tangle.

    Replays are idempotent: duplicates (including a logged genesis) are skipped, as are
    transactions the tangle rejects; ones whose parents never appear stay pending. With the
    `horizon` of a compacted log (TangleLog.horizon) the tangle holds the snapshot's recent
    part with its boundary as roots (see tangle.snapshot).
    """
    tangle = Tangle(genesis, max_pending=max_pending)
    if horizon is not None:
        restore(tangle, horizon, txs)
        return tangle
    for tx in txs:
        try:
            tangle.add(tx)
        except DuplicateTransaction:
            continue
        except TangleError:
            continue
    return tangle


def export_graph(
    tangle: Tangle,
    accuracy: Mapping[str, float] | None = None,
    *,
    cumulative_weight: bool = False,
) -> dict[str, Any]:
    """Nodes and child->parent edges for visualisation (JSON-able).

    Each node has id, height, depth, issuer, tag, created_at and accuracy (from the
    `accuracy` mapping if it has the id, else the transaction's metadata "accuracy", else
    None); with cumulative_weight=True also its exact cumulative weight (one bitset sweep
    over the whole tangle, so opt-in).
    """
    depths = tangle.depths()
    weights = tangle.cumulative_weights() if cumulative_weight else None
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    for tx in tangle.topological():
        node: dict[str, Any] = {
            "id": tx.id,
            "height": tangle.height(tx.id),
            "depth": depths[tx.id],
            "issuer": tx.issuer,
            "tag": tx.tag,
            "created_at": tx.created_at,
            "accuracy": _accuracy(tx, accuracy),
        }
        if weights is not None:
            node["cumulative_weight"] = weights[tx.id]
        nodes.append(node)
        edges.extend({"source": tx.id, "target": parent} for parent in tx.parents)
    return {"genesis": tangle.genesis.id, "nodes": nodes, "edges": edges}


def _accuracy(tx: Transaction, accuracy: Mapping[str, float] | None) -> float | None:
    if accuracy is not None and tx.id in accuracy:
        return float(accuracy[tx.id])
    value = tx.metadata.get("accuracy")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
