"""`--log_format json`: one JSON object per line; job events carry job_id, worker_id, duration."""

from __future__ import annotations

import io
import json
import logging
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from controller.logs import JsonFormatter, make_handler
from mlq import MLQ
from mlq.embedded import free_port
from tests.cli.conftest import Running, base_env

#: Until mlq/worker.py passes extra={"job_id", "worker_id", "duration"} on its job
#: events (and mlq/supervisor.py lets children log JSON), the end-to-end checks
#: cannot pass; the formatter tests below hold already. Remove once applied.
def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as JSON (failing on the first that is not)."""
    entries = []
    for line in text.splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON line: {line!r}")
    return entries


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines into a buffer."""
    buffer = io.StringIO()
    logger = logging.getLogger("mlq.test_logs")
    handler = make_handler("json", buffer)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)


def test_a_record_becomes_one_json_object_with_its_extras(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = captured
    logger.info("job %s %s on %s in %.3f s", "7", "completed", "host:1:w", 1.25,
                extra={"job_id": "7", "worker_id": "host:1:w", "duration": 1.25,
                       "event": "completed"})
    [entry] = json_lines(buffer.getvalue())
    assert entry["message"] == "job 7 completed on host:1:w in 1.250 s"
    assert (entry["job_id"], entry["worker_id"], entry["duration"]) == ("7", "host:1:w", 1.25)
    assert entry["level"] == "INFO" and entry["logger"] == "mlq.test_logs"
    assert entry["time"].endswith("+00:00") and isinstance(entry["pid"], int)
    assert "args" not in entry and "msg" not in entry  # LogRecord internals stay out


def test_exceptions_and_odd_values_still_make_valid_json(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = captured
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logger.exception("job %s failed", "8", extra={"job_id": "8", "blob": object(),
                                                      "data": b"\xff"})
    [entry] = json_lines(buffer.getvalue())
    assert entry["level"] == "ERROR" and "ValueError: bad" in entry["exc"]
    assert entry["blob"].startswith("<object") and entry["data"] == "b'\\xff'"


def test_text_format_is_unchanged() -> None:
    record = logging.LogRecord("mlq.worker", logging.INFO, __file__, 1, "job %s", ("1",), None)
    line = make_handler("text").format(record)
    assert line.endswith("INFO mlq.worker: job 1") and not line.startswith("{")
    assert isinstance(JsonFormatter().format(record), str)


def _echo(msg: Any, *args: Any) -> Any:
    if msg == "fail":
        raise RuntimeError("failing on purpose")
    return msg


def test_job_events_of_a_worker_carry_ids_and_duration(q: MLQ) -> None:
    buffer = io.StringIO()
    worker_log = logging.getLogger("mlq.worker")
    handler, level = make_handler("json", buffer), worker_log.level
    worker_log.addHandler(handler)
    worker_log.setLevel(logging.INFO)
    try:
        q.create_listener(_echo)
        ids = [q.post("hello"), q.post("fail")]
        for job_id in ids:
            q.wait(job_id, 10)
        q.shutdown(timeout=10)
    finally:
        worker_log.removeHandler(handler)
        worker_log.setLevel(level)
    events = [e for e in json_lines(buffer.getvalue()) if e["message"].startswith("job ")]
    assert {e["job_id"] for e in events} == set(ids)
    assert len(events) == 4  # started and finished, for each job
    for event in events:
        assert event["worker_id"] and isinstance(event["duration"], (int, float))


def test_server_logs_json_lines(redis_url: str, namespace: str) -> None:
    port = free_port()
    server = Running(("server", "--server_port", str(port), "--redis_url", redis_url,
                      "--namespace", namespace, "--log_format", "json"), base_env())
    try:
        server.wait_for_port(port)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).text == "ok"
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.close()
    entries = json_lines(server.output)
    assert any("listening on" in e["message"] for e in entries)
    assert any(e["logger"] == "mlq.http.access" and "/healthz" in e["message"] for e in entries)


def test_consumer_job_events_are_json_with_ids(redis_url: str, namespace: str) -> None:
    consumer = Running(("consumer", "--import", "tests.cli.listeners:double", "--redis_url",
                        redis_url, "--namespace", namespace, "--log_format", "json"), base_env())
    q = MLQ(namespace, redis_url=redis_url)
    try:
        job_id = q.post(21)
        assert q.wait(job_id, 30)["result"] == 42
        consumer.wait_for(f'"job_id": "{job_id}"', timeout=10)
        assert consumer.stop(signal.SIGTERM) == 0
    finally:
        consumer.close()
        q.clear_all()
    entries = json_lines(consumer.output)
    events = [e for e in entries if e.get("job_id") == job_id]
    assert len(events) >= 2
    assert all(e["worker_id"] and "duration" in e for e in events)
