"""Two "hosts" in Linux network namespaces, joined by one veth link that a test can cut.

    host a (netns)                                   host b (netns)
    10.77.0.1/24  <======== data veth (cut) ========>  10.77.0.2/24   Kubo swarms listen here
    10.78.K.2/30  <-- mgmt veth -- root netns -- mgmt veth -->  10.78.K.6/30   Kubo RPC APIs

The data link carries everything between the hosts' daemons; `cut()` takes it down on both
ends (no route, no packets), `heal()` brings it back. The management links only let this
process (and the workers, which run in the root namespace) reach each daemon's RPC API, so a
worker never loses its own daemon: only the hosts lose each other. Forwarding stays off in
the root namespace and the hosts have no default route, so nothing crosses over mgmt.
Needs root and iproute2 (`ip`); installed with apt-get if missing.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import subprocess
from dataclasses import dataclass

DATA_NET = "10.77.0"


def ensure_iproute2() -> None:
    """`ip` is all we need; install iproute2 only if it is missing (idempotent)."""
    if shutil.which("ip"):
        return
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-qq", "iproute2"], check=True, env=env,
                   timeout=300)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Host:
    netns: str
    data_if: str  # the host's end of the data link
    data_ip: str  # where its daemons' swarms listen
    mgmt_ip: str  # where its daemons' APIs listen

    @property
    def prefix(self) -> list[str]:
        """Command prefix that runs a program on this host."""
        return ["ip", "netns", "exec", self.netns]


class TwoHosts:
    """Create with `TwoHosts().setup()`; always `teardown()` (also after a failed setup)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.tag = tag
        k = self._free_mgmt_octet()
        self.a = Host(f"gf{tag}a", f"gd{tag}a", f"{DATA_NET}.1", f"10.78.{k}.2")
        self.b = Host(f"gf{tag}b", f"gd{tag}b", f"{DATA_NET}.2", f"10.78.{k}.6")
        self._mgmt = [(self.a, f"gm{tag}a", f"10.78.{k}.1"), (self.b, f"gm{tag}b",
                                                              f"10.78.{k}.5")]
        self.cut_now = False

    @staticmethod
    def _free_mgmt_octet() -> int:
        """A 10.78.K.0/29 no interface of the root namespace uses yet."""
        used = ip("-4", "-o", "addr", "show").stdout
        taken = {ipaddress.ip_interface(w).ip for w in used.split() if w.count(".") == 3
                 and "/" in w}
        for _ in range(64):
            k = secrets.randbelow(250)
            net = ipaddress.ip_network(f"10.78.{k}.0/29")
            if not any(addr in net for addr in taken):
                return k
        raise RuntimeError("no free 10.78.K.0/29 for the management links")

    def setup(self) -> TwoHosts:
        a, b = self.a, self.b
        for h in (a, b):
            ip("netns", "add", h.netns)
            ip("-n", h.netns, "link", "set", "lo", "up")
        ip("link", "add", a.data_if, "type", "veth", "peer", "name", b.data_if)
        for h in (a, b):
            ip("link", "set", h.data_if, "netns", h.netns)
            ip("-n", h.netns, "addr", "add", f"{h.data_ip}/24", "dev", h.data_if)
            ip("-n", h.netns, "link", "set", h.data_if, "up")
        for h, root_if, root_ip in self._mgmt:
            inner = root_if + "i"
            ip("link", "add", root_if, "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", h.netns)
            ip("addr", "add", f"{root_ip}/30", "dev", root_if)
            ip("link", "set", root_if, "up")
            ip("-n", h.netns, "addr", "add", f"{h.mgmt_ip}/30", "dev", inner)
            ip("-n", h.netns, "link", "set", inner, "up")
        return self

    def cut(self) -> None:
        """Partition: the data link goes down on both ends."""
        self.cut_now = True
        for h in (self.a, self.b):
            ip("-n", h.netns, "link", "set", h.data_if, "down")

    def heal(self) -> None:
        for h in (self.a, self.b):
            ip("-n", h.netns, "link", "set", h.data_if, "up")
        self.cut_now = False

    def teardown(self) -> None:
        """Delete both namespaces (their veth ends, and so the pairs, go with them)."""
        for h in (self.a, self.b):
            ip("netns", "del", h.netns, check=False)
        for _, root_if, _ in self._mgmt:
            ip("link", "del", root_if, check=False)
