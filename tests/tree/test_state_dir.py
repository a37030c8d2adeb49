"""A tree peer's state directory is its own: per identity by default, and locked.

Issue 11: three `start_worker --tree --genesis G --data peerN.npz` on one daemon all wrote
to ~/.gridd/tree/<genesis>, interleaving their logs and counters, with only a warning. Now
the default is one directory per identity, and a process holds its directory with a flock
that refuses a second one by name and pid (and that the kernel drops when its holder dies,
even by SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tree_helpers import DIGITS

from gridd.data import Dataset, save_npz
from gridd.ipfs.cluster import LocalCluster
from gridd.transport import IpfsStore
from gridd.tree.cli import STATE_ROOT_ENV, default_state_dir
from gridd.tree.genesis import create_genesis
from gridd.tree.state import (
    LOCK_FILE,
    STATE_FILE,
    StateError,
    StateLockedError,
    lock_state_dir,
)

BIN = Path(sys.executable).parent
GENESIS = "ab" * 32
HOLDER = """
import sys
from pathlib import Path
from gridd.tree.state import lock_state_dir
lock = lock_state_dir(Path(sys.argv[1]))
print("locked", flush=True)
sys.stdin.read()  # hold it until the test closes stdin or kills us
"""


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    running: list[subprocess.Popen[str]] = []
    yield running
    for p in running:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def test_default_state_dir_is_per_identity(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ROOT_ENV, str(tmp_path))
    a = default_state_dir(GENESIS, "12D3KooWAlice")
    b = default_state_dir(GENESIS, "12D3KooWBob")
    assert a == tmp_path / GENESIS[:16] / "12D3KooWAlice"
    assert a != b and a.parent == b.parent
    monkeypatch.delenv(STATE_ROOT_ENV)
    assert default_state_dir(GENESIS, "x") == Path.home() / ".gridd" / "tree" / GENESIS[:16] / "x"
    assert default_state_dir(GENESIS, "x", root=tmp_path) == tmp_path / GENESIS[:16] / "x"
    for bad in ("", ".", "..", "a/b", "../up"):
        with pytest.raises(ValueError, match="cannot name a state directory"):
            default_state_dir(GENESIS, bad)


def test_a_second_process_is_refused_by_name_and_pid_until_the_first_dies(
        tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    state = tmp_path / "g" / "peer"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(holder)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    with pytest.raises(StateLockedError) as refused:
        lock_state_dir(state)
    assert refused.value.pid == holder.pid and refused.value.state_dir == state
    assert f"state directory {state} is in use by process {holder.pid}" in str(refused.value)
    assert "--state-dir" in str(refused.value)
    assert isinstance(refused.value, StateError)  # callers that catch StateError still do
    holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the flock
    holder.wait(10)
    with lock_state_dir(state) as lock:
        assert lock.held
        assert (state / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(StateLockedError, match=f"process {os.getpid()}"):
            lock_state_dir(state)  # a second open file in this process conflicts too
    assert not lock.held
    lock_state_dir(state).release()  # released: free again


def _wait_for_join(proc: subprocess.Popen[str]) -> str:
    """The worker's stderr up to its 'joined tangle' line (or its end, if it exits)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if " joined tangle " in line:
            break
    return "".join(seen)


@pytest.mark.kubo
def test_workers_on_one_daemon_get_their_own_state_and_a_shared_one_is_refused(
        kubo3: LocalCluster, tmp_path: Path, shards: list[Dataset],
        procs: list[subprocess.Popen[str]]) -> None:
    genesis_id = create_genesis(IpfsStore(kubo3.clients[0]), DIGITS, init_seed=11)
    root = tmp_path / "state"
    env = dict(os.environ, MODEL="no_tf", GRIDD_IPFS_API=str(kubo3.daemons[0].api_address()),
               GRIDD_HOME=str(tmp_path / "home"), **{STATE_ROOT_ENV: str(root)})
    env.pop("TRAINING_INTERVAL", None)
    base = [str(BIN / "start_worker"), "--tree", "--genesis", genesis_id,
            "--training-interval", "1000", "--logger", "none"]
    workers = []
    for i in range(2):  # as in the issue: same daemon, same genesis, no --state-dir
        data = tmp_path / f"peer{i}.npz"
        save_npz(data, shards[i])
        p = subprocess.Popen([*base, "--data", str(data)], env=env, stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True)
        procs.append(p)
        out = _wait_for_join(p)
        assert p.poll() is None, out
        workers.append(p)
    dirs = sorted(d for d in (root / genesis_id[:16]).iterdir() if d.is_dir())
    assert len(dirs) == 2, dirs  # one directory per identity
    holders = {int((d / LOCK_FILE).read_text()) for d in dirs}
    assert holders == {p.pid for p in workers}
    for d in dirs:
        assert f'"peer_id": "{d.name}"' in (d / STATE_FILE).read_text()
    assert not (root / genesis_id[:16] / STATE_FILE).exists()  # nobody writes the old default

    owner = next(p for p in workers if int((dirs[0] / LOCK_FILE).read_text()) == p.pid)
    third = subprocess.run([*base, "--observer", "--state-dir", str(dirs[0])], env=env,
                           capture_output=True, text=True, timeout=60)
    assert third.returncode == 2, third.stderr  # a usage error, before anything is written
    assert f"state directory {dirs[0]} is in use by process {owner.pid}" in third.stderr
    for p in workers:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
