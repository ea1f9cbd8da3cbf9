"""Dramatiq. Configuration: RedisBroker with the Results middleware on a Redis
result backend (results kept, read with `Message.get_result(block=True)`, which
blocks on the result key); `--processes N` for N worker processes, each with
Dramatiq's default 8 worker threads (measured: with `--threads 1` its prefetch
pipeline stalls and a drain runs 7x slower), default middleware otherwise.
No bulk enqueue API (a group sends one message at a time)."""

from __future__ import annotations

import os

import dramatiq
from common import REDIS_URL_ENV, mark_done
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend
from peer import Peer, timed, venv_script
from peer import versions as _versions

_URL = os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0")
broker = RedisBroker(url=_URL)
backend = RedisBackend(url=_URL)
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, max_retries=0, queue_name="bench")
def noop() -> int:
    mark_done()
    return 1


def versions() -> dict[str, str]:
    return _versions("dramatiq", "redis", "hiredis")


class Bench(Peer):
    def __init__(self, url: str) -> None:
        if url != _URL:
            raise RuntimeError(f"{REDIS_URL_ENV} must name the server the driver uses")

    def enqueue(self, n: int) -> None:
        send = noop.send
        for _ in range(n):
            send()

    def worker_commands(self, workers: int) -> list[list[str]]:
        return [[venv_script("dramatiq"), "dramatiq_bench", "--processes", str(workers),
                 "--threads", "8"]]

    def round_trips(self, n: int, timeout: float) -> list[float]:
        def one() -> None:
            if noop.send().get_result(backend=backend, block=True, timeout=int(timeout * 1000)) != 1:
                raise RuntimeError("Dramatiq actor returned the wrong result")
        return timed(n, one)
