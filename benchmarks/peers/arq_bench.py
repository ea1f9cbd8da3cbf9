"""arq. Configuration: worker poll_delay 10 ms (the default 0.5 s would make every
drain and round trip wait on the poll), default max_jobs (10 concurrent coroutines
per process), results kept (arq's default), logging at WARNING through
`--custom-log-dict` (the CLI's default logs two INFO lines per job). The reader
waits with `Job.result(poll_delay=0.001)`: arq only offers polling, so the
shortest sensible interval. No bulk enqueue API."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from common import REDIS_URL_ENV, mark_done
from peer import Peer, venv_script
from peer import versions as _versions

_URL = os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0")
WORKER_POLL = 0.01
RESULT_POLL = 0.001


async def noop(ctx: dict[str, Any]) -> int:
    mark_done()
    return 1


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(_URL)
    poll_delay = WORKER_POLL
    queue_name = "bench"


LOG_CONFIG: dict[str, Any] = {
    "version": 1, "disable_existing_loggers": False,
    "handlers": {"h": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["h"], "level": "WARNING"}},
}


def versions() -> dict[str, str]:
    return _versions("arq", "redis", "hiredis")


class Bench(Peer):
    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool: ArqRedis = self.loop.run_until_complete(
            create_pool(RedisSettings.from_dsn(url), default_queue_name="bench"))

    def enqueue(self, n: int) -> None:
        async def run() -> None:
            for _ in range(n):
                await self.pool.enqueue_job("noop")
        self.loop.run_until_complete(run())

    def worker_commands(self, workers: int) -> list[list[str]]:
        return [[venv_script("arq"), "arq_bench.WorkerSettings",
                 "--custom-log-dict", "arq_bench.LOG_CONFIG"] for _ in range(workers)]

    def round_trips(self, n: int, timeout: float) -> list[float]:
        async def run() -> list[float]:
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                job = await self.pool.enqueue_job("noop")
                if job is None or await job.result(timeout=timeout, poll_delay=RESULT_POLL) != 1:
                    raise RuntimeError("arq job returned the wrong result")
                samples.append(time.perf_counter() - started)
            return samples
        return self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()
