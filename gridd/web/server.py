"""The web view's HTTP server: stdlib ThreadingHTTPServer in a daemon thread.

Why stdlib: the view serves a handful of read-only GETs (one page, three static files, a
JSON API) to one or a few browsers; http.server does that with no dependency, and running
it in its own threads keeps it off the peer's message loop (it reads only the feed's
copies, see gridd.web.feed). Bound to 127.0.0.1 unless told otherwise: the view shows who
trains what, which is nobody else's business by default.

The page draws with plotly.js, served from the `plotly` PyPI package's own bundled
plotly.min.js (read once, kept in memory): nothing comes from a CDN and no third-party
JavaScript is copied into this repository.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gridd.web import api
from gridd.web.feed import TangleFeed

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PAGES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/static/app.css": ("app.css", "text/css; charset=utf-8")}
MAX_URL = 2_048
MAX_PARAMS = 8


def plotly_js() -> bytes:
    """plotly.min.js as shipped inside the installed `plotly` package."""
    return resources.files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()


class WebView:
    """Serve one feed (and job providers) at http://host:port/ until close()."""

    def __init__(self, feed: TangleFeed, *, host: str = "127.0.0.1", port: int = 0,
                 providers: Mapping[str, api.Provider] | None = None, title: str = "gridd") -> None:
        self.feed = feed
        self.providers = dict(providers or {})
        self.title = title
        self.requests = 0
        self._plotly: bytes | None = None
        self._lock = threading.Lock()
        view = self

        class Handler(_Handler):
            owner = view

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="gridd-web",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{port}/"

    def start(self) -> WebView:
        self._thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> WebView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def plotly(self) -> bytes:
        with self._lock:
            if self._plotly is None:
                self._plotly = plotly_js()
            return self._plotly

    def answer(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """The JSON for an /api/ path; ApiError for bad requests."""
        feed = self.feed
        if path == "/api/tangle":
            return api.tangle(feed, params)
        if path == "/api/peers":
            return api.peers(feed, params)
        if path == "/api/jobs":
            return api.jobs(self.providers, params)
        if path == "/api/accuracy":
            return api.accuracy(feed, params)
        if path == "/api/summary":
            api._only(params, ())
            out = api.summary(feed)
            out["title"] = self.title
            return out
        raise api.ApiError(f"no such endpoint {path[:80]!r}; see /api/summary, /api/tangle, "
                           "/api/peers, /api/jobs, /api/accuracy", status=404)


class _Handler(BaseHTTPRequestHandler):
    owner: WebView
    server_version = "gridd-web"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("web: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802
        self.owner.requests += 1
        if len(self.path) > MAX_URL:
            self._json(414, {"error": f"URL longer than {MAX_URL} characters"})
            return
        parts = urlsplit(self.path)
        pairs = parse_qsl(parts.query, keep_blank_values=True, max_num_fields=MAX_PARAMS) \
            if parts.query else []
        params: dict[str, str] = {}
        for name, value in pairs:
            if name in params:
                self._json(400, {"error": f"{name}: given twice"})
                return
            params[name] = value
        path = parts.path
        if path.startswith("/api/"):
            try:
                body = self.owner.answer(path, params)
            except api.ApiError as e:
                self._json(e.status, {"error": str(e)})
                return
            self._json(200, body)
        elif path == "/static/plotly.min.js":
            self._send(200, self.owner.plotly(), "text/javascript; charset=utf-8",
                       cache="public, max-age=86400")
        elif path in PAGES:
            name, kind = PAGES[path]
            self._send(200, (STATIC / name).read_bytes(), kind)
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._json(404, {"error": f"not found: {path[:80]!r}"})

    def do_POST(self) -> None:  # noqa: N802
        self._json(405, {"error": "the view is read-only: GET only"})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":"), allow_nan=False,
                          default=str).encode()
        self._send(status, data, "application/json")

    def _send(self, status: int, data: bytes, kind: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_HEAD = do_GET
