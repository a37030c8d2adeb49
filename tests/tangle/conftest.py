"""Make `import tangle` mean the library, not this test folder.

pytest puts tests/ on sys.path (for tests/conftest.py), where this folder, having no
__init__.py, is a namespace package called `tangle`; it shadows the real package unless the
repository root is on sys.path too (as with `python -m pytest`, but not a bare `pytest`).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if getattr(sys.modules.get("tangle"), "__file__", "") is None:  # the shadowing namespace
    del sys.modules["tangle"]
