"""Stopping `consumer --server` leaves nothing half-written behind.

A thread still blocked on a standard stream while the interpreter shuts down made
it abort with "Fatal Python error: _enter_buffered_busy" (exit code 0, so only
the output showed it): in about one stop in five. Thirty stops find it.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from mlq.embedded import free_port
from tests.cli.conftest import Running, base_env

STOPS = 30
AT_ONCE = 3  # this many consumers start and stop side by side: the suite runs on 2 cores


def _start_and_stop(redis_url: str, namespace: str) -> tuple[int, str]:
    """(exit code, output) of one consumer --server stopped once it answered /healthz."""
    port = free_port()
    consumer = Running(("consumer", "--server", "--server_port", str(port), "--redis_url",
                        redis_url, "--namespace", namespace), base_env())
    try:
        deadline = time.monotonic() + 30
        while not _healthy(port):
            assert consumer.process.poll() is None, f"exited early:\n{consumer.output}"
            assert time.monotonic() < deadline, f"no /healthz:\n{consumer.output}"
            time.sleep(0.05)  # the pause between two polls: nothing to wait on
        return consumer.stop(signal.SIGTERM), consumer.output
    finally:
        consumer.close()


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


# Thirty starts of a Python process with a server and a worker are CPU work: beside
# the other xdist workers (pytest.ini) they can take more than the suite's 120 s.
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_stopping_consumer_server_30_times_prints_no_fatal_error(
        redis_url: str, namespace: str) -> None:
    with ThreadPoolExecutor(AT_ONCE) as pool:
        runs = list(pool.map(lambda i: _start_and_stop(redis_url, f"{namespace}_{i}"),
                             range(STOPS)))
    for code, output in runs:
        assert code == 0, output
        assert "Fatal Python error" not in output, output
        assert "stopping" in output  # it was running, and heard the signal
