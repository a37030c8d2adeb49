"""A pubsub subscription that survives daemon restarts.

Kubo buffers only 32 messages per subscription and sends no keepalives, so a thread reads the
stream promptly into our own bounded queue, and reconnects with backoff when the stream breaks.
Messages published while the stream is down are lost (pubsub is best-effort); gridd peers
re-announce their state periodically for that reason.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time

import httpx

from gridd.ipfs.client import KuboClient, PubsubMessage
from gridd.ipfs.errors import IPFSError

log = logging.getLogger(__name__)


class Subscription:
    """Reads one topic in a background thread; get() returns messages in arrival order."""

    def __init__(self, client: KuboClient, topic: str, max_queue: int = 10_000) -> None:
        self.client = client
        self.topic = topic
        self.dropped = 0
        self.reconnects = 0
        self.last_error: Exception | None = None
        self._queue: queue.Queue[PubsubMessage] = queue.Queue(maxsize=max_queue)
        self._closed = threading.Event()
        self._connected = threading.Event()
        self._http: httpx.Client | None = None
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, name=f"sub:{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = 0.1
        while not self._closed.is_set():
            self._http = httpx.Client()
            try:
                self._connected.set()
                stream = self.client.pubsub_stream(
                    self.topic, http=self._http, on_open=self._opened
                )
                for msg in stream:
                    backoff = 0.1
                    try:
                        self._queue.put_nowait(msg)
                    except queue.Full:
                        self.dropped += 1
                # Stream ended cleanly: the daemon went away (shutdown) — reconnect.
            except (httpx.HTTPError, IPFSError, ValueError, OSError) as e:
                self.last_error = e
                if not self._closed.is_set():
                    log.debug("subscription %s broke: %s", self.topic, e)
            finally:
                self._connected.clear()
                self._http.close()
            if self._closed.wait(backoff):
                break
            backoff = min(backoff * 2, 2.0)
            self.reconnects += 1

    def _opened(self, resp: httpx.Response) -> None:
        self._response = resp
        if self._closed.is_set():
            _shutdown(resp)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once the daemon lists our topic (the stream is really open)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._closed.is_set():
            try:
                if self.topic in self.client.pubsub_ls():
                    return True
            except IPFSError:
                pass
            time.sleep(0.05)
        return False

    def get(self, timeout: float | None = None) -> PubsubMessage | None:
        """Next message, or None after timeout."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._closed.set()
        if self._response is not None:
            _shutdown(self._response)
        self._thread.join(timeout=5)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


def _shutdown(resp: httpx.Response) -> None:
    """Unblock a read that has no timeout: shut the socket down under the stream."""
    stream = resp.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
