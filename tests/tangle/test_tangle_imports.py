"""tangle/ stays a pure library: no gridd, no TensorFlow, no HTTP client, no networking."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "tangle", "tangle.errors", "tangle.transaction", "tangle.graph", "tangle.window",
    "tangle.selection", "tangle.reference", "tangle.persist", "tangle.bench",
]
FORBIDDEN = [
    "gridd", "tensorflow", "keras", "httpx", "httpcore", "requests", "aiohttp", "anyio",
    "socket", "_socket", "ssl", "http", "urllib.request", "asyncio", "selectors",
    "socketserver", "smtplib", "ftplib", "xmlrpc",
]
CHECK = """
import importlib, sys
for name in sys.argv[1].split(","):
    importlib.import_module(name)
forbidden = sys.argv[2].split(",")
bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
print(",".join(bad))
"""


def loaded_forbidden(modules: list[str]) -> list[str]:
    """Import `modules` in a fresh interpreter; return the forbidden modules it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", CHECK, ",".join(modules), ",".join(FORBIDDEN)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    return [m for m in result.stdout.strip().split(",") if m]


def test_tangle_imports_nothing_forbidden() -> None:
    assert loaded_forbidden(MODULES) == []


def test_the_check_detects_a_forbidden_import() -> None:
    assert "socket" in loaded_forbidden(["tangle", "http.client"])


def test_public_api_is_importable_from_the_package() -> None:
    import tangle

    assert tangle.__all__ and all(hasattr(tangle, name) for name in tangle.__all__)
