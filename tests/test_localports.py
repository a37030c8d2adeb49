"""Ports handed to child processes come from outside the kernel's ephemeral range."""

from __future__ import annotations

import socket

import pytest

from gridd.localports import LOWEST, _ephemeral_start, free_port


def test_free_port_is_bindable_and_not_ephemeral() -> None:
    ports = {free_port() for _ in range(20)}
    start = _ephemeral_start()
    assert all(LOWEST <= p < start for p in ports)
    for port in list(ports)[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    import gridd.localports as lp

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_port()))
        busy.listen()
        taken = busy.getsockname()[1]
        draws = iter([taken, taken, taken + 1])
        monkeypatch.setattr(lp.random, "randrange", lambda lo, hi: next(draws))
        assert lp.free_port() == taken + 1
