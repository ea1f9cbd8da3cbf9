"""examples/fastapi run for real: the app under uvicorn and a `controller consumer`
worker as subprocesses on the session's Redis, read over HTTP as a browser would."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from mlq import MLQ
from mlq.embedded import free_port
from tests.test_examples import consumer, example_env, running, wait_healthy

WORDS = "You asked: why queue?.".split() + \
    ("Queues let a web app answer at once while a worker does the slow part; "
     "streaming lets the user watch that slow part arrive word by word.").split()


def events(response: requests.Response, deadline: float) -> Iterator[dict[str, Any]]:
    """Server-sent events as they arrive: {'event', 'data', 'id'}; keep-alives left out."""
    event: dict[str, Any] = {}
    for line in response.iter_lines(chunk_size=None, decode_unicode=True):  # type: ignore[call-overload]
        assert time.monotonic() < deadline, "the stream took too long"
        field, _, value = line.partition(": ")
        if field in ("event", "id"):
            event[field] = value
        elif field == "data":
            event["data"] = json.loads(value)
        elif line == "" and event:
            yield event
            event = {}


def test_the_page_streams_a_generation_in_order_and_shows_the_line(
        redis_url: str, namespace: str, q: MLQ, tmp_path: Path) -> None:
    """(q clears the namespace afterwards.)"""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = example_env(MLQ_REDIS_URL=redis_url, MLQ_NAMESPACE=namespace)
    app_log, worker_log = tmp_path / "app.log", tmp_path / "worker.log"
    uvicorn = [sys.executable, "-m", "uvicorn", "examples.fastapi.app:app",
               "--host", "127.0.0.1", "--port", str(port)]
    worker = consumer(redis_url, namespace, "--import", "examples.fastapi.listeners:generate")
    with running(uvicorn, app_log, env) as app, requests.Session() as http:
        wait_healthy(url, app, app_log)
        page = http.get(url + "/", timeout=10)
        assert page.status_code == 200 and "new EventSource(`generate/${job_id}/events`)" in page.text
        assert http.get(url + "/generate/999/events", timeout=10).status_code == 404
        posted = http.post(url + "/generate", json={"prompt": "why queue?", "pause": 0.01},
                           timeout=10)
        assert posted.status_code == 202, posted.text
        job_id = posted.json()["job_id"]
        deadline = time.monotonic() + 60  # includes the worker's start-up
        with http.get(f"{url}/generate/{job_id}/events", stream=True, timeout=30) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            seen = events(stream, deadline)
            first = next(seen)  # no worker yet: the job waits, first in line
            assert first["event"] == "queued" and first["data"]["status"] == "queued", first
            with running(worker, worker_log):
                rest = list(seen)
    chunks = [e for e in rest if e["event"] == "chunk"]
    assert "".join(e["data"] for e in chunks).split() == WORDS, (rest, worker_log.read_text())
    assert rest[-1] == {"event": "done", "data": {"status": "completed", "error": None}}
    assert [e["id"] for e in chunks] == [entry for entry, _ in q.stream(job_id)]
    assert q.get_job(job_id)["result"] == [e["data"] for e in chunks]
