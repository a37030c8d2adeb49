"""What a tree peer keeps on disk so a SIGKILL costs nothing: its log and a small state file.

* `tangle.log`: every transaction the peer accepted (inserted or pending), appended with
  tangle's TangleLog (framed + CRC, a torn tail is ignored and cut off on the next append)
  and fsynced, so nothing the peer had seen is lost.
* `state.json`: identity and counters (genesis id, peer id, local epochs, own transactions),
  replaced atomically (write a temp file, fsync, rename, fsync the directory): a reader sees
  the old or the new file, never half of one. A file that still cannot be parsed (edited by
  hand, disk damage) is set aside as state.json.corrupt and the peer starts with fresh
  counters: losing counters must never stop a peer from starting.
* `lock`: flocked by the process using the directory (`lock_state_dir`), with its pid
  inside, so a second process on the same directory is refused instead of interleaving
  its log and counters with the first one's.
"""

from __future__ import annotations

import errno
import fcntl
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
LOCK_FILE = "lock"
STATE_VERSION = 1


class StateError(ValueError):
    """A state directory that belongs to something else (another tangle)."""


class StateLockedError(StateError):
    """Another live process uses the state directory: two peers must never share one."""

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid is not None else "another process (pid not known yet)"
        super().__init__(
            f"state directory {state_dir} is in use by {who}; each peer needs its own: "
            "stop that process, or give this one another --state-dir"
        )
        self.state_dir = state_dir
        self.pid = pid


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


class StateLock:
    """An exclusive flock on `<state dir>/lock`, held until release() or process exit.

    flock rather than a pid file: the kernel drops the lock when its holder dies, even by
    SIGKILL, so a crash never leaves a stale lock behind. The pid written into the file is
    only there to name the holder in the refusal message.
    """

    def __init__(self, state_dir: Path, fd: int) -> None:
        self.state_dir = state_dir
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the directory up (closing the descriptor drops the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_state_dir(state_dir: Path) -> StateLock:
    """Take `state_dir` for this process (creating it), or raise StateLockedError naming
    the process that has it. Not inherited by child processes (O_CLOEXEC)."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _read_pid(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StateLockedError(state_dir, holder) from None
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return StateLock(state_dir, fd)


def _read_pid(fd: int) -> int | None:
    """The pid the holder wrote, or None (it may not have written it yet)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
