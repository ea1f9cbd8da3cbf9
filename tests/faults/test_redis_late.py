"""Redis that starts after the commands that need it (Kubernetes, compose, systemd):
the long-running commands wait for it with backoff instead of exiting."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import requests

from mlq import MLQ
from mlq.embedded import EmbeddedServer, free_port
from tests.faults.conftest import Commands, base_env, wait_for_port, wait_until


def test_consumer_and_server_wait_for_a_redis_that_comes_later(
        commands: Commands, tmp_path: Path) -> None:
    redis_port, http_port = free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    namespace = f"late_{uuid.uuid4().hex[:8]}"
    consumer = commands.start(
        "consumer", "consumer", "--import", "tests.faults.listeners:quick", "--server",
        "--server_port", str(http_port), "--redis_url", url, "--namespace", namespace,
        env=base_env())
    wait_for_port(http_port, consumer)
    healthz = f"http://127.0.0.1:{http_port}/healthz"
    assert requests.get(healthz, timeout=5).status_code == 503  # up, saying Redis is not
    wait_until(lambda: consumer.output().count("not reachable yet") >= 2, 20,
               "the consumer logging its retries")
    assert consumer.running()
    with EmbeddedServer(port=redis_port, data_dir=tmp_path / "redis"):
        wait_until(lambda: requests.get(healthz, timeout=5).status_code == 200, 10,
                   "/healthz 200 once Redis is up")
        q = MLQ(namespace, redis_url=url)
        posted = time.monotonic()
        assert q.wait(q.post("late"), timeout=10)["result"] == "late"
        assert time.monotonic() - posted < 5.0
        assert consumer.terminate() == 0


def test_wait_for_redis_bounds_the_wait(commands: Commands) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    for args in (("consumer", "--import", "tests.faults.listeners:quick"), ("reaper",)):
        started = time.monotonic()
        command = commands.start(args[0], *args, "--wait_for_redis", "1", "--redis_url", url,
                                 env=base_env())
        assert command.process.wait(20) == 2
        assert 0.5 < time.monotonic() - started < 10
        assert "not reachable yet" in command.output()
        assert "cannot reach Redis" in command.output()
