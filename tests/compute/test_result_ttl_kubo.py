"""A compute worker on real Kubo unpins a result once the TTL it advertises has passed."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

import pytest

from gridd import pins
from gridd.compute import protocol as p
from gridd.compute.dispatch import Dispatcher
from gridd.compute.jobs import JobContext, TrainResult
from gridd.compute.settings import ComputeSettings
from gridd.compute.sysinfo import MachineInfo
from gridd.compute.worker import ComputeWorker
from gridd.ipfs.cluster import LocalCluster
from gridd.metrics import ComputeMetrics
from gridd.transport import IpfsBroker, IpfsStore

pytestmark = pytest.mark.kubo

INFO = MachineInfo(2, 2**30, (), "test")


class EchoTrainer:
    """'Trains' by appending to the model: enough to exercise storing a result."""

    def run(self, ctx: JobContext) -> TrainResult:
        model = ctx.fetch(ctx.spec.model, "model")
        return TrainResult(model + b"trained", {"loss": [0.5]})


def unpack(data: bytes) -> tuple[str, dict]:
    """A compute message, whether or not the runtime seals it with a signature."""
    unseal = getattr(p, "unseal", None)
    if unseal is not None:
        try:
            data = unseal(data)[0]
        except Exception:
            pass
    return p.unpack(data)


def poll(until: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_worker_unpins_a_result_after_its_ttl(kubo_cluster: Callable[[int], LocalCluster]
                                              ) -> None:
    cluster = kubo_cluster(2)
    client_kubo, worker_kubo = cluster.clients
    topic = f"gridd-test-ttl-{uuid.uuid4().hex[:8]}"
    ttl = 3.0
    settings = ComputeSettings(topic=topic, heartbeat_interval=0.2, result_ttl=ttl)
    worker = ComputeWorker(IpfsBroker(worker_kubo), IpfsStore(worker_kubo), settings,
                           EchoTrainer(), ComputeMetrics(), INFO).start()
    listen = IpfsBroker(client_kubo).subscribe(topic)
    dispatcher = Dispatcher(IpfsBroker(client_kubo), topic=topic, lease=5.0).start()
    try:
        listen.wait_ready()
        ads = []
        deadline = time.monotonic() + 15
        while not ads and time.monotonic() < deadline:
            msg = listen.get(timeout=0.5)
            if msg is not None and msg.sender == worker.peer_id:
                kind, body = unpack(msg.data)
                if kind == p.AD:
                    ads.append(body)
        assert ads and ads[0]["result_ttl"] == ttl  # the worker says how long it keeps results

        store = IpfsStore(client_kubo)
        model = os.urandom(300_000)  # several blocks: the result is a real DAG
        data = {"x": store.put(b"x" * 64), "y": store.put(b"y" * 64)}
        job = dispatcher.submit(store.put(model), data, {"epochs": 1}, len(model) + 128)
        started = time.time()
        cid = job.result_cid_or_raise(timeout=30)
        named = worker_kubo.pin_ls_names(pins.RESULT_PREFIX)
        assert cid in named
        expiry = pins.result_expiry(named[cid])
        assert expiry is not None and started + ttl - 2 <= expiry <= time.time() + ttl + 1
        assert store.get(cid) == model + b"trained"  # the client fetches it within the TTL

        poll(lambda: cid not in worker_kubo.pin_ls_names(), timeout=ttl + 15,
             what="the worker to unpin its result")
        assert time.time() >= expiry  # not before its time
        before = worker_kubo.repo_stat(count_objects=False).size
        worker_kubo.repo_gc()
        after = worker_kubo.repo_stat(count_objects=False).size
        assert before - after >= len(model)  # unpinned blocks really go
    finally:
        dispatcher.close()
        listen.close()
        worker.stop()
