"""Errors a user can act on: each message says what is wrong and the command that fixes it."""

from __future__ import annotations

START_HINT = (
    "Start it with:  ./bin/start_ipfs   "
    "(or: ipfs config --json Pubsub.Enabled true && ipfs daemon)"
)


class IPFSError(Exception):
    """Base class for everything that goes wrong talking to Kubo."""


class IPFSUnreachable(IPFSError):
    """Nothing answers at the API address."""

    def __init__(self, host: str, port: int, cause: str = "") -> None:
        self.host, self.port = host, port
        msg = (
            f"ERROR: could not connect to IPFS. Is your daemon running with pubsub support "
            f"at {host} on port {port}?\n{START_HINT}"
        )
        if cause:
            msg += f"\n(cause: {cause})"
        super().__init__(msg)


class IPFSApiError(IPFSError):
    """Kubo answered with an error (HTTP status and its message)."""

    def __init__(self, endpoint: str, status: int, message: str) -> None:
        self.endpoint, self.status, self.message = endpoint, status, message
        super().__init__(f"IPFS {endpoint} failed (HTTP {status}): {message}")


class PubsubDisabled(IPFSError):
    """The daemon runs without pubsub."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "ERROR: pubsub is disabled on your IPFS daemon. Enable it and restart the daemon:\n"
            "  ipfs config --json Pubsub.Enabled true\n"
            "  ipfs shutdown && ipfs daemon        (or ./bin/start_ipfs)"
            + (f"\n(daemon said: {detail})" if detail else "")
        )


class NoTopicPeers(IPFSError):
    """Nobody else is subscribed to a topic, so messages reach no one."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        super().__init__(
            f"No peers are subscribed to topic {topic!r}. Connect to a peer that runs gridd:\n"
            "  gridd peers connect /ip4/<their-ip>/tcp/4001/p2p/<their-peer-id>\n"
            "  (they print that address with ./bin/start_ipfs or `gridd peers`)"
        )


class ContentTooLarge(IPFSError):
    """Content exceeds the caller's size cap; nothing larger than the cap was read."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        super().__init__(f"{what} is larger than the limit of {limit} bytes (at least {size})")


class ContentUnavailable(IPFSError):
    """A CID could not be fetched in time (no provider reachable, or a bad CID)."""

    def __init__(self, cid: str, reason: str) -> None:
        self.cid = cid
        super().__init__(f"could not fetch {cid}: {reason}")
