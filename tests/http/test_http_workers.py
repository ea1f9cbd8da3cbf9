"""GET /workers and the dashboard's Workers, Functions and overview pages show what
each worker serves, against the real server: its queues, functions, concurrency
and GPUs, and a queue whose jobs no live worker takes."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

from mlq import MLQ
from mlq.heartbeat import beat, retire
from tests.cli.conftest import Running, base_env
from tests.conftest import wait_until

from .conftest import ServerProcess


def echo(msg: Any, *args: Any) -> Any:
    return msg


LISTENERS = [echo]


def _queue_row(page: str, queue: str) -> str:
    found = re.search(rf'<tr id="queue-{queue}".*?</tr>', page, re.S)
    assert found, f"no row for queue {queue}"
    return found.group(0)


def test_workers_route_and_pages_show_what_a_supervised_consumer_serves(
        server: ServerProcess, worker: MLQ, redis_url: str, http_namespace: str) -> None:
    running = Running(("consumer", "--import", "tests.listeners:double",
                       "--queues", "gpu,default", "--concurrency", "2",
                       "--heartbeat_interval", "0.2",
                       "--redis_url", redis_url, "--namespace", http_namespace), base_env())
    try:
        def children() -> list[dict[str, Any]]:
            found = server.get("/workers").json()["workers"]
            return [w for w in found if w["alive"] and "double" in w["functions"]]

        listed = wait_until(lambda: len(children()) == 2 and children(), 20,
                            "both children in GET /workers")
        for child in listed:
            assert child["queues"] == ["gpu", "default"] and child["imported"] == ["double"]
            assert (child["concurrency"], child["gpus"], child["kind"]) == (2, [], "process")
            assert isinstance(child["age"], float) and child["pid"] != child["supervisor"]
        page = server.get("/ui/workers").text
        assert "gpu, default" in page and "double*" in page
        functions = server.get("/ui/functions").text
        assert "No functions registered" not in functions
        row = re.search(r'<tr id="function-double">.*?</tr>', functions, re.S)
        assert row and "imported" in row.group(0), functions
        assert running.stop(timeout=20) == 0
    finally:
        running.close()


def test_the_overview_flags_a_queue_no_live_worker_serves(server: ServerProcess,
                                                          worker: MLQ) -> None:
    queue = f"nobody_{uuid.uuid4().hex[:8]}"
    for n in range(3):
        server.post_job(n, queue=queue)
    row = _queue_row(server.get("/").text, queue)
    assert "no worker" in row and "no live worker takes from this queue" in html.unescape(row)
    worker_id = f"gpu1:4242:{queue}"
    beat(worker.client, worker.keys, {worker_id: {"host": "gpu1", "pid": 4242, "queues": [queue],
                                                  "kind": "process", "job": None}}, timeout=30)
    try:
        # the overview is cached for a second: poll until it is counted again
        wait_until(lambda: "no worker" not in _queue_row(server.get("/").text, queue), 10,
                   "the flag to go once a worker serves the queue")
    finally:
        retire(worker.client, worker.keys, [worker_id])
