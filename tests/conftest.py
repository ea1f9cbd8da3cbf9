"""Shared fixtures: one real server per test session, a fresh namespace per test."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mlq import MLQ
from mlq.embedded import EmbeddedServer


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.05) -> Any:
    """Poll `predicate` until it is truthy (returned); AssertionError after `timeout` s.

    Used only where there is no event to wait on (a process's state, a key that
    another thread or process changes, a count converging while faults are injected).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # the pause between two polls, not a wait for anything


def end_as_subscriptions_drop(q: MLQ, job_id: str, like: str) -> None:
    """End the job as the server's pub/sub connections are killed, in one step, so
    that no event of it reaches anybody: its record becomes that of the ended job
    `like` (but its id)."""
    ended = {name: value for name, value in q.client.hgetall(q.keys.job(like)).items()
             if name != b"id"}
    with q.client.pipeline(transaction=True) as pipe:
        pipe.client_kill_filter(_type="pubsub")
        pipe.hset(q.keys.job(job_id), mapping=ended)
        pipe.execute()


#: For the tests that use 127.0.0.1:6379 and :5000 themselves, as the docs write them
#: (the embedded default, the HTTP server's default port): run in parallel (pytest.ini),
#: they would find each other's servers there, so they share one xdist group, which
#: one worker runs test after test.
fixed_ports = pytest.mark.xdist_group("fixed-loopback-ports")


#: The group of the files that count the commands the whole session server received (INFO
#: commandstats): handed out first, so that the worker that takes it has run nothing else,
#: and no client that another file's test left running can add to the counts.
FIRST_GROUP = "counts-server-commands"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: every test file is one group, so that its module-scoped
    fixtures (a server, a built wheel, a browser) start once rather than once per worker;
    FIRST_GROUP is handed out first, then the groups that hold a `slow` test, so that the
    run does not end on one long file while the other workers have nothing left to do."""
    if not getattr(config.option, "loadgroup", False):  # set on the workers of --dist loadgroup
        return
    group_of: dict[pytest.Item, str] = {}
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
            mark = item.get_closest_marker("xdist_group")
        group_of[item] = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
    slow = {group_of[item] for item in items if item.get_closest_marker("slow")}
    # stable: the order within a group stays the files' own
    items.sort(key=lambda item: (group_of[item] != FIRST_GROUP, group_of[item] not in slow))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A throwaway Redis-compatible server on a free loopback port."""
    with EmbeddedServer(port=None, data_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedServer) -> str:
    """URL of the session's server."""
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses, so tests never see each other's keys."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def q(redis_url: str, namespace: str) -> Iterator[MLQ]:
    """An MLQ on a fresh namespace; consuming threads are stopped after the test."""
    mlq = MLQ(namespace, redis_url=redis_url, heartbeat_interval=0.2, heartbeat_timeout=2.0)
    yield mlq
    mlq.shutdown(timeout=10)
    mlq.clear_all()


class CallbackRecorder:
    """A real local HTTP server that records the callbacks it receives."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.status = 200
        self.delay = 0.0
        self.arrived = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                with recorder.arrived:
                    recorder.requests.append({"path": parts.path, "query": parse_qs(parts.query),
                                              "raw_query": parts.query, "time": time.time()})
                    recorder.arrived.notify_all()
                if recorder.delay:
                    time.sleep(recorder.delay)  # a slow receiver: the delay is the point
                self.send_response(recorder.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, object]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
        return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def callback_server() -> Iterator[CallbackRecorder]:
    recorder = CallbackRecorder()
    yield recorder
    recorder.close()
