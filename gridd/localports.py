"""Free TCP ports on 127.0.0.1 for processes we start (metrics servers of peers and workers).

Asking the kernel for port 0 and passing the number to a child races: the kernel hands the
same ephemeral ports to every other port-0 listener (Kubo daemons) and to outgoing
connections, so the port can be gone before the child binds it. Ports below the ephemeral
range are never handed out that way, so we pick one there and check that it is free now.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port that nothing listens on now and that the kernel will not give to others."""
    top = _ephemeral_start()
    if top - LOWEST > 100:
        for _ in range(200):
            port = random.randrange(LOWEST, top)
            if _bindable(port):
                return port
    with socket.socket() as s:  # odd port range settings: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
