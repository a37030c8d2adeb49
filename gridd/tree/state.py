"""What a tree peer keeps on disk so a SIGKILL costs nothing: its log and a small state file.

* `tangle.log`: every transaction the peer accepted (inserted or pending), appended with
  tangle's TangleLog (framed + CRC, a torn tail is ignored and cut off on the next append)
  and fsynced, so nothing the peer had seen is lost.
* `state.json`: identity and counters (genesis id, peer id, local epochs, own transactions),
  replaced atomically (write a temp file, fsync, rename, fsync the directory): a reader sees
  the old or the new file, never half of one. A file that still cannot be parsed (edited by
  hand, disk damage) is set aside as state.json.corrupt and the peer starts with fresh
  counters: losing counters must never stop a peer from starting.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOG_FILE = "tangle.log"
STATE_VERSION = 1


class StateError(ValueError):
    """A state directory that belongs to something else (another tangle)."""


@dataclass
class PeerState:
    genesis_id: str
    peer_id: str = ""
    client_epochs: int = 0
    trainings: int = 0
    published: list[str] = field(default_factory=list)
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PeerState:
        data: Any = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("genesis_id"), str):
            raise ValueError("not a gridd tree state file")
        published = data.get("published", [])
        return cls(
            genesis_id=data["genesis_id"],
            peer_id=str(data.get("peer_id", "")),
            client_epochs=int(data.get("client_epochs", 0)),
            trainings=int(data.get("trainings", 0)),
            published=[str(p) for p in published] if isinstance(published, list) else [],
        )


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def load_state(state_dir: Path, genesis_id: str) -> PeerState:
    """The saved state, or a fresh one. StateError if the directory is another tangle's."""
    path = state_dir / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return PeerState(genesis_id)
    except OSError as e:
        log.warning("cannot read %s (%s); starting with fresh counters", path, e)
        return PeerState(genesis_id)
    try:
        state = PeerState.from_json(text)
    except (ValueError, TypeError) as e:
        corrupt = path.with_name(STATE_FILE + ".corrupt")
        log.warning("%s is unreadable (%s); kept as %s, starting with fresh counters",
                    path, e, corrupt.name)
        try:
            os.replace(path, corrupt)
        except OSError:
            pass
        return PeerState(genesis_id)
    if state.genesis_id != genesis_id:
        raise StateError(
            f"state directory {state_dir} belongs to tangle {state.genesis_id}, not "
            f"{genesis_id}; use another --state-dir"
        )
    return state


def save_state(state_dir: Path, state: PeerState) -> None:
    write_atomic(state_dir / STATE_FILE, state.to_json().encode())
