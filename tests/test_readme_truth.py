"""README stays true: every file it names exists, every metric it names is exported.

(Issue: README named metrics by the wrong names and linked a design file users do not have.)
"""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest

from gridd.metrics import ComputeMetrics, FederatedMetrics, TreeMetrics

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
TOP = ("bin/", "gridd/", "tangle/", "configs/", "tests/", "docs/", "notebooks/", "deploy/")


def named_paths() -> set[str]:
    """Links, and every repo-rooted path in the text or in code (`./bin/x`, gridd/a.py)."""
    links = {p for p in re.findall(r"\]\(([^)#\s]+)\)", README) if "://" not in p}
    tops = "|".join(t.rstrip("/") for t in TOP)
    found = re.findall(rf"(?<![\w/~.])(?:\./)?((?:{tops})/[\w./-]*[\w/])", README)
    paths = links | set(found)
    topics = ("gridd/compute/v", "gridd/tree/v")  # pubsub topic names, not files
    return {p.rstrip("/.") for p in paths
            if "<" not in p and "*" not in p and not p.startswith(topics)}


def test_every_file_the_readme_names_exists() -> None:
    paths = named_paths()
    assert "docs/architecture.md" in paths and "bin/start_ipfs" in paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README names files that are not in the repository: {missing}"


def test_every_metric_the_readme_names_is_exported() -> None:
    names = set(re.findall(r"\b(gridd_[a-z_]+)", README))
    assert "gridd_tx_received_total" in names
    exposed = (generate_latest(TreeMetrics().registry)
               + generate_latest(ComputeMetrics().registry)
               + generate_latest(FederatedMetrics().registry)).decode()
    # a labelled counter appears once it has a sample: list the family names too
    families = set(re.findall(r"^# TYPE (\S+) ", exposed, re.M))
    known = families | {f + "_total" for f in families} | set(re.findall(r"^(\w+)", exposed,
                                                                          re.M))
    unknown = sorted(n for n in names if n not in known)
    assert not unknown, f"README names metrics nobody exports: {unknown}"
