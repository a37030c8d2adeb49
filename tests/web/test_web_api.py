"""The view's JSON API over real HTTP: cursor semantics, bounds, and bad parameters."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from web_helpers import LabView, open_lab_view

from gridd.lab.memory_lab import MemoryLab
from gridd.lab.options import LabOptions
from gridd.lab.partition import lab_data
from gridd.web import api
from gridd.web.feed import TangleFeed


def workers() -> list[dict[str, object]]:
    return [{"peer_id": "12D3KooWworker", "slots": 2, "load": 0.5}]


def broken() -> list[dict[str, object]]:
    raise RuntimeError("dispatcher closed")


@pytest.fixture(scope="module")
def lv() -> Iterator[LabView]:
    view = open_lab_view(peers=3, seed=1, compute_workers=workers, federated_jobs=broken)
    try:
        view.grow(20)
        yield view
    finally:
        view.close()


def get(lv: LabView, path: str) -> httpx.Response:
    return httpx.get(lv.view.url.rstrip("/") + path, timeout=10)


def test_default_window_is_the_whole_small_tangle_in_insertion_order(lv: LabView) -> None:
    body = get(lv, "/api/tangle").json()
    tangle = lv.lab.observer.tangle
    assert body["count"] == len(tangle) and body["start"] == 0 and body["cursor"] == len(tangle)
    assert [t["id"] for t in body["transactions"]] == [tx.id for tx in tangle.transactions()]
    assert set(body["tips"]) == set(tangle.tips())
    assert body["reference"] and set(body["reference"]) <= {tx.id for tx in tangle.transactions()}
    assert body["more"] is False
    first = body["transactions"][1]
    tx = tangle[first["id"]]
    assert first["issuer"] == tx.issuer and first["parents"] == list(tx.parents)
    assert first["cid"] == tx.weights_cid and first["p"] == [tangle.index_of(p) for p in tx.parents]


def test_cursor_pages_through_everything_once(lv: LabView) -> None:
    seen: list[str] = []
    cursor, calls = 0, 0
    while True:
        body = get(lv, f"/api/tangle?since={cursor}&limit=7").json()
        assert body["start"] == cursor and len(body["transactions"]) <= 7
        seen += [t["id"] for t in body["transactions"]]
        cursor, calls = body["cursor"], calls + 1
        if not body["more"]:
            break
    assert seen == [tx.id for tx in lv.lab.observer.tangle.transactions()]
    assert calls == -(-len(seen) // 7)
    assert get(lv, f"/api/tangle?since={cursor}").json()["transactions"] == []


def test_new_transactions_arrive_after_the_cursor(lv: LabView) -> None:
    cursor = get(lv, "/api/tangle").json()["cursor"]
    lv.grow(2)
    body = get(lv, f"/api/tangle?since={cursor}").json()
    ids = [t["id"] for t in body["transactions"]]
    assert len(ids) >= 2 and body["cursor"] == lv.count
    assert ids == [lv.lab.observer.tangle.tx_at(i).id for i in range(cursor, lv.count)]


def test_window_returns_the_newest(lv: LabView) -> None:
    body = get(lv, "/api/tangle?window=5").json()
    assert body["start"] == lv.count - 5 and len(body["transactions"]) == 5


@pytest.mark.parametrize(("query", "words"), [
    ("since=-1", "since: must be >= 0"),
    ("since=abc", "since: expected an integer"),
    ("since=999999", "past the end"),
    ("limit=0", "limit: must be >= 1"),
    (f"limit={api.MAX_LIMIT + 1}", f"limit: at most {api.MAX_LIMIT}"),
    ("window=0", "window: must be >= 1"),
    ("since=0&window=5", "since or window, not both"),
    ("sinse=3", "unknown parameter 'sinse'"),
    ("since=1&since=2", "since: given twice"),
])
def test_bad_parameters_are_400_with_a_sentence(lv: LabView, query: str, words: str) -> None:
    r = get(lv, f"/api/tangle?{query}")
    assert r.status_code == 400
    assert words in r.json()["error"]


def test_other_endpoints_and_errors(lv: LabView) -> None:
    peers = get(lv, "/api/peers").json()
    issuers = {tx.issuer for tx in lv.lab.observer.tangle.transactions()}
    assert issuers <= {p["peer"] for p in peers["peers"]}
    top = peers["peers"][0]
    assert top["transactions"] == max(
        sum(tx.issuer == i for tx in lv.lab.observer.tangle.transactions()) for i in issuers)
    assert len(get(lv, "/api/peers?limit=1").json()["peers"]) == 1
    assert get(lv, f"/api/peers?limit={api.MAX_PEERS + 1}").status_code == 400
    jobs = get(lv, "/api/jobs").json()["sections"]
    assert jobs["compute_workers"]["rows"] == workers()
    assert jobs["federated_jobs"] == {"error": "dispatcher closed", "rows": []}
    summary = get(lv, "/api/summary").json()
    assert summary["transactions"] == lv.count and summary["accuracy_source"] == "validation"
    assert 0 <= summary["consensus_accuracy"] <= 1
    assert summary["metrics"]["gridd_tangle_transactions"] == lv.count
    accuracy = get(lv, "/api/accuracy").json()
    assert accuracy["consensus"] and accuracy["lab_test"]
    assert get(lv, "/api/nothing").status_code == 404
    assert "no such endpoint" in get(lv, "/api/nothing").json()["error"]
    assert httpx.post(lv.view.url + "api/tangle", timeout=5).status_code == 405
    assert get(lv, "/api/summary?x=1").status_code == 400
    assert get(lv, "/static/plotly.min.js").content.startswith(b"/**")
    assert get(lv, "/").headers["content-type"].startswith("text/html")


def test_the_view_binds_loopback_by_default(lv: LabView) -> None:
    assert lv.view.httpd.server_address[0] == "127.0.0.1"


def test_watching_does_not_change_a_seeded_lab() -> None:
    """The feed samples the consensus with its own random stream: a lab with the view
    refreshing on a training peer after every round builds the tangle it builds without."""

    def run(watch: bool) -> list[tuple[object, ...]]:
        opts = LabOptions(peers=3, transport="memory", seed=5, client_epochs=24)
        lab = MemoryLab(opts, lab_data("digits", 3, 0.5, 5))
        lab.open()
        feed = TangleFeed(lab.trainers[0], score_new=True, min_interval=0.0,
                          consensus_every=0.0)  # a training peer: its choices must not move
        try:
            while lab.epochs < opts.budget:
                lab.round()
                if watch:
                    feed.refresh(force=True)
            tangle = lab.observer.tangle  # ids differ (issue times); the shape must not
            return [(tx.issuer, tuple(sorted(tangle.index_of(p) for p in tx.parents)),
                     tx.metadata.get("accuracy")) for tx in tangle.transactions()]
        finally:
            lab.close()

    assert run(True) == run(False)


def test_an_absurd_issue_time_is_drawn_at_a_sane_one() -> None:
    """created_at is the issuer's claim; a year-33000 transaction must not stretch the axis."""
    from tangle import Transaction

    view = open_lab_view(peers=2, seed=4)
    try:
        view.grow(2)
        tangle = view.lab.observer.tangle
        parent = tangle.tips()[0]
        future = Transaction.create([parent], tangle[parent].weights_cid, "liar", 1e12,
                                    metadata={"accuracy": 0.99})
        past = Transaction.create([parent], tangle[parent].weights_cid, "liar", -5.0)
        tangle.add(future)
        tangle.add(past)
        view.feed.refresh(force=True)
        rows = {t["id"]: t for t in get(view, "/api/tangle").json()["transactions"]}
        assert rows[future.id]["t_claimed"] == 1e12
        assert rows[future.id]["t"] <= time.time() + 600
        assert rows[past.id]["t"] == 0.0 and rows[past.id]["t_claimed"] == -5.0
        assert rows[parent]["t_claimed"] is None
    finally:
        view.close()
