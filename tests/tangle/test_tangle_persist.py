"""Append-only log (crash-safe framing) and the visualisation export."""

from __future__ import annotations

import io
import json
import random
import zlib
from pathlib import Path

import msgpack
import pytest
from tangle_testkit import build, children_map, make_tx, parent_map, random_dag, reach

from tangle import Tangle, TangleLog, export_graph, rebuild
from tangle.persist import HEADER, encode_record


@pytest.fixture
def txs() -> list:
    return random_dag(random.Random(3), 25)


def write_log(path: Path, txs: list) -> None:
    with TangleLog(path) as log:
        for tx in txs:
            log.append(tx)


def test_round_trip_and_rebuild(tmp_path: Path, txs: list) -> None:
    path = tmp_path / "tangle.log"
    write_log(path, txs[:10])
    with TangleLog(path) as log:  # a second session appends to the same file
        for tx in txs[10:]:
            log.append(tx, sync=True)
    log = TangleLog(path)
    assert log.load() == txs
    assert log.last_load is not None and log.last_load.records == len(txs)
    shuffled = txs[1:] + txs[:1]
    random.Random(1).shuffle(shuffled)
    tangle = rebuild(txs[0], shuffled + shuffled[:5])  # any order, duplicates, genesis
    original = build(txs)
    assert len(tangle) == len(txs) and tangle.pending_count == 0
    assert set(tangle.tips()) == set(original.tips())
    assert TangleLog(tmp_path / "absent.log").load() == []


def test_torn_last_record_is_ignored_and_the_next_append_is_readable(
    tmp_path: Path, txs: list
) -> None:
    path = tmp_path / "tangle.log"
    write_log(path, txs[:5])
    full = path.read_bytes()
    last = len(encode_record(txs[4]))
    for cut in range(1, last):  # every crash point inside the last record
        path.write_bytes(full[: len(full) - cut])
        log = TangleLog(path)
        assert log.load() == txs[:4]
        assert log.last_load is not None
        assert log.last_load.torn_bytes == last - cut
        assert log.last_load.valid_end == len(full) - last
        with log:
            log.append(txs[5])
        assert TangleLog(path).load() == [*txs[:4], txs[5]]


def test_zero_filled_tail_counts_as_torn(tmp_path: Path, txs: list) -> None:
    path = tmp_path / "tangle.log"
    write_log(path, txs[:3])
    with path.open("ab") as stream:
        stream.write(b"\0" * 100)  # what some filesystems leave after a crash
    log = TangleLog(path)
    assert log.load() == txs[:3] and log.last_load.torn_bytes == 100


def test_damaged_record_is_skipped_not_spread(tmp_path: Path, txs: list) -> None:
    path = tmp_path / "tangle.log"
    write_log(path, txs[:6])
    data = bytearray(path.read_bytes())
    second = len(encode_record(txs[0])) + HEADER.size + 10
    data[second] ^= 0xFF  # flip a payload byte of record 2
    path.write_bytes(bytes(data))
    log = TangleLog(path)
    assert log.load() == [txs[0], *txs[2:6]]
    assert log.last_load.corrupt == 1 and log.last_load.invalid == 0


def test_well_framed_but_invalid_record_is_counted(tmp_path: Path, txs: list) -> None:
    bogus = {**txs[1].to_dict(), "issuer": "mallory"}  # claimed id no longer matches
    payload = msgpack.packb(bogus, use_bin_type=True)
    stream = io.BytesIO(
        encode_record(txs[0]) + HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        + encode_record(txs[2])
    )
    log = TangleLog(stream)
    assert log.load() == [txs[0], txs[2]]
    assert log.last_load.invalid == 1 and log.last_load.corrupt == 0


def test_file_object_log_appends_after_a_torn_tail(txs: list) -> None:
    stream = io.BytesIO()
    log = TangleLog(stream)
    for tx in txs[:3]:
        log.append(tx)
    big = make_tx([txs[2].id], 50, metadata={f"k{i}": "x" * 200 for i in range(30)})
    stream.write(encode_record(big)[:-7])  # crash mid-append of a record longer than the next
    assert log.load() == txs[:3] and log.last_load.torn_bytes > 0
    log.append(txs[4])
    assert log.load() == [*txs[:3], txs[4]]
    assert log.last_load.torn_bytes == 0  # the torn bytes are gone, not left behind
    log.close()
    assert not stream.closed  # the caller owns its file object


def test_export_graph_has_nodes_edges_depth_and_accuracy(txs: list) -> None:
    tangle = build(txs)
    override = {txs[3].id: 0.123}
    graph = export_graph(tangle, override, cumulative_weight=True)
    json.dumps(graph)
    assert graph["genesis"] == txs[0].id
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert list(nodes) == [tx.id for tx in tangle.topological()]
    children = children_map(parent_map(txs))
    for tx in txs:
        node = nodes[tx.id]
        assert node["depth"] == tangle.depth(tx.id) and node["height"] == tangle.height(tx.id)
        assert node["issuer"] == tx.issuer and node["tag"] == tx.tag
        assert node["cumulative_weight"] == 1 + len(reach(tx.id, children))
        expected = 0.123 if tx.id in override else tx.metadata.get("accuracy")
        assert node["accuracy"] == expected
    assert sorted((e["source"], e["target"]) for e in graph["edges"]) == sorted(
        (tx.id, p) for tx in txs for p in tx.parents
    )
    plain = export_graph(Tangle(txs[0]))
    assert "cumulative_weight" not in plain["nodes"][0] and plain["edges"] == []
    assert plain["nodes"][0]["accuracy"] is None  # genesis has no accuracy metadata


def test_rebuild_keeps_orphans_pending(txs: list) -> None:
    orphan = make_tx(["d" * 64], 99)
    tangle = rebuild(txs[0], [*txs[1:], orphan], max_pending=5)
    assert len(tangle) == len(txs) and tangle.is_pending(orphan.id)
