"""`--log_format json`: one JSON object per line; job events carry job_id, queue,
function, attempt, error_kind and duration. Failures log at ERROR with their
traceback, retries and recoveries at WARNING."""

from __future__ import annotations

import io
import json
import logging
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from controller.logs import JsonFormatter, make_handler
from mlq import MLQ
from mlq.embedded import free_port
from mlq.recovery import GAVE_UP, REQUEUED
from mlq.worker import Worker
from tests.conftest import wait_until
from tests.cli.conftest import Running, base_env


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


def test_a_closed_handler_writes_nothing() -> None:
    # logging.shutdown() closes handlers at exit; a daemon thread logging after
    # that must not touch the stream while the interpreter finalizes
    buffer = io.StringIO()
    handler = make_handler("text", buffer)
    record = logging.LogRecord("mlq.worker", logging.INFO, __file__, 1, "late", (), None)
    handler.handle(record)
    handler.close()
    handler.handle(record)
    assert buffer.getvalue().count("late") == 1


def test_text_format_is_unchanged() -> None:
    record = logging.LogRecord("mlq.worker", logging.INFO, __file__, 1, "job %s", ("1",), None)
    line = make_handler("text").format(record)
    assert line.endswith("INFO mlq.worker: job 1") and not line.startswith("{")
    assert isinstance(JsonFormatter().format(record), str)


def _echo(msg: Any, *args: Any) -> Any:
    if msg == "fail":
        raise RuntimeError("failing on purpose")
    return msg


@pytest.fixture
def job_logs() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """What the worker and the recovery log at INFO and up: (text lines, JSON lines)."""
    text, lines = io.StringIO(), io.StringIO()
    handlers = [make_handler("text", text), make_handler("json", lines)]
    loggers = [logging.getLogger(name) for name in ("mlq.worker", "mlq.recovery")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
        for handler in handlers:
            logger.addHandler(handler)
    yield text, lines
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)
        for handler in handlers:
            logger.removeHandler(handler)


def test_job_events_of_a_worker_carry_ids_and_duration(
        q: MLQ, job_logs: tuple[io.StringIO, io.StringIO]) -> None:
    q.create_listener(_echo)
    ids = [q.post("hello"), q.post("fail")]
    for job_id in ids:
        q.wait(job_id, 10)
    q.shutdown(timeout=10)  # the worker threads have logged all they will
    events = [e for e in json_lines(job_logs[1].getvalue()) if e["message"].startswith("job ")]
    assert {e["job_id"] for e in events} == set(ids)
    assert len(events) == 4  # started and finished, for each job
    for event in events:
        assert event["worker_id"] and isinstance(event["duration"], (int, float))


def _event(lines: io.StringIO, job_id: str, event: str, attempt: int = 1) -> dict[str, Any]:
    """The one JSON line about `job_id`'s `event` in `attempt`."""
    events = [e for e in json_lines(lines.getvalue()) if e.get("job_id") == job_id]
    found = [e for e in events if (e["event"], e["attempt"]) == (event, attempt)]
    assert len(found) == 1, events
    return found[0]


def test_a_failed_job_logs_an_error_with_its_exception_and_traceback(
        q: MLQ, job_logs: tuple[io.StringIO, io.StringIO]) -> None:
    text, lines = job_logs
    job_id = q.post("fail", functions=["echo"], queue="gpu")
    assert Worker(q, "w2", local_listeners={"echo": _echo}, queues=["gpu"]).step(1)
    assert q.get_job(job_id)["status"] == "failed"
    # text: the ERROR line names the exception; the traceback follows it
    out = text.getvalue()
    line = next(ln for ln in out.splitlines() if f"job {job_id} failed" in ln)
    assert " ERROR mlq.worker: " in line and line.endswith("RuntimeError: failing on purpose")
    after = out[out.index(line) + len(line):]
    assert after.startswith("\nTraceback (most recent call last):")
    assert 'in _echo\n    raise RuntimeError("failing on purpose")' in after
    # JSON: one object with the fields a log query filters on
    failed = _event(lines, job_id, "failed")
    assert failed["level"] == "ERROR" and failed["error"] == "RuntimeError: failing on purpose"
    assert (failed["queue"], failed["function"], failed["error_kind"], failed["attempt"],
            failed["worker_id"]) == ("gpu", "echo", "error", 1, "w2")
    assert isinstance(failed["duration"], float) and failed["duration"] >= 0
    assert failed["exc"].startswith("Traceback") and "failing on purpose" in failed["exc"]
    started = _event(lines, job_id, "started")
    assert (started["level"], started["queue"], started["function"]) == ("INFO", "gpu", "echo")


def test_a_retry_logs_a_warning_and_the_last_failure_an_error(
        q: MLQ, job_logs: tuple[io.StringIO, io.StringIO]) -> None:
    text, lines = job_logs
    clock = [1000.0]
    worker = Worker(q, "w", local_listeners={"echo": _echo}, clock=lambda: clock[0])
    job_id = q.post("fail", retries=1, backoff=5)
    assert worker.step(0)
    retry = _event(lines, job_id, "retry")
    assert retry["level"] == "WARNING" and retry["attempt"] == 1
    assert (retry["error_kind"], retry["error"]) == ("error", "RuntimeError: failing on purpose")
    assert 0 <= retry["retry_in"] <= 5 and retry["queue"] == "default"
    assert retry["function"] is None  # no names given: every listener runs
    assert f"WARNING mlq.worker: job {job_id} attempt 1 failed on w" in text.getvalue()
    assert "Traceback" not in text.getvalue()  # kept in the record's last_error
    clock[0] += 10  # past the backoff: the second attempt is due
    record = _drain(q, worker, job_id)
    assert record["status"] == "failed" and record["attempt"] == 2
    failed = _event(lines, job_id, "failed", 2)
    assert (failed["level"], failed["attempt"]) == ("ERROR", 2)


def _drain(q: MLQ, worker: Worker, job_id: str) -> dict[str, Any]:
    wait_until(lambda: worker.step(0.05) is not None and q.get_job(job_id)["status"] in
               ("completed", "failed"), 10, f"job {job_id} to end")
    return q.get_job(job_id)


def test_recoveries_log_a_warning_and_giving_up_an_error(
        q: MLQ, job_logs: tuple[io.StringIO, io.StringIO]) -> None:
    job_id = q.post("m", functions=["echo"], queue="gpu")
    assert Worker(q, "gone", queues=["gpu"]).take(0)
    assert q.recover_job(job_id, "gone", 2, time.time(), "worker died") == REQUEUED
    requeued = _event(job_logs[1], job_id, "requeued")
    assert requeued["level"] == "WARNING" and "worker died" in requeued["message"]
    assert (requeued["queue"], requeued["function"], requeued["attempt"],
            requeued["worker_id"]) == ("gpu", "echo", 1, "gone")
    assert requeued["duration"] >= 0 and requeued["error_kind"] is None
    assert Worker(q, "gone2", queues=["gpu"]).take(0)
    assert q.recover_job(job_id, "gone2", 1, time.time(), "worker died") == GAVE_UP
    failed = _event(job_logs[1], job_id, "failed", 2)
    assert (failed["level"], failed["attempt"], failed["error_kind"]) == ("ERROR", 2, "lost")
    assert q.get_job(job_id)["error_kind"] == "lost"


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
        job_id, failing = q.post(21, functions=["double"]), q.post({"a": 1})
        assert q.wait(job_id, 30)["result"] == 42
        assert q.wait(failing, 30)["status"] == "failed"  # a dict cannot be doubled
        consumer.wait_for(f'"job_id": "{failing}", ', timeout=10)
        assert consumer.stop(signal.SIGTERM) == 0
    finally:
        consumer.close()
        q.clear_all()
    entries = json_lines(consumer.output)
    events = [e for e in entries if e.get("job_id") == job_id]
    assert len(events) >= 2
    assert all(e["worker_id"] and "duration" in e for e in events)
    assert all((e["queue"], e["function"], e["attempt"]) == ("default", "double", 1)
               for e in events)
    [failed] = [e for e in entries if e.get("job_id") == failing and e["event"] == "failed"]
    assert failed["level"] == "ERROR" and failed["error_kind"] == "error"
    assert failed["error"].startswith("TypeError: unsupported operand")
    assert "Traceback" in failed["exc"] and "in double" in failed["exc"]
