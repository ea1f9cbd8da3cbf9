"""In addition to the real-server tests: the app through Flask's test client, unpatched.

These reach what a live server cannot show cheaply: error mapping for faults
injected into the library, the SSE error path, and the pure helpers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from controller.app import create_app
from controller.helpers import ServerState, jsonable
from controller.jobs import result_body
from controller.ops import ping_within
from mlq import MLQ
from mlq.embedded import free_port


@pytest.fixture
def app(q: MLQ) -> Flask:
    return create_app(q, max_body=1024)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_state_lives_in_app_extensions(app: Flask, q: MLQ) -> None:
    state = app.extensions["mlq"]
    assert isinstance(state, ServerState) and state.mlq is q and state.token is None


def test_routes_through_the_test_client(client: FlaskClient, q: MLQ) -> None:
    response = client.post("/jobs", data='{"msg": {"a": 1}}')
    assert response.status_code == 200
    job_id = response.get_data(as_text=True)
    assert client.get(f"/jobs/{job_id}").get_json()["msg"] == {"a": 1}
    assert client.get("/jobs/count").get_data(as_text=True) == "1"
    assert client.post("/jobs", data=b"x" * 2048).status_code == 413
    assert client.get("/healthz").get_data(as_text=True) == "ok"


def test_events_through_the_test_client(client: FlaskClient, q: MLQ) -> None:
    q.create_listener(lambda msg, *args: msg)
    job_id = q.post("hi")
    q.wait(job_id, timeout=10)
    body = client.get(f"/jobs/{job_id}/events").get_data(as_text=True)
    assert body == f'event: completed\ndata: {{"id": "{job_id}", "status": "completed", "progress": 100}}\n\n'


def test_keep_alive_comment_while_nothing_happens(app: Flask, q: MLQ) -> None:
    app.extensions["mlq"].sse_keepalive = 0.05
    job_id = q.post("waits")
    response = app.test_client().get(f"/jobs/{job_id}/events", buffered=False)
    chunks: Iterator[bytes] = iter(response.response)  # type: ignore[arg-type]
    assert next(chunks).startswith(b"event: queued\n")
    assert next(chunks).startswith(b"event: position\n")  # its place in line, once
    assert next(chunks) == b": keep-alive\n\n"
    response.close()


def test_no_keep_alive_before_the_interval(app: Flask, q: MLQ) -> None:
    app.extensions["mlq"].sse_keepalive = 1.0
    job_id = q.post("waits")
    response = app.test_client().get(f"/jobs/{job_id}/events", buffered=False)
    chunks: Iterator[bytes] = iter(response.response)  # type: ignore[arg-type]
    assert next(chunks).startswith(b"event: queued\n")
    assert next(chunks).startswith(b"event: position\n")
    started = time.monotonic()
    assert next(chunks) == b": keep-alive\n\n"
    response.close()
    assert time.monotonic() - started > 0.5


def test_redis_failure_mid_stream_ends_with_an_error_event(app: Flask, q: MLQ,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_watch(job_id: str, keepalive: float = 15.0,
                     tick: float | None = None) -> Iterator[dict[str, Any] | None]:
        yield {"id": job_id, "status": "queued", "progress": None}
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(q, "watch", broken_watch)
    body = app.test_client().get("/jobs/1/events").get_data(as_text=True)
    assert body.startswith("event: queued\n")
    assert body.endswith('event: error\ndata: {"error": "Redis unavailable: gone"}\n\n')


@pytest.mark.parametrize(("exc", "status"), [
    (redis.ConnectionError("down"), 503), (redis.TimeoutError("slow"), 503),
    (RuntimeError("a bug"), 500),
])
def test_error_mapping(client: FlaskClient, q: MLQ, monkeypatch: pytest.MonkeyPatch,
                       exc: Exception, status: int) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise exc

    monkeypatch.setattr(q, "get_job", fail)
    response = client.get("/jobs/1")
    assert response.status_code == status
    assert response.get_json()["error"]


def test_healthz_is_503_when_redis_refuses() -> None:
    dead = create_app(MLQ("dead", redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    started = time.monotonic()
    response = dead.test_client().get("/healthz")
    assert time.monotonic() - started < 2
    assert response.status_code == 503 and "Redis" in response.get_json()["error"]


def test_ping_within_gives_up_on_a_silent_redis() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        silent = MLQ("silent", redis_url=f"redis://127.0.0.1:{sock.getsockname()[1]}/0")
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            ping_within(silent, 0.2)
        assert time.monotonic() - started < 1


def test_jsonable() -> None:
    value = {"a": b"\x00", 1: [b"\xff", (2, None)], b"k": {"deep": [b"x"]}, "t": 1.5, "o": object}
    assert jsonable(value) == {"a": {"base64": "AA=="}, "1": [{"base64": "/w=="}, [2, None]],
                               "k": {"deep": [{"base64": "eA=="}]}, "t": 1.5, "o": str(object)}


@pytest.mark.parametrize(("value", "ext", "expected"), [
    (b"\x01", None, "application/octet-stream"), ("é", None, "text/plain; charset=utf-8"),
    ({"a": 1}, None, "application/json"), (None, None, "application/json"),
    (b"\x01", "tar.gz", "application/octet-stream"), (b"\x01", "gz", "application/octet-stream"),
    ("é", "unknownext", "text/plain; charset=utf-8"), (b"\x01", "PNG", "image/png"),
    ("<p>", "html", "application/octet-stream"), (b"<p>", "html", "application/octet-stream"),
    ("x", "js", "application/octet-stream"), ("x", "mjs", "application/octet-stream"),
    ("<svg/>", "svg", "application/octet-stream"), ("<a/>", "xml", "application/octet-stream"),
    ("x", "xsl", "application/octet-stream"), (b"\0asm", "wasm", "application/octet-stream"),
    ("x", "xhtml", "application/octet-stream"), ("a{}", "css", "application/octet-stream"),
    ("x", "txt", "text/plain; charset=utf-8"),
    ({"a": 1}, "json", "application/json"),
])
def test_result_body_types(value: Any, ext: str | None, expected: str) -> None:
    assert result_body(value, ext)[1] == expected


def test_result_body_bytes() -> None:
    assert result_body("é", None)[0] == "é".encode()
    assert result_body({"b": b"\x00"}, None)[0] == b'{"b": {"base64": "AA=="}}'
    assert result_body(None, None)[0] == b"null"
