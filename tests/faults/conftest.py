"""Fixtures of the fault tests: a private Redis per test, and controller commands run in
process groups of their own, so a test kills only what it started (also on failure)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mlq.embedded import EmbeddedServer, port_open
from tests.conftest import wait_until  # noqa: F401 (the fault tests import it from here)
from tests.processes import live_processes, stat_fields

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: The variables that stand for flags (SPEC §8): the tests name their own, or none.
FLAG_VARS = ("MLQ_REDIS_URL", "MLQ_NAMESPACE", "MLQ_TOKEN", "MLQ_SECRET")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of this folder `faults` (select with -m faults, skip with -m 'not faults')."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.faults)


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without the flag variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in FLAG_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# -- processes ----------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent counts as gone)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def group_pids(pgid: int) -> list[int]:
    """Every live process whose process group is `pgid`."""
    return [pid for pid, (_, group) in live_processes().items() if group == pgid]


def tcp_ports(pids: list[int]) -> set[int]:
    """The local ports of the TCP sockets these processes hold (read from /proc)."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone meanwhile
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # local address is fields[1] (HEX_IP:HEX_PORT), inode fields[9]
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def clients_from(client: Any, ports: set[int]) -> list[str]:
    """The addresses of the connections Redis still has from these local ports."""
    return [c["addr"] for c in client.client_list()
            if int(c["addr"].rsplit(":", 1)[1]) in ports]


class Command:
    """A `python -m controller ...` process, leader of its own process group.

    Its output goes to a file (a pipe nobody reads would fill up and block it).
    """

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "controller", *args], cwd=ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.pgid = self.process.pid  # start_new_session: it leads a new group

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self, last: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no output)"
        return f"--- {self.name} (pid {self.pid}) ---\n" + "\n".join(lines[-last:])

    def owns(self, pid: int) -> bool:
        """True when `pid` is alive and in this command's process group."""
        try:
            return pid_alive(pid) and os.getpgid(pid) == self.pgid
        except ProcessLookupError:
            return False

    def kill_leader(self) -> None:
        """SIGKILL the command's own process only (its children live on, orphaned)."""
        self.process.kill()
        self.process.wait()

    def kill_group(self) -> list[int]:
        """SIGKILL every process of the group at once; returns the pids it held."""
        pids = group_pids(self.pgid)
        if pids:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        return pids

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and the exit code, which must come within `timeout` s."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout} s after "
                                 f"SIGTERM\n{self.output()}") from None

    def cleanup(self) -> None:
        """Kill whatever is left of the group (teardown, also after a failure)."""
        if group_pids(self.pgid):
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class Commands:
    """Starts controller commands for one test and kills their groups at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Command] = []

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Command:
        command = Command(name, list(args), self.log_dir, env if env is not None else base_env())
        self.started.append(command)
        return command

    def outputs(self) -> str:
        return "\n".join(c.output() for c in self.started)

    def cleanup(self) -> None:
        for command in self.started:
            command.cleanup()


@pytest.fixture
def commands(tmp_path: Path) -> Iterator[Commands]:
    started = Commands(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A Redis of this test alone (free loopback port, AOF under tmp_path): killing it,
    or its clients, hurts no other test."""
    server = EmbeddedServer(port=None, data_dir=tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def wait_for_port(port: int, command: Command, timeout: float = 30.0) -> None:
    """Until something listens on 127.0.0.1:port; fails early when `command` exits."""

    def ready() -> bool:
        assert command.running(), f"exited early\n{command.output()}"
        return port_open("127.0.0.1", port, timeout=0.2)

    wait_until(ready, timeout, f"port {port}")


# -- callbacks ----------------------------------------------------------------------------
class Endpoint:
    """A callback receiver: /hang answers after `hang` s, /fail answers 500, /ok 200;
    every request is recorded with its arrival time."""

    def __init__(self, hang: float = 0.0) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], float]] = []
        self.changed = threading.Condition()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                with endpoint.changed:
                    endpoint.requests.append((parts.path, parse_qs(parts.query), time.time()))
                    endpoint.changed.notify_all()
                if parts.path == "/hang":
                    time.sleep(hang)  # a slow endpoint: the hang itself is the fault
                try:
                    self.send_response(500 if parts.path == "/fail" else 200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the caller gave up waiting: that is the point

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def times(self, path: str, job_id: str) -> list[float]:
        with self.changed:
            return [t for p, query, t in self.requests
                    if p == path and query.get("job_id") == [job_id]]

    def wait_for(self, path: str, job_id: str, count: int, timeout: float) -> list[float]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.times(path, job_id)) >= count, timeout)
        return self.times(path, job_id)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
