"""Every process the harness starts is stopped at the end, Ctrl-C and crashes included.

Drivers and servers start in sessions of their own (Ctrl-C in the terminal reaches
only the harness, which then stops them in order); a driver's workers stay in its
process group, so killing the group takes them too. As a last net, every process
carries BENCH_RUN_ID=<this run> in its environment, and `sweep` kills, by pid,
any process still carrying it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from typing import IO, Sequence

RUN_ID_ENV = "BENCH_RUN_ID"
RUN_ID = uuid.uuid4().hex


class Group:
    """A process started in its own session; stop() ends its whole process group."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: IO[bytes],
                 cwd: str | None = None) -> None:
        env = dict(env, **{RUN_ID_ENV: RUN_ID})
        self.proc = subprocess.Popen(list(args), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _live.append(self)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM to the group, then SIGKILL to whatever is left in it after `grace` s
        (workers may outlive the driver that started them)."""
        self._signal(signal.SIGTERM)
        self.wait(grace)
        self._signal(signal.SIGKILL)
        self.proc.wait()
        if self in _live:
            _live.remove(self)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except OSError:
            pass  # the group is gone already


_live: list[Group] = []


def mark_this_process() -> None:
    """Children inherit the environment, so everything started from here carries the id."""
    os.environ[RUN_ID_ENV] = RUN_ID


def stop_all() -> None:
    for group in list(_live):
        group.stop(grace=2.0)
    sweep()


def sweep() -> int:
    """SIGKILL every process that still carries this run's id; how many there were."""
    marker = f"{RUN_ID_ENV}={RUN_ID}".encode()
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if marker not in handle.read().split(b"\0"):
                    continue
            os.kill(int(entry), signal.SIGKILL)
            killed += 1
        except OSError:
            continue
    if killed:
        time.sleep(0.2)
    return killed
