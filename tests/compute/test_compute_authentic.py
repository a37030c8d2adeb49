"""Compute messages are signed and fresh: signature, time window, replay memory that
survives a restart. Mechanism tests on the in-memory network's real Ed25519 keys; the
replay-after-restart test against a real worker process and Kubo is in test_compute_kubo."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridd.compute import protocol as p
from gridd.compute.authentic import Authenticator, Refused
from gridd.transport import MemoryNetwork


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def offer(ts: float, job: str = "j1") -> bytes:
    return p.pack(p.OFFER, job=job, attempt=0, model="bafy" + "a" * 20,
                  data={"x": "bafy" + "b" * 20, "y": "bafy" + "c" * 20}, fit={"epochs": 1},
                  bytes=10, exclude=[], ts=ts)


def reason(auth: Authenticator, data: bytes) -> str | None:
    try:
        auth.open(data)
    except Refused as e:
        return e.reason
    return None


def sealer(net: MemoryNetwork, name: str):
    return p.sealer(net.broker(name).sign, name)


def test_signature_must_be_the_senders() -> None:
    net = MemoryNetwork()
    clock = Clock()
    auth = Authenticator(net.keyring.verify, clock=clock)
    alice = sealer(net, "alice")
    sealed = alice(offer(clock.now))
    envelope, sig, _ = p.unseal(sealed)
    assert reason(auth, p.seal(envelope, sig, "mallory")) == "bad_signature"  # claimed
    assert reason(auth, sealed) is None
    assert auth.open(alice(offer(clock.now, job="j2")))[0] == "alice"  # from its author
    assert reason(auth, sealed) == "replayed"  # the same message twice
    tampered = p.seal(envelope.replace(b"j1", b"j3"), sig, "alice")
    assert reason(auth, tampered) == "bad_signature"
    with pytest.raises(Exception, match="unsigned"):
        auth.open(offer(clock.now))


def test_time_window() -> None:
    net = MemoryNetwork()
    clock = Clock()
    auth = Authenticator(net.keyring.verify, clock=clock, window=300, skew=60)
    alice = sealer(net, "alice")
    assert reason(auth, alice(offer(clock.now - 301))) == "stale"
    assert reason(auth, alice(offer(clock.now + 61))) == "future"
    assert reason(auth, alice(offer(clock.now - 299))) is None


def test_replay_marks_survive_a_restart(tmp_path: Path) -> None:
    net = MemoryNetwork()
    clock = Clock()
    state = tmp_path / "replay.json"
    alice = sealer(net, "alice")
    recorded = [alice(offer(clock.now + i, job=f"j{i}")) for i in range(3)]
    first = Authenticator(net.keyring.verify, state_path=state, clock=clock)
    for m in recorded:
        assert reason(first, m) is None
    first.save(force=True)
    clock.now += 5
    again = Authenticator(net.keyring.verify, state_path=state, clock=clock)  # restarted
    assert [reason(again, m) for m in recorded] == ["replayed"] * 3
    assert reason(again, alice(offer(clock.now, job="new"))) is None
    assert reason(again, sealer(net, "bob")(offer(clock.now))) is None


def test_unreadable_marks_are_ignored_with_a_warning(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "replay.json"
    state.write_text("{not json")
    auth = Authenticator(MemoryNetwork().keyring.verify, state_path=state)
    assert auth._floor == {} and "unreadable replay marks" in caplog.text
