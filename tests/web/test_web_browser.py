"""The live view in a real browser: Playwright driving Debian's /usr/bin/chromium (headless).

Against a memory lab that the test steps itself: the page loads without console errors,
draws exactly the viewer's transactions, shows a new one within 2 s of its insertion, shows
a transaction's details on hover, and leaves a screenshot under bench-results/.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_helpers import LabView, open_lab_view

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "bench-results" / "web"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]
POINTS = "#tangle .scatterlayer path.point"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():  # bin/test installs it; a bare pytest run may not have it
        subprocess.run([str(ROOT / "bin" / "install_test_tools"), "chromium"], check=True)
    return CHROMIUM


@pytest.fixture(scope="module")
def lab_view() -> Iterator[LabView]:
    lv = open_lab_view(peers=4, seed=3)
    try:
        lv.grow(24)
        yield lv
    finally:
        lv.close()


@pytest.fixture
def page(chromium: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True, args=ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1440, "height": 1100})
            pg.problems = []  # type: ignore[attr-defined]
            pg.on("console", lambda m: m.type == "error" and pg.problems.append(m.text))
            pg.on("pageerror", lambda e: pg.problems.append(str(e)))
            yield pg
        finally:
            browser.close()


def drawn(page: object) -> int:
    return page.locator(POINTS).count()  # type: ignore[attr-defined]


def isolated_point(pg: object, gap: float = 14.0) -> int:
    """The newest point with no other point's centre within `gap` pixels (a mouse on a
    crowded spot hovers the closest centre, which may be a neighbour)."""
    centres = pg.evaluate(  # type: ignore[attr-defined]
        f"[...document.querySelectorAll('{POINTS}')].map(p => {{"
        "const r = p.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })")
    for i in range(len(centres) - 1, 0, -1):
        x, y = centres[i]
        if all((x - a) ** 2 + (y - b) ** 2 >= gap**2 for j, (a, b) in enumerate(centres)
               if j != i):
            return i
    raise AssertionError("every point has a neighbour within the gap")


def hover(pg: object, index: int, tx_id: str, seconds: float = 10.0) -> None:
    """Move the real mouse onto point `index` until the page shows that transaction (a
    redraw between two polls can swallow one hover, so it is tried again)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + seconds
    while True:
        box = pg.locator(POINTS).nth(index).bounding_box()  # type: ignore[attr-defined]
        assert box is not None
        pg.mouse.move(5, 5)  # type: ignore[attr-defined]
        pg.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2,  # type: ignore
                      steps=4)
        try:
            pg.wait_for_function(  # type: ignore[attr-defined]
                f"document.getElementById('details').dataset.tx === '{tx_id}'", timeout=1_000)
            return
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise


def test_page_draws_every_transaction_and_the_new_one_within_2s(lab_view: LabView,
                                                               page: object) -> None:
    pg = page
    pg.goto(lab_view.view.url)  # type: ignore[attr-defined]
    count = lab_view.count
    pg.wait_for_function(  # type: ignore[attr-defined]
        f"document.querySelectorAll('{POINTS}').length === {count}", timeout=15_000)
    assert drawn(pg) == count == len(lab_view.lab.observer.tangle)
    assert pg.locator("#t-count").inner_text() == f"{count:,}"  # type: ignore[attr-defined]

    before = lab_view.count
    after = lab_view.grow(1)  # a peer publishes; the observer inserts; the feed copies
    inserted = time.monotonic()
    pg.wait_for_function(  # type: ignore[attr-defined]
        f"document.querySelectorAll('{POINTS}').length === {after}", timeout=2_000)
    seconds = time.monotonic() - inserted
    assert after > before and seconds < 2.0
    newest = lab_view.lab.observer.tangle.tx_at(after - 1).id
    assert pg.evaluate(  # type: ignore[attr-defined]
        "(id) => document.getElementById('tangle').data[3].customdata"
        ".some(c => id.startsWith(c[0]))", newest)
    assert pg.problems == []  # type: ignore[attr-defined]


def test_hover_shows_details_and_screenshot(lab_view: LabView, page: object) -> None:
    pg = page
    lab_view.grow(12)
    pg.goto(lab_view.view.url)  # type: ignore[attr-defined]
    count = lab_view.count
    pg.wait_for_function(  # type: ignore[attr-defined]
        f"document.querySelectorAll('{POINTS}').length === {count}", timeout=15_000)
    pg.wait_for_function(  # type: ignore[attr-defined]
        "document.querySelectorAll('#accuracy .scatterlayer .trace').length > 0",
        timeout=10_000)
    index = isolated_point(pg)
    tx = lab_view.lab.observer.tangle.tx_at(index)
    hover(pg, index, tx.id)
    details = pg.locator("#details").inner_text()  # type: ignore[attr-defined]
    assert tx.id in details and tx.issuer in details and tx.weights_cid in details
    for parent in tx.parents:
        assert parent[:12] in details
    assert pg.locator(".hoverlayer .hovertext").count() == 1  # type: ignore[attr-defined]
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "view.png"
    pg.screenshot(path=str(shot), full_page=True)  # type: ignore[attr-defined]
    assert shot.stat().st_size > 50_000
    pg.select_option("#window", "500")  # type: ignore[attr-defined]
    pg.select_option("#xaxis", "height")  # type: ignore[attr-defined]
    heights = sorted(lab_view.lab.observer.tangle.height(tx.id)
                     for tx in lab_view.lab.observer.tangle.transactions())
    pg.wait_for_function(  # type: ignore[attr-defined]
        "(top) => { const d = document.getElementById('tangle').data;"
        f" return d && d[3].x.length === {count} && Math.max(...d[3].x) === top; }}",
        arg=heights[-1], timeout=5_000)
    pg.screenshot(path=str(SHOTS / "view-height.png"), full_page=True)  # type: ignore
    assert pg.problems == []  # type: ignore[attr-defined]


def test_thousands_of_transactions_draw_with_webgl(page: object) -> None:
    """Past GL_ABOVE points the tangle is drawn with WebGL traces: all of the window is
    drawn, hovering still shows details, and nothing errs."""
    from gridd.bench.view import _filled_peer
    from gridd.web.feed import TangleFeed
    from gridd.web.server import WebView

    peer = _filled_peer(3_000)
    feed = TangleFeed(peer)
    feed.refresh(force=True)
    pg = page
    try:
        with WebView(feed) as view:
            pg.goto(view.url)  # type: ignore[attr-defined]
            pg.select_option("#window", "2000")  # type: ignore[attr-defined]
            pg.wait_for_function(  # type: ignore[attr-defined]
                "(() => { const d = document.getElementById('tangle').data;"
                " return d && d[3].type === 'scattergl' && d[3].x.length === 2000; })()",
                timeout=20_000)
            ids = pg.evaluate(  # type: ignore[attr-defined]
                "document.getElementById('tangle').data[3].customdata.map(c => c[0])")
            tangle = peer.tangle
            assert ids == [tangle.tx_at(i).id[:16] for i in range(1_000, 3_000)]
            box = pg.locator("#tangle .nsewdrag").first.bounding_box()  # type: ignore
            assert box is not None
            pg.mouse.move(box["x"] + box["width"] * 0.6,  # type: ignore[attr-defined]
                          box["y"] + box["height"] * 0.5, steps=4)
            pg.wait_for_function(  # type: ignore[attr-defined]
                "document.getElementById('details').dataset.tx !== undefined", timeout=5_000)
            shown = pg.evaluate("document.getElementById('details').dataset.tx")  # type: ignore
            assert shown in tangle
            assert pg.problems == []  # type: ignore[attr-defined]
    finally:
        peer.close()
