"""Execute the quickstart notebooks under nbclient against a local lab: for the notebook
tests, and for bin/run_notebooks, which writes the outputs back so they read on the web.

The lab is README's "Try it on one machine": one loopback-only Kubo daemon in ~/.gridd/ipfs,
compute workers and tree peers on it (each gridd process its own identity), ~/gridd-demo
written by `gridd example-data` and `gridd genesis`, and nothing configured: every process
finds the daemon and the compute topic as a user's would. HOME is a folder of the lab for
every process it starts (the kernel included), so the user's ~/.gridd and ~/gridd-demo are
never touched, and the daemon connects to nothing, so the default topics are the lab's own.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
COMPUTE = NOTEBOOKS / "compute_quickstart.ipynb"
TREE = NOTEBOOKS / "tree_quickstart.ipynb"
FEDERATED = NOTEBOOKS / "federated_quickstart.ipynb"
BIN = Path(sys.executable).parent
# the user's own settings, which must not leak into the lab
USER_SETTINGS = ("IPFS_PATH", "GRIDD_HOME", "GRIDD_IPFS_API", "GRIDD_COMPUTE_TOPIC",
                 "GRIDD_TREE_STATE", "GRIDD_COMPUTE_STATE", "TRAINING_INTERVAL", "MODEL")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# what TensorFlow writes on stderr when it loads, whatever TF_CPP_MIN_LOG_LEVEL says
TF_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)|"
                      r"I0000 00:00:\S+ +\d+ port\.cc:\d+\] oneDNN custom operations")


def _command(name: str) -> list[str]:
    """A console script of this interpreter's environment (or -c in a bare dev tree)."""
    exe = BIN / name
    if exe.exists():
        return [str(exe)]
    entry = {"gridd": "from gridd.cli import main; main()",
             "start_worker": "from gridd.cli import start_worker_main; start_worker_main()"}[name]
    return [sys.executable, "-c", entry]


class Child:
    """A background process of the lab (its own session), logging to a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path,
                 metrics_port: int | None = None) -> None:
        self.log_path = log
        self.metrics_port = metrics_port
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.log_path.stem} exited with {self.proc.returncode}:\n"
                               + "\n".join(self.log().splitlines()[-20:]))

    def metric(self, name: str) -> float:
        from gridd.lab.processes import scrape

        assert self.metrics_port is not None
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics").get(name, 0.0)

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL if it does not end within 15 s."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass


def wait_until(check: Any, what: str, timeout: float, children: list[Child]) -> None:
    """Poll `check()` until true; fail early if a lab process died, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        for c in children:
            c.check_alive()
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {c.log_path.name}\n{c.log()[-2000:]}" for c in children)
            raise TimeoutError(f"{what} not after {timeout:.0f} s\n{logs}")
        time.sleep(0.2)


class Lab:
    """One Kubo daemon with compute workers and tree peers on it, and a HOME of its own."""

    def __init__(self, root: Path) -> None:
        from gridd.ipfs.daemon import KuboDaemon

        self.root = root
        self.home = root / "home"
        self.demo = self.home / "gridd-demo"
        self.daemon = KuboDaemon(self.home / ".gridd" / "ipfs", local_only=True)
        self.children: list[Child] = []

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every lab process: the lab's HOME and none of the user's
        gridd settings (so ~/.gridd/ipfs is the daemon, and the topics are the defaults)."""
        env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
        env.update(HOME=str(self.home), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
                   PYTHONWARNINGS="ignore::DeprecationWarning")
        env.update(extra)
        return env

    def start(self) -> Lab:
        self.home.mkdir(parents=True, exist_ok=True)
        self.daemon.start().close()
        return self

    def gridd(self, *args: str) -> str:
        """Run a gridd command in the lab; its stdout."""
        r = subprocess.run([*_command("gridd"), *args], env=self.env(), cwd=self.home,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"gridd {' '.join(args)} failed:\n{r.stderr}")
        return r.stdout

    def compute_workers(self, n: int = 2) -> None:
        """`start_worker --compute` n times, until each is subscribed (READY in its log)."""
        made = []
        for i in range(n):
            argv = [*_command("start_worker"), "--compute"]
            made.append(Child(argv, self.env(), self.root / f"compute{i}.log"))
        self.children += made
        wait_until(lambda: all("READY " in c.log() for c in made), "compute workers ready",
                   180, made)

    def federated_workers(self, n: int = 3) -> None:
        """README's federated setup: example data for n workers, each `start_worker
        --compute --dataset digits=~/gridd-demo/peerI.npz`, until each is subscribed."""
        self.gridd("example-data", "--peers", str(n), "--out", str(self.demo))
        made = []
        for i in range(n):
            argv = [*_command("start_worker"), "--compute", "--dataset",
                    f"digits={self.demo / f'peer{i}.npz'}"]
            made.append(Child(argv, self.env(), self.root / f"federated{i}.log"))
        self.children += made
        wait_until(lambda: all("READY " in c.log() for c in made), "federated workers ready",
                   180, made)

    def tree_peers(self, n: int = 2, transactions: int = 2, interval: float = 2.0) -> str:
        """README's tree setup: example data for n peers, a genesis, n `start_worker --tree`
        (pure numpy, to spare the CPU), until they published `transactions` between them.
        Returns the genesis id."""
        from gridd.localports import free_port

        self.gridd("example-data", "--peers", str(n), "--out", str(self.demo))
        genesis = self.gridd("genesis", "--model", "digits_mlp").strip()
        (self.demo / "genesis").write_text(genesis + "\n")
        made = []
        for i in range(n):
            port = free_port()
            argv = [*_command("start_worker"), "--tree", "--genesis", genesis,
                    "--data", str(self.demo / f"peer{i}.npz"),
                    "--training-interval", str(interval), "--metrics-port", str(port)]
            made.append(Child(argv, self.env(MODEL="no_tf"), self.root / f"tree{i}.log", port))
        self.children += made
        wait_until(lambda: sum(c.metric("gridd_tx_published_total") for c in made)
                   >= transactions, f"{transactions} tree transactions", 120, made)
        return genesis

    def stop(self) -> None:
        for c in self.children:
            c.stop()
        self.daemon.stop()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def execute(path: Path, lab: Lab, timeout: float = 240) -> NotebookNode:
    """Run a notebook top to bottom in a fresh kernel with the lab's environment, its
    working directory the lab's HOME; raises CellExecutionError on the first failing cell."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(lab.home)}})
    with open(lab.root / f"kernel-{path.stem}.log", "ab") as log:  # the kernel's own stderr
        client.execute(env=lab.env(), stdout=log, stderr=log)
    return nb


def outputs(nb: NotebookNode) -> list[NotebookNode]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def text(nb: NotebookNode) -> str:
    """Everything the notebook printed or displayed as text."""
    parts = []
    for o in outputs(nb):
        parts.append(o.get("text", ""))
        data = o.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/html", "")]
    return "\n".join(parts)


def _bar_text(model_id: str, state: dict[str, Any]) -> str | None:
    """A tqdm progress bar's last state (an HBox of description, bar, numbers) as text."""
    box = state.get(model_id, {}).get("state", {})
    parts = []
    for child in box.get("children", []):
        child_state = state.get(child.removeprefix("IPY_MODEL_"), {}).get("state", {})
        if child_state.get("_model_name") == "HTMLModel":
            value = html.unescape(re.sub(r"<[^>]+>", "", child_state.get("value", "")))
            parts.append(value.replace("\u2007", " ").strip())
    return "  ".join(p for p in parts if p) or None


def _tidy_outputs(outputs: list[NotebookNode], state: dict[str, Any]) -> list[NotebookNode]:
    """Progress-bar widgets as their last text, TensorFlow's start-up lines dropped, and
    adjacent prints of one stream merged (as Jupyter shows them)."""
    kept: list[NotebookNode] = []
    for o in outputs:
        view = o.get("data", {}).get(WIDGET_VIEW)
        if view is not None:
            bar = _bar_text(view.get("model_id", ""), state)
            if not bar:
                continue
            o = nbformat.v4.new_output("stream", name="stdout", text=bar + "\n")
        if o.output_type == "stream":
            o.text = "".join(line for line in o.text.splitlines(keepends=True)
                             if not TF_NOISE.match(line))
            if not o.text:
                continue
            if kept and kept[-1].output_type == "stream" and kept[-1].name == o.name:
                kept[-1].text += o.text
                continue
        kept.append(o)
    return kept


def tidy(nb: NotebookNode, lab: Lab) -> NotebookNode:
    """Make an executed notebook readable on the web and stable to diff: progress bars as
    text, no widget state or volatile metadata, and no lab folder (HOME reads as ~)."""
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    nb.metadata.get("language_info", {}).pop("version", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = _tidy_outputs(cell.outputs, state)
    raw = nbformat.writes(nb)
    for folder, shown in ((lab.home, "~"), (lab.root, "<lab>")):
        raw = raw.replace(str(folder), shown)
    return nbformat.reads(raw, as_version=4)


def problems(nb: NotebookNode, lab: Lab) -> list[str]:
    """What must not be in a committed notebook: errors, tracebacks, the lab's folders."""
    found = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            body = o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values())
            if o.get("output_type") == "error" or "Traceback" in body:
                found.append(f"cell {i}: an error or a traceback")
            if str(lab.root) in body or tempfile.gettempdir() + "/" in body:
                found.append(f"cell {i}: an absolute temporary path")
    return found


def main(argv: list[str] | None = None) -> int:
    """Execute the quickstart notebooks against a fresh lab (one Kubo daemon, two compute
    workers, two tree peers) and write them back with their outputs, tidied."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("notebooks", nargs="*", type=Path, default=[COMPUTE, TREE, FEDERATED])
    parser.add_argument("--check", action="store_true",
                        help="execute and check only; write nothing")
    parser.add_argument("--keep", action="store_true", help="keep the lab folder and logs")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="gridd-notebooks-"))
    failed = False
    try:
        for path in args.notebooks:  # a lab each: the compute one counts its workers
            path = path.resolve()
            with Lab(root / path.stem) as lab:
                started = time.monotonic()
                if path.name == COMPUTE.name:
                    lab.compute_workers(2)
                elif path.name == TREE.name:
                    lab.tree_peers(2, transactions=8)
                elif path.name == FEDERATED.name:
                    lab.federated_workers(3)
                print(f"lab ready in {time.monotonic() - started:.0f} s", flush=True)
                started = time.monotonic()
                nb = tidy(execute(path, lab), lab)
                found = problems(nb, lab)
                print(f"{path.name}: ran in {time.monotonic() - started:.0f} s"
                      + "".join(f"\n  {p}" for p in found), flush=True)
                failed |= bool(found)
                if not args.check and not found:
                    nbformat.write(nb, path)
                    print(f"  wrote {path}", flush=True)
    finally:
        if args.keep:
            print(f"lab folder and logs: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
