"""Slow, idle or numerous clients cannot take the server away from the others:
a header-read timeout, a bound on connections, a cap on event streams."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from mlq import MLQ
from tests.conftest import wait_until

from .conftest import ServerProcess

HALF_SENT = b"GET /jobs/count HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.fixture
def small(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    namespace = f"l_{uuid.uuid4().hex[:10]}"
    server = ServerProcess(namespace=namespace, redis_url=redis_url, header_timeout=1.5,
                           max_connections=20, max_streams=3,
                           log_path=tmp_path_factory.mktemp("limits") / "server.log").start()
    yield server
    server.stop()
    MLQ(namespace, redis_url=redis_url).clear_all()


def half_sent(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(HALF_SENT)
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket, wait: float) -> bool:
    """Whether the server closes `sock` within `wait` s (what it still sends is skipped:
    a response's body may arrive after its headers)."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def test_half_sent_requests_cannot_starve_a_normal_one(small: ServerProcess) -> None:
    sockets = half_sent(small.port, 40)  # twice the connection cap
    try:
        started = time.monotonic()
        response = requests.get(small.url + "/healthz", timeout=5)
        assert (response.status_code, response.text) == (200, "ok")
        assert time.monotonic() - started < 1.0
        # the server kept at most its cap: the slowest were cut to make room
        still_open = [s for s in sockets if not closed_by_server(s, 0.05)]
        assert len(still_open) <= 20
    finally:
        for sock in sockets:
            sock.close()


def test_a_client_slow_to_send_its_headers_is_cut_off(small: ServerProcess) -> None:
    (slow,) = half_sent(small.port, 1)
    idle = socket.create_connection(("127.0.0.1", small.port), timeout=5)
    try:
        started = time.monotonic()
        # an idle keep-alive connection waits no longer for its next request
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"200 OK" in idle.recv(4096)
        assert closed_by_server(slow, 5.0)
        assert 1.0 < time.monotonic() - started < 4.0
        assert closed_by_server(idle, 5.0)
    finally:
        slow.close()
        idle.close()


def test_event_streams_are_capped(small: ServerProcess) -> None:
    job_id = small.post_job("waiting", queue="nobody-serves-this")
    streams = [requests.get(f"{small.url}/jobs/{job_id}/events", stream=True, timeout=10)
               for _ in range(3)]
    try:
        for stream in streams:
            assert stream.status_code == 200
            assert next(stream.iter_lines()) == b"event: queued"
        refused = small.get(f"/jobs/{job_id}/events")
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert "event streams" in refused.json()["error"]
        assert small.get("/healthz").text == "ok"  # everything else still answers
    finally:
        for stream in streams:
            stream.close()
    # closed streams give their places back (the server notices within its keep-alive)
    def accepted() -> bool:
        again = requests.get(f"{small.url}/jobs/{job_id}/events", stream=True, timeout=10)
        again.close()
        return again.status_code == 200

    wait_until(accepted, 10, "a stream to be accepted again", interval=0.2)


def test_when_every_connection_is_busy_a_new_one_gets_503(
        tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> None:
    namespace = f"l_{uuid.uuid4().hex[:10]}"
    server = ServerProcess(namespace=namespace, redis_url=redis_url, max_connections=2,
                           log_path=tmp_path_factory.mktemp("busy") / "server.log").start()
    try:
        job_id = server.post_job("waiting", queue="nobody-serves-this")
        streams = [requests.get(f"{server.url}/jobs/{job_id}/events", stream=True, timeout=10)
                   for _ in range(2)]
        try:
            for stream in streams:
                assert next(stream.iter_lines()) == b"event: queued"
            busy = requests.get(server.url + "/healthz", timeout=5)
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
            assert "too many connections" in busy.json()["error"]
        finally:
            for stream in streams:
                stream.close()
    finally:
        server.stop()
        MLQ(namespace, redis_url=redis_url).clear_all()
