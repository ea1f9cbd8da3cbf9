"""Redis SIGKILLed mid-run and restarted on the same port and AOF directory; Redis hung.

Jobs are posted one by one all along. Pass: every job whose id was returned
more than a second before the crash (appendfsync everysec) and every job
posted after the restart ends completed, with its own message; the workers,
the reaper and the HTTP server reconnect by themselves; /healthz answers 503
within 2 s while Redis is down or hung, and 200 after.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import redis
import requests

from mlq import MLQ
from mlq.embedded import EmbeddedServer, free_port
from mlq.heartbeat import workers
from mlq.serialization import unpack
from tests.faults.conftest import Command, Commands, wait_for_port, wait_until

#: SPEC §7: /healthz answers 503 within this many seconds while Redis is unreachable.
HEALTH_LIMIT = 2.0
#: appendfsync everysec may lose the writes of the last second before a crash.
EVERYSEC_WINDOW = 1.0


class Poster:
    """Posts a job every few ms from a thread; remembers (id, token, time returned)."""

    def __init__(self, q: MLQ, log: Path) -> None:
        self.q = q
        self.log = str(log)
        self.posted: list[tuple[str, int, float]] = []
        self.refused = 0
        self.last_error: Exception | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        token = 0
        while not self.stop.is_set():
            token += 1
            try:
                job_id = self.q.post({"log": self.log, "sleep": 0.005, "token": token})
            except redis.RedisError as exc:
                self.refused += 1
                self.last_error = exc
                self.stop.wait(0.05)
                continue
            self.posted.append((job_id, token, time.time()))
            self.stop.wait(0.01)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def _healthz(port: int) -> tuple[int, float]:
    started = time.monotonic()
    answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    return answer.status_code, time.monotonic() - started


def _start_server(commands: Commands, url: str, namespace: str) -> tuple[Command, int]:
    port = free_port()
    server = commands.start("server", "server", "--redis_url", url, "--namespace", namespace,
                            "--server_port", str(port))
    wait_for_port(port, server)
    return server, port


def _states(q: MLQ, ids: list[str]) -> dict[str, tuple[str | None, int | None]]:
    """id -> (status, token of its message) for each id, read in one round trip."""
    pipe = q.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(q.keys.job(job_id), "status", "msg")
    states = {}
    for job_id, (status, msg) in zip(ids, pipe.execute()):
        states[job_id] = (unpack(status), unpack(msg)["token"] if msg else None)
    return states


@pytest.mark.timeout(120)
def test_redis_crash_loses_nothing_acknowledged(own_redis: EmbeddedServer, commands: Commands,
                                                tmp_path: Path) -> None:
    url, namespace = own_redis.url, "crash"
    q = MLQ(namespace, redis_url=url)
    consumer = commands.start(
        "consumer", "consumer", "--redis_url", url, "--namespace", namespace,
        "--concurrency", "2", "--import", "tests.faults.listeners:record",
        "--heartbeat_interval", "0.5", "--heartbeat_timeout", "10",
        # a finish lost with the crash leaves its job 'started' on a live worker:
        # the reaper's job timeout is what takes such a job back (SPEC §6)
        "--reaper", "--reaper_interval", "1", "--reaper_timeout", "10")
    server, port = _start_server(commands, url, namespace)
    wait_until(lambda: sum(w["alive"] for w in workers(q.client, q.keys)) == 2, 60,
               f"2 workers\n{consumer.output()}")
    poster = Poster(q, tmp_path / "executions.log")
    try:
        try:
            wait_until(lambda: len(poster.posted) >= 150, 30, "150 posts")
        except AssertionError as exc:
            raise AssertionError(f"{exc} (last error: {poster.last_error!r})") from None
        time.sleep(0.3)  # a steady flow, not a burst, at the moment of the crash

        crashed_at = time.time()
        own_redis.kill()
        down = []
        while time.time() - crashed_at < 2.5:
            down.append(_healthz(port))
            time.sleep(0.2)  # sampling /healthz through the 2.5 s outage
        restarted_at = time.time()
        own_redis.start()
        back_after = wait_until(lambda: _healthz(port)[0] == 200 and time.time(), 10,
                                "/healthz 200 after the restart") - restarted_at
        wait_until(lambda: sum(t > restarted_at for _, _, t in poster.posted) >= 100, 30,
                   f"100 posts after the restart\n{commands.outputs()}")
    finally:
        poster.close()

    assert down and all(code == 503 for code, _ in down), down
    slowest = max(seconds for _, seconds in down)
    assert slowest < HEALTH_LIMIT, f"/healthz took {slowest:.2f} s while Redis was down"

    acknowledged = [(i, tok) for i, tok, t in poster.posted if t < crashed_at - EVERYSEC_WINDOW]
    window = [(i, tok) for i, tok, t in poster.posted
              if crashed_at - EVERYSEC_WINDOW <= t <= crashed_at]
    after = [(i, tok) for i, tok, t in poster.posted if t > restarted_at]
    must = acknowledged + after

    def all_completed() -> bool:
        states = _states(q, [i for i, _ in must])
        return all(states[i] == ("completed", tok) for i, tok in must)

    try:
        wait_until(all_completed, 40, "every acknowledged job to complete", interval=0.2)
    except AssertionError:
        states = _states(q, [i for i, _ in must])
        wrong = {i: (states[i], tok) for i, tok in must if states[i] != ("completed", tok)}
        raise AssertionError(f"not completed: {wrong}\n{commands.outputs()}") from None
    window_states = _states(q, [i for i, _ in window])
    survived = sum(window_states[i] == ("completed", tok) for i, tok in window)

    # reconnected by themselves: the same processes, still running, and healthy
    assert consumer.running() and server.running(), commands.outputs()
    assert _healthz(port)[0] == 200
    first_after = min(unpack(q.client.hget(q.keys.job(i), "processing_finished"))
                      for i, _ in after)
    assert server.terminate() == 0, server.output()
    assert consumer.terminate() == 0, consumer.output()
    print(f"\nredis crash: {len(acknowledged)} jobs acknowledged more than 1 s before the "
          f"SIGKILL all completed; {survived}/{len(window)} of the last second survived; "
          f"{len(after)} posted after the restart completed; {poster.refused} posts refused "
          f"while down; /healthz 503 in at most {slowest:.2f} s, 200 {back_after:.2f} s after "
          f"the restart; workers finished a new job {first_after - restarted_at:.2f} s after it")


@pytest.mark.timeout(60)
def test_healthz_answers_while_redis_hangs(own_redis: EmbeddedServer,
                                           commands: Commands) -> None:
    """A Redis that accepts nothing (SIGSTOP) must not hang /healthz in the client's retries."""
    server, port = _start_server(commands, own_redis.url, "hang")
    assert _healthz(port)[0] == 200
    pid = own_redis.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        hung = [_healthz(port) for _ in range(3)]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert all(code == 503 for code, _ in hung), hung
    slowest = max(seconds for _, seconds in hung)
    assert slowest < HEALTH_LIMIT, f"/healthz took {slowest:.2f} s while Redis hung"
    wait_until(lambda: _healthz(port)[0] == 200, 10, "/healthz 200 after SIGCONT")
    assert server.terminate() == 0, server.output()
    print(f"\nredis hung (SIGSTOP): /healthz 503 in at most {slowest:.2f} s, 200 after SIGCONT")
