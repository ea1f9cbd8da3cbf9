"""Helpers for driving `python -m controller` as real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlq.embedded import port_open
from mlq.queue import MLQ

ROOT = Path(__file__).resolve().parents[2]
#: The variables that stand for flags (SPEC §8): a test names its own, or none.
FLAG_VARS = ("MLQ_REDIS_URL", "MLQ_NAMESPACE", "MLQ_TOKEN", "MLQ_SECRET")


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without the flag variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in FLAG_VARS}
    env["PYTHONUNBUFFERED"] = "1"  # log lines arrive as they are written
    env.update(extra)
    return env


@dataclass
class Result:
    rc: int
    raw: bytes
    raw_err: bytes

    @property
    def out(self) -> str:
        return self.raw.decode()

    @property
    def err(self) -> str:
        return self.raw_err.decode()

    def assert_one_line_error(self, rc: int = 2) -> str:
        """The command failed with `rc` and said why in one line, without a traceback."""
        assert self.rc == rc, (self.rc, self.out, self.err)
        assert "Traceback" not in self.err
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert lines, "no message on stderr"
        return lines[-1]


def run_controller(*args: str, env: dict[str, str] | None = None, input: bytes | None = None,
                   timeout: float = 30.0) -> Result:
    """Run `python -m controller ARGS` to completion."""
    done = subprocess.run([sys.executable, "-m", "controller", *args], cwd=ROOT,
                          env=env if env is not None else base_env(),
                          input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(redis_url: str, namespace: str) -> Callable[..., Result]:
    """`cli("status", "1")` runs controller with this test's --redis_url and --namespace."""

    def call(*args: str, **kwargs: object) -> Result:
        return run_controller(*args, "--redis_url", redis_url, "--namespace", namespace,
                              **kwargs)  # type: ignore[arg-type]

    return call


@pytest.fixture
def queue(redis_url: str, namespace: str) -> Iterator[MLQ]:
    """An MLQ on this test's namespace; any in-process consuming stops at teardown."""
    mlq = MLQ(namespace, redis_url=redis_url)
    yield mlq
    # not client.close(): shutdown() leaves the registry's pub/sub thread to end on
    # its own, and a closed client would make it fail (redis-py closes on collection)
    mlq.shutdown(timeout=10)


class Running:
    """A long-running controller command; its stdout and stderr are collected line by line."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controller", *args], cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        """The first output line containing `text`, waiting up to `timeout` seconds for it."""

        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self._eof, timeout)
            line = found()
        assert line is not None, f"{text!r} not in the output:\n{self.output}"
        return line

    def wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        """Until something listens on 127.0.0.1:port (no event to await, so a bounded poll)."""
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", port, timeout=0.2):
            assert self.process.poll() is None, f"exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"port {port} not open:\n{self.output}"
            time.sleep(0.05)  # the pause between two polls

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `signum` and return the exit code, which must come within `timeout`."""
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not exit within {timeout} s:\n{self.output}") from None
        self._reader.join(10)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Running]]:
    """Start long-running commands; whatever is still running at teardown is killed."""
    started: list[Running] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Running:
        running = Running(args, env if env is not None else base_env())
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()
