"""Polling with deadlines for the fault tests (no gridd imports: cheap for every test)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             every: float = 0.2, check: Callable[[], None] | None = None,
             explain: Callable[[], str] | None = None) -> float:
    """Poll `condition` until it holds; fail naming `what` (and `explain()`) after `timeout`
    s. Returns the seconds it took. `check` runs every round ("are the workers alive")."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if check is not None:
            check()
        if condition():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            detail = f": {explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(every)
