"""Fixtures for the HTTP tests: real gevent servers in subprocesses, an in-process worker.

The servers live for the whole session (starting one costs about a second);
they all serve one namespace, and each module that consumes gets a worker of
its own, which clears the namespace before and after the module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from mlq import MLQ
from mlq.embedded import free_port

REPO = Path(__file__).resolve().parents[2]
TOKEN = "t0ken-for-the-http-tests"
#: What an upload to /consumer must say it is (a cross-site page cannot say it unasked).
JSON = {"Content-Type": "application/json"}
#: The open server's body limit: small, so the 413 tests send little.
SMALL_BODY = 256 * 1024

# The server process exactly as the `server` command runs it: gevent patches
# first, then the app is built and served until SIGTERM.
SERVER_CODE = """
from gevent import monkey
monkey.patch_all()
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
from mlq import MLQ
from controller.app import create_app
from controller.server import serve_forever
args = json.loads(sys.argv[1])
app = create_app(MLQ(args["namespace"], redis_url=args["redis_url"], secret=args["secret"]),
                 token=args["token"], admin_token=args["admin_token"], secret=args["secret"],
                 max_body=args["max_body"], allowed_hosts=args["allowed_hosts"],
                 max_auth_failures=args["max_auth_failures"], max_streams=args["max_streams"])
app.extensions["mlq"].sse_keepalive = args["keepalive"]
serve_forever(app, "127.0.0.1", args["port"], stop_timeout=args["stop_timeout"],
              header_timeout=args["header_timeout"], max_connections=args["max_connections"])
"""


@dataclass
class ServerProcess:
    """One `controller server`-like subprocess and a requests session for it."""

    namespace: str
    redis_url: str
    token: str | None = None
    admin_token: str | None = None
    secret: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    #: the auth tests send hundreds of bad tokens on purpose; the throttle's own
    #: test runs a server with the default
    max_auth_failures: int = 1_000_000
    header_timeout: float = 10.0
    max_connections: int = 1000
    max_streams: int = 500
    max_body: int = 64 * 1024 ** 2
    keepalive: float = 0.5
    stop_timeout: float = 0.5
    log_path: Path | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        args = {"namespace": self.namespace, "redis_url": self.redis_url, "token": self.token,
                "admin_token": self.admin_token, "secret": self.secret,
                "allowed_hosts": list(self.allowed_hosts),
                "max_auth_failures": self.max_auth_failures,
                "header_timeout": self.header_timeout, "max_connections": self.max_connections,
                "max_streams": self.max_streams,
                "max_body": self.max_body, "port": self.port, "keepalive": self.keepalive,
                "stop_timeout": self.stop_timeout}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
        command = [sys.executable, "-c", SERVER_CODE, json.dumps(args)]
        if self.log_path is None:
            self.process = subprocess.Popen(command, cwd=REPO, env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            with open(self.log_path, "wb") as log:  # the child keeps its own copy
                self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        # A subprocess gives no event to await, so poll /healthz (any answer will do).
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                requests.get(self.url + "/healthz", timeout=3)
                return
            except requests.ConnectionError:
                time.sleep(0.05)  # the pause between two polls
        raise RuntimeError(f"server did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    # -- requests with the server's token and a timeout ---------------------------
    def request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if auth and (self.admin_token or self.token):
            headers.setdefault("Authorization", f"Bearer {self.admin_token or self.token}")
        kwargs.setdefault("timeout", 10)
        return requests.request(method, self.url + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def post_job(self, msg: Any, **options: Any) -> str:
        """POST /jobs and return the id (asserting 200)."""
        response = self.post("/jobs", json={"msg": msg, **options})
        assert response.status_code == 200, response.text
        return response.text


@pytest.fixture(scope="session")
def http_namespace() -> str:
    """The one namespace the session's servers serve."""
    return f"h_{uuid.uuid4().hex[:12]}"


def _server(tmp_path_factory: pytest.TempPathFactory, **settings: Any) -> Iterator[ServerProcess]:
    log_path = tmp_path_factory.mktemp("http") / "server.log"
    server = ServerProcess(log_path=log_path, **settings).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
           http_namespace: str) -> Iterator[ServerProcess]:
    """The open server (no token), with a small body limit."""
    yield from _server(tmp_path_factory, namespace=http_namespace, redis_url=redis_url,
                       max_body=SMALL_BODY)


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
                 http_namespace: str) -> Iterator[ServerProcess]:
    """A server of the same namespace that wants `Authorization: Bearer TOKEN`."""
    yield from _server(tmp_path_factory, namespace=http_namespace, redis_url=redis_url,
                       token=TOKEN)


@pytest.fixture(scope="module")
def worker(request: pytest.FixtureRequest, redis_url: str,
           http_namespace: str) -> Iterator[MLQ]:
    """An in-process consumer running the module's LISTENERS on the servers' namespace."""
    q = MLQ(http_namespace, redis_url=redis_url, heartbeat_interval=0.2)
    q.clear_all()
    for function in request.module.LISTENERS:
        q.create_listener(function)
    yield q
    q.shutdown(timeout=10)
    q.clear_all()


def sse_events(response: requests.Response) -> Iterator[dict[str, Any]]:
    """Parse a text/event-stream as it arrives: {'event', 'data'} or {'comment'}."""
    event: dict[str, Any] = {}
    for line in response.iter_lines(chunk_size=None, decode_unicode=True):  # type: ignore[call-overload]
        if line == "":
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            event[name] = json.loads(value) if name == "data" else value
    if event:
        yield event


def tiny_png() -> bytes:
    """A real 1x1 PNG (red pixel), built by hand so no imaging library is needed."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A socket that accepts connections and never answers: a hung Redis."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
