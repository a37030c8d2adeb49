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
from collections.abc import Callable

import httpx

from gridd.ipfs.client import KuboClient, PubsubMessage
from gridd.ipfs.errors import IPFSError

log = logging.getLogger(__name__)


class Subscription:
    """Reads one topic in a background thread.

    Without `sink`, get() returns messages in arrival order from a queue of at most
    `max_queue` messages. With `sink`, each message is handed to it in the reader thread
    (gridd's node runtime passes a byte-bounded inbox that applies its limits there). If the
    thread dies of an unexpected error, `alive` turns false and `restart()` starts a new one.
    """

    def __init__(self, client: KuboClient, topic: str, max_queue: int = 10_000,
                 sink: Callable[[PubsubMessage], object] | None = None) -> None:
        self.client = client
        self.topic = topic
        self.dropped = 0
        self.reconnects = 0
        self.restarts = 0
        self.last_error: Exception | None = None
        self._queue: queue.Queue[PubsubMessage] = queue.Queue(maxsize=max_queue)
        self._sink = sink
        self._closed = threading.Event()
        self._connected = threading.Event()
        self._http: httpx.Client | None = None
        self._response: httpx.Response | None = None
        self._thread = self._start_thread()

    def _start_thread(self) -> threading.Thread:
        t = threading.Thread(target=self._run_logged, name=f"sub:{self.topic}", daemon=True)
        t.start()
        return t

    @property
    def alive(self) -> bool:
        """False once the reader thread died (closing is not dying)."""
        return self._closed.is_set() or self._thread.is_alive()

    def restart(self) -> None:
        """Start a new reader thread if the old one died."""
        if not self.alive:
            self.restarts += 1
            self._thread = self._start_thread()

    def _run_logged(self) -> None:
        try:
            self._run()
        except BaseException:
            log.exception("subscription reader for %s died; the watchdog restarts it", self.topic)
            raise

    def _deliver(self, msg: PubsubMessage) -> None:
        if self._sink is not None:
            self._sink(msg)
            return
        try:
            self._queue.put_nowait(msg)
        except queue.Full:
            self.dropped += 1

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
                    self._deliver(msg)
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
