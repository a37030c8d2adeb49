"""README's "Try it on one machine", run as written: its bash block, then its Python.

The commands are read from README.md, so the README cannot drift from what is tested.
HOME is a temporary folder (so ~/.gridd, ~/gridd-demo and the daemon's repo are fresh);
the daemon and the background workers are stopped whatever happens.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- tests/test_readme_one_machine.py runs this block and the Python below"

pytestmark = [pytest.mark.kubo, pytest.mark.tf, pytest.mark.slow, pytest.mark.timeout(660)]


def readme_blocks() -> tuple[str, str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(MARKER)
    bash = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    python = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert bash and python, "README's one-machine section lost its code blocks"
    return bash.group(1), python.group(1)


def test_the_one_machine_section_runs_as_written(tmp_path: Path) -> None:
    bash, python = readme_blocks()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("IPFS_PATH", "GRIDD_HOME", "GRIDD_IPFS_API", "GRIDD_COMPUTE_TOPIC",
                        "GRIDD_TREE_STATE", "GRIDD_COMPUTE_STATE")}
    env.update(HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    script = f"""set -euo pipefail
cleanup() {{
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  python -m gridd ipfs stop >/dev/null 2>&1 || true
}}
trap cleanup EXIT
{bash}
python - <<'GRIDD_README_PYTHON'
{python}
GRIDD_README_PYTHON
"""
    proc = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own group: nothing outlives the test
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        subprocess.run([sys.executable, "-m", "gridd", "ipfs", "stop"],
                       env={**env, "IPFS_PATH": str(home / ".gridd/ipfs")},
                       capture_output=True, timeout=60)
    assert proc.returncode == 0, f"stdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-6000:]}"
    assert "trained remotely:" in stdout
    listed = stdout.split("trained remotely:")[0]
    assert listed.count("12D3KooW") >= 2, listed  # `gridd compute workers` showed two
