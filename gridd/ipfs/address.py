"""Parse the Kubo API address, which users give as a multiaddr or as a URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_API = "/ip4/127.0.0.1/tcp/5001"
API_ENV = "GRIDD_IPFS_API"


@dataclass(frozen=True)
class ApiAddress:
    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def multiaddr(self) -> str:
        proto = "ip6" if ":" in self.host else ("ip4" if _is_ipv4(self.host) else "dns")
        return f"/{proto}/{self.host}/tcp/{self.port}"


def _is_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and 0 <= int(p) <= 255 for p in parts)


def repo_api_address() -> str | None:
    """The API address a running daemon wrote to its repo ($IPFS_PATH, default
    $GRIDD_HOME/ipfs), as the ipfs CLI finds it; None if there is none."""
    home = Path(os.environ.get("GRIDD_HOME") or Path.home() / ".gridd")
    repo = Path(os.environ.get("IPFS_PATH") or home / "ipfs")
    try:
        text = (repo / "api").read_text().strip()
    except OSError:
        return None
    return text or None


def parse_api_address(addr: str | None = None) -> ApiAddress:
    """Accept /ip4/H/tcp/P, /ip6/H/tcp/P, /dns*/H/tcp/P, http(s)://H:P or H:P.

    None means $GRIDD_IPFS_API, then the address the daemon of $IPFS_PATH (default
    ~/.gridd/ipfs) wrote to its repo, then the Kubo default /ip4/127.0.0.1/tcp/5001.
    """
    if addr is None:
        addr = os.environ.get(API_ENV) or repo_api_address() or DEFAULT_API
    addr = addr.strip()
    if addr.startswith("/"):
        parts = [p for p in addr.split("/") if p]
        known = ("ip4", "ip6", "dns", "dns4", "dns6")
        if len(parts) < 4 or parts[0] not in known or parts[2] != "tcp":
            raise ValueError(
                f"cannot read API address {addr!r}: expected e.g. /ip4/127.0.0.1/tcp/5001"
            )
        scheme = "https" if "https" in parts[4:] else "http"
        return ApiAddress(scheme, parts[1], _port(parts[3], addr))
    if "://" not in addr:
        addr = "http://" + addr
    u = urlsplit(addr)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"cannot read API address {addr!r}: expected http://host:port")
    return ApiAddress(u.scheme, u.hostname, u.port or (443 if u.scheme == "https" else 5001))


def _port(text: str, addr: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"cannot read API address {addr!r}: bad port {text!r}")
    return int(text)
