"""The image's entrypoint: runs as the unprivileged gridd user with Kubo up and pubsub on;
a bad setting stops the container with exit code 2 and a message naming it."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(600)]


def _run(image: str, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    return subprocess.run(["podman", "run", "--rm", "--network", "none", *flags, image, *args],
                          capture_output=True, text=True, timeout=180)


def test_runs_unprivileged_with_kubo_and_pubsub(image: str) -> None:
    done = _run(image, "sh", "-c", "id -u && gridd ipfs status")
    assert done.returncode == 0, done.stderr
    assert "10001" in done.stdout.splitlines()  # `id -u`: not root
    assert "pubsub:  enabled" in done.stdout


@pytest.mark.parametrize(("env", "message"), [
    ({"GRIDD_MODE": "trainer"}, "GRIDD_MODE must be tree, compute or view, not 'trainer'"),
    ({"GRIDD_MODE": "tree"}, "tree mode needs GRIDD_GENESIS"),
    ({"GRIDD_GENESIS": "abc", "GRIDD_EXAMPLE_DATA": "3/3"}, "part 3 of 3 does not exist"),
    ({"GRIDD_GENESIS": "abc", "GRIDD_EXAMPLE_DATA": "one/3"}, "must be I/N, got 'one/3'"),
    ({"GRIDD_BOOTSTRAP": "/ip4/10.0.0.1/tcp/4001"}, "'/ip4/10.0.0.1/tcp/4001'"),
    ({"GRIDD_NETWORK": "lan"}, "GRIDD_NETWORK: expected public or private"),
])
def test_bad_settings_stop_the_container_by_name(image: str, env: dict[str, str],
                                                 message: str) -> None:
    done = _run(image, env=env)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
