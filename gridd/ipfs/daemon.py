"""Find, initialise and run Kubo daemons: the user's node, the lab's peers, the tests' peers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from gridd.ipfs.client import KuboClient
from gridd.ipfs.errors import IPFSError

GRIDD_HOME = Path(os.environ.get("GRIDD_HOME", Path.home() / ".gridd"))
STORAGE_MAX_ENV = "GRIDD_STORAGE_MAX"
DEFAULT_STORAGE_MAX = "10GB"
_SIZE = re.compile(r"^\d+(\.\d+)?\s*([kKMGT]i?B|B)?$")


def check_storage_max(value: str) -> str:
    """A Datastore.StorageMax Kubo understands (10GB, 500MB, 2TiB, bytes); ValueError if not."""
    text = value.strip()
    if not _SIZE.match(text):
        raise ValueError(f"storage max: expected a size such as 10GB or 500MB, got {value!r}")
    return text.replace(" ", "")


class KuboNotInstalled(IPFSError):
    def __init__(self) -> None:
        super().__init__(
            "ERROR: no Kubo 'ipfs' binary found. Install it with ./bin/install_ipfs "
            "(builds Kubo from its Go module), or put an ipfs >= 0.40 on your PATH."
        )


def find_ipfs() -> str:
    """$GRIDD_IPFS_BIN, then ~/.gridd/bin/ipfs (what bin/install_ipfs installs), then PATH."""
    for candidate in (os.environ.get("GRIDD_IPFS_BIN"), str(GRIDD_HOME / "bin" / "ipfs")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("ipfs")
    if found:
        return found
    raise KuboNotInstalled()


def default_repo() -> Path:
    return Path(os.environ.get("IPFS_PATH") or GRIDD_HOME / "ipfs")


class KuboDaemon:
    """One Kubo daemon with its own repo.

    local_only=True is the test/lab profile: loopback only, random ports, no bootstrap, no DHT.
    Otherwise the repo keeps Kubo's defaults (joins the public network) with pubsub enabled.
    api_host/swarm_host put a local_only daemon on other addresses than 127.0.0.1, and
    `prefix` runs the daemon under a wrapper: a test "host" in a network namespace is
    `prefix=["ip", "netns", "exec", name]` with its swarm on that namespace's address.
    `storage_max` sets Datastore.StorageMax (e.g. "10GB"), and `gc` starts the daemon with
    --enable-gc, so blocks gridd unpinned really go once the repo nears that size (Kubo
    collects when the repo passes StorageGCWatermark, 90 %, checked every GCPeriod, 1 h).
    """

    def __init__(
        self,
        repo: Path | str | None = None,
        binary: str | None = None,
        local_only: bool = False,
        api_port: int | None = None,
        swarm_port: int | None = None,
        pubsub: bool = True,
        api_host: str = "127.0.0.1",
        swarm_host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
        storage_max: str | None = None,
        gc: bool = False,
    ) -> None:
        self.repo = Path(repo) if repo else default_repo()
        self.binary = binary or find_ipfs()
        self.local_only = local_only
        self.api_port = api_port
        self.swarm_port = swarm_port
        self.pubsub = pubsub
        self.api_host = api_host
        self.swarm_host = swarm_host
        self.prefix = tuple(prefix)
        self.storage_max = check_storage_max(storage_max) if storage_max else None
        self.gc = gc
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.repo / "daemon.log"

    # -- repo ---------------------------------------------------------------------------------

    def _ipfs(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "IPFS_PATH": str(self.repo)}
        return subprocess.run(
            [self.binary, *args], env=env, capture_output=True, text=True, check=check, timeout=60
        )

    def config(self, key: str, value: object) -> None:
        self._ipfs("config", "--json", key, json.dumps(value))

    def initialised(self) -> bool:
        return (self.repo / "config").exists()

    def init(self) -> None:
        """Create the repo if needed and make sure pubsub is on (config, not the old flag)."""
        self.repo.mkdir(parents=True, exist_ok=True)
        if not self.initialised():
            args = ["init", "--empty-repo"]
            if self.local_only:
                args.append("--profile=test")
            self._ipfs(*args)
        self.config("Pubsub.Enabled", self.pubsub)
        if self.storage_max:
            self.config("Datastore.StorageMax", self.storage_max)
        if self.local_only:
            api = f"/ip4/{self.api_host}/tcp/{self.api_port or 0}"
            swarm = f"/ip4/{self.swarm_host}/tcp/{self.swarm_port or 0}"
            self.config("Addresses.API", api)
            self.config("Addresses.Gateway", [])
            self.config("Addresses.Swarm", [swarm])
            self.config("Addresses.Announce", [])
            self.config("Addresses.NoAnnounce", [])
            self.config("Bootstrap", [])
            self.config("Routing.Type", "none")
            self.config("Discovery.MDNS.Enabled", False)
            self.config("AutoConf.Enabled", False)
            self.config("AutoTLS.Enabled", False)
            self.config("Swarm.RelayClient.Enabled", False)
            self.config("Swarm.RelayService.Enabled", False)
            self.config("Swarm.Transports.Network.Websocket", False)
            self.config("Swarm.Transports.Network.QUIC", False)
            self.config("Swarm.Transports.Network.WebTransport", False)
            self.config("Swarm.Transports.Network.WebRTCDirect", False)
            self.config("Swarm.ResourceMgr.Enabled", False)
            self.config("DNS.Resolvers", {})
            self.config("Routing.DelegatedRouters", [])
            self.config("Ipns.DelegatedPublishers", [])
            self.config("Provide.Enabled", False)

    # -- process --------------------------------------------------------------------------------

    def api_address(self) -> str | None:
        """The real API multiaddr the running daemon wrote to $IPFS_PATH/api."""
        try:
            return (self.repo / "api").read_text().strip() or None
        except FileNotFoundError:
            return None

    def start(self, timeout: float = 60.0) -> KuboClient:
        """Start the daemon and wait until its API answers; returns a client for it."""
        if not self.initialised() or self.local_only:
            self.init()
        (self.repo / "api").unlink(missing_ok=True)
        env = {**os.environ, "IPFS_PATH": str(self.repo), "GOLOG_LOG_LEVEL": "error"}
        env.update(go_memory_limit())
        if self.local_only:
            env["IPFS_TELEMETRY"] = "off"  # lab/test nodes never phone home
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*self.prefix, self.binary, "daemon", "--migrate=true",
                 *(["--enable-gc"] if self.gc else [])],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        (self.repo / PID_FILE).write_text(f"{self.process.pid}\n")  # for `gridd ipfs stop`
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise IPFSError(
                    f"ipfs daemon exited with code {self.process.returncode}; "
                    f"last log lines:\n{self.tail_log()}"
                )
            addr = self.api_address()
            if addr:
                client = KuboClient(addr)
                try:
                    client.id()
                    if self.local_only and self.api_port is None:
                        # Keep the same API port across restarts so clients can reconnect.
                        self.api_port = int(addr.rstrip("/").split("/")[-1])
                    return client
                except IPFSError:
                    client.close()
            time.sleep(0.1)
        self.stop()
        raise IPFSError(f"ipfs daemon did not answer within {timeout:.0f}s:\n{self.tail_log()}")

    def tail_log(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT (clean shutdown); a second SIGINT forces it (Kubo waits for open pubsub
        streams otherwise); SIGKILL the process group if it still lingers."""
        p = self.process
        if p is None or p.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, 2.0), (signal.SIGINT, timeout)):
            try:
                os.killpg(p.pid, sig)
                p.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no clean shutdown, repo lock left."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


MEMLIMIT_ENV = "GRIDD_KUBO_MEMLIMIT"
DEFAULT_MEMLIMIT = "256MiB"


def go_memory_limit() -> dict[str, str]:
    """GOMEMLIMIT for the daemons gridd starts: Go's collector otherwise lets a flood of
    1 MiB pubsub messages (dropped by gridd, but decoded by Kubo first) grow the daemon by
    hundreds of MB before it collects; the limit makes it collect sooner (a 30 s flood_tree
    of `python -m gridd.bench.attack`: +245 MB without, +226 MB with it; about twice that
    rate: +435 MB without, +247 MB with).
    GRIDD_KUBO_MEMLIMIT overrides it ("off": Go's default); a GOMEMLIMIT already set wins."""
    if "GOMEMLIMIT" in os.environ:
        return {}
    value = os.environ.get(MEMLIMIT_ENV, DEFAULT_MEMLIMIT).strip()
    return {} if value.lower() in ("", "off", "none") else {"GOMEMLIMIT": value}


PID_FILE = "gridd-daemon.pid"


def stop_repo_daemon(repo: Path, timeout: float = 15.0) -> bool:
    """Stop the daemon gridd started for `repo` (`gridd ipfs stop`); False if none runs.

    Kubo 0.43 started with --enable-gc does not act on `ipfs shutdown` (the RPC returns, the
    process stays), but it does shut down cleanly on SIGINT: so gridd signals the process it
    recorded, a second SIGINT forces it, and SIGKILL is the last resort.
    """
    pid_path = Path(repo) / PID_FILE
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"ipfs" not in f.read():  # the pid was reused by something else
                pid_path.unlink(missing_ok=True)
                return False
    except OSError:
        pid_path.unlink(missing_ok=True)
        return False
    for sig, wait in ((signal.SIGINT, 3.0), (signal.SIGINT, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            break
    pid_path.unlink(missing_ok=True)
    (Path(repo) / "api").unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False
