"""Celery. Fastest documented configuration for one process: the solo pool
(`-P solo`: tasks run in the worker's main thread, no prefork pool), gossip,
mingle and heartbeat off, logging at WARNING, Redis as broker and as result
backend (results kept; `AsyncResult.get()` waits on the backend's pub/sub; the
producer subscribes to each task's result channel when it sends it, which is part
of Celery's enqueue cost with a result backend), default prefetch multiplier (4:
measured faster than 32 for these jobs).
Two workers are two solo worker processes. No bulk enqueue that batches round
trips (a group still publishes one message at a time)."""

from __future__ import annotations

import os

from celery import Celery
from common import REDIS_URL_ENV, mark_done
from peer import Peer, timed, venv_script
from peer import versions as _versions

_URL = os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0")
app = Celery("celery_bench", broker=_URL, backend=_URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_default_queue="bench",
)


@app.task(name="noop")
def noop() -> int:
    mark_done()
    return 1


def versions() -> dict[str, str]:
    return _versions("celery", "kombu", "redis", "hiredis")


class Bench(Peer):
    def __init__(self, url: str) -> None:
        if url != _URL:
            raise RuntimeError(f"{REDIS_URL_ENV} must name the server the driver uses")

    def enqueue(self, n: int) -> None:
        delay = noop.delay
        for _ in range(n):
            delay()

    def worker_commands(self, workers: int) -> list[list[str]]:
        return [[venv_script("celery"), "-A", "celery_bench", "worker", "-P", "solo",
                 "-l", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-Q", "bench", "-n", f"bench{i}@%h"]
                for i in range(workers)]

    def round_trips(self, n: int, timeout: float) -> list[float]:
        def one() -> None:
            if noop.delay().get(timeout=timeout) != 1:
                raise RuntimeError("Celery task returned the wrong result")
        return timed(n, one)
