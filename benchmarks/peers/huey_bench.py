"""Huey. Fastest documented configuration: RedisHuey with blocking dequeue (BRPOP,
the default) and `notify_result=True` (Huey 3: the reader BLPOPs a notification
key instead of polling with back-off); one consumer per worker process with one
worker thread (`-w 1 -k thread`), periodic tasks and health checks off, logging at
WARNING (`-q`). Results are kept (Huey's default for non-None returns).
No bulk enqueue API."""

from __future__ import annotations

import os

from common import REDIS_URL_ENV, mark_done
from huey import RedisHuey
from peer import Peer, timed, venv_script
from peer import versions as _versions

# Workers import this module to find the task; they get the URL from the environment.
huey = RedisHuey("bench", url=os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0"),
                 notify_result=True)


@huey.task()
def noop() -> int:
    mark_done()
    return 1


def versions() -> dict[str, str]:
    return _versions("huey", "redis", "hiredis")


class Bench(Peer):
    def __init__(self, url: str) -> None:
        self.url = url

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            noop()

    def worker_commands(self, workers: int) -> list[list[str]]:
        return [[venv_script("huey_consumer"), "huey_bench.huey", "-w", "1", "-k", "thread",
                 "--no-periodic", "--disable-health-check", "--quiet"]
                for _ in range(workers)]

    def round_trips(self, n: int, timeout: float) -> list[float]:
        def one() -> None:
            if noop().get(blocking=True, timeout=timeout) != 1:
                raise RuntimeError("Huey task returned the wrong result")
        return timed(n, one)
