"""One identity per gridd role on one Kubo daemon: a notebook, workers and tree peers.

One daemon per machine is the normal case, and several gridd processes share it. If they
all spoke as the daemon's peer id, a worker could not tell a notebook's offer from its own
echo, and two workers would be one. So each process claims a role key in the daemon's
keystore (`gridd-<role>-<n>`, Ed25519, created on first use) and signs with it; its peer
id is the process's identity. A lock file per key (under GRIDD_HOME/identities/<daemon>/)
makes sure two live processes never hold the same key; a restarted process takes the
lowest free one, which is its previous identity when it restarts alone.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gridd.ipfs.client import KuboClient

MAX_KEYS_PER_ROLE = 256
ROLES = ("client", "worker", "tree")


class NoFreeIdentity(RuntimeError):
    """Every role key is held by a running process."""


@dataclass
class RoleKey:
    """A claimed role key: its keystore name, its peer id, and the lock that holds it."""

    name: str
    peer_id: str
    lock: IO[str]

    def release(self) -> None:
        try:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
        finally:
            self.lock.close()


def gridd_home() -> Path:
    return Path(os.environ.get("GRIDD_HOME", Path.home() / ".gridd"))


def claim_role_key(client: KuboClient, role: str, home: Path | None = None,
                   name: str | None = None) -> RoleKey:
    """The lowest free `gridd-<role>-<n>` key of this daemon (or exactly `name`)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    daemon = client.id().peer_id
    folder = (home or gridd_home()) / "identities" / daemon
    folder.mkdir(parents=True, exist_ok=True)
    keys = client.key_list()
    names = [name] if name else [f"gridd-{role}-{n}" for n in range(MAX_KEYS_PER_ROLE)]
    for candidate in names:
        lock = open(folder / f"{candidate}.lock", "a+")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        peer_id = keys.get(candidate) or client.key_gen(candidate)
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        return RoleKey(candidate, peer_id, lock)
    held = name or f"gridd-{role}-0..{MAX_KEYS_PER_ROLE - 1}"
    raise NoFreeIdentity(f"identity {held} on daemon {daemon} is held by another running "
                         f"gridd process (locks in {folder})")
