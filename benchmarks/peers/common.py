"""What every peer driver shares. It runs inside each peer's own virtual
environment (one of them pins redis 2.10), so it uses the standard library only:
a tiny RESP client for INFO and FLUSHALL, /proc for CPU time, and files for
counting finished jobs.

How a drained job is counted: the no-op task of every system calls
`mark_done()`, which appends one byte to a file named after the worker's pid.
That costs one write() (~2 µs), sends nothing to Redis (so the command counts
stay the system's own), and tells the driver both how many jobs are done and
how many worker processes are running jobs, without polling Redis.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import urlparse

DONE_DIR_ENV = "BENCH_DONE_DIR"
REDIS_URL_ENV = "BENCH_REDIS_URL"
RUN_ID_ENV = "BENCH_RUN_ID"  # set by the harness (harness/procs.py)
PEERS_DIR = os.path.dirname(os.path.abspath(__file__))

_done_fd: int | None = None


def mark_done() -> None:
    """Called by each no-op task: one byte in this process's done file."""
    global _done_fd
    if _done_fd is None:
        folder = os.environ.get(DONE_DIR_ENV)
        _done_fd = -1 if not folder else os.open(
            os.path.join(folder, str(os.getpid())), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if _done_fd >= 0:
        os.write(_done_fd, b".")


def redis_url() -> str:
    """The private server's URL, for modules that need it at import time (workers)."""
    return os.environ[REDIS_URL_ENV]


def host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


class Resp:
    """A minimal RESP2 client: enough for INFO and FLUSHALL, independent of any redis-py."""

    def __init__(self, url: str) -> None:
        self.sock = socket.create_connection(host_port(url), timeout=30)
        self.file = self.sock.makefile("rb")

    def command(self, *args: str | bytes) -> Any:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode() if isinstance(arg, str) else arg
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self) -> Any:
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.file.read(size + 2)[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise RuntimeError(f"bad RESP reply {line!r}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@dataclass
class RedisSnapshot:
    commands: int  # every command the server ran, those inside Lua scripts included
    scripts: int  # EVAL/EVALSHA/FCALL calls
    cpu: float  # server CPU seconds, user + system

    @classmethod
    def take(cls, resp: Resp) -> RedisSnapshot:
        commands = scripts = 0
        cpu = 0.0
        for line in resp.command("INFO", "all").decode().splitlines():
            name, _, value = line.partition(":")
            if name.startswith("cmdstat_"):
                calls = int(value.split(",")[0].split("=")[1])
                if name == "cmdstat_info":
                    continue  # our own snapshots
                commands += calls
                if name in ("cmdstat_eval", "cmdstat_evalsha", "cmdstat_fcall"):
                    scripts += calls
            elif name in ("used_cpu_user", "used_cpu_sys"):
                cpu += float(value)
        return cls(commands, scripts, cpu)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # the name may hold spaces


def process_tree(roots: Sequence[int]) -> set[int]:
    """`roots` and all their descendants (dramatiq, the MLQ supervisor fork or spawn)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                parents[int(entry)] = int(fields[1])
    tree = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def cpu_seconds(pids: set[int]) -> float:
    """user + system CPU of the live processes in `pids`."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLOCK_TICKS


class DoneCounter:
    """Reads the done files that `mark_done` appends to."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))

    def count(self) -> tuple[int, int]:
        """(jobs done, worker processes that have done at least one)."""
        total = active = 0
        with os.scandir(self.folder) as entries:
            for entry in entries:
                size = entry.stat().st_size
                total += size
                active += size > 0
        return total, active


class Workers:
    """Worker processes of one scenario, started in this driver's process group
    (so the harness's group kill is the last resort for them)."""

    def __init__(self, commands: list[list[str]], env: dict[str, str], log_path: str) -> None:
        self.log = open(log_path, "ab")
        self.procs = [subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                       stderr=subprocess.STDOUT, cwd=PEERS_DIR)
                      for cmd in commands]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def any_exited(self) -> bool:
        return any(p.poll() is not None for p in self.procs)

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM (each peer's own graceful stop), then SIGKILL whatever is left."""
        tree = process_tree(self.pids)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                pass
        for pid in tree:  # children a peer forgot, or a peer that ignored SIGTERM
            if _ours(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for proc in self.procs:
            proc.wait()
        self.log.close()


def _ours(pid: int) -> bool:
    """Still one of this run's processes (not a pid reused since), by the run id the
    harness puts in every environment; without one, trust the pid."""
    run_id = os.environ.get(RUN_ID_ENV)
    if not run_id:
        return True
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return f"{RUN_ID_ENV}={run_id}".encode() in handle.read().split(b"\0")
    except OSError:
        return False


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]
