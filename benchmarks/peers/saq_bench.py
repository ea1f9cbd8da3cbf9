"""SAQ. Configuration: Redis queue (BLMOVE to take work, no polling), default
worker concurrency (10 coroutines per process), default logging (errors only),
one `saq` process per worker. The reader waits on SAQ's pub/sub job channel with
`Queue.listen`, registered before the enqueue: `Job.refresh(until_complete=...)`,
the documented wait, subscribes only after reading the job, and SAQ starts its
pattern subscription afresh for each wait, so a job that finishes in between is
missed and the wait runs into its timeout (it did, once in a few hundred round
trips). A standing listen keeps SAQ's subscription open for the whole run.
Results are kept (SAQ's default).
No bulk enqueue API (`Queue.map` enqueues one at a time, then polls)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

from common import REDIS_URL_ENV, mark_done
from peer import Peer, venv_script
from peer import versions as _versions
from saq import Queue
from saq.job import TERMINAL_STATUSES, Status

_URL = os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0")


async def noop(ctx: dict[str, Any]) -> int:
    mark_done()
    return 1


# Read by `saq saq_bench.settings` in each worker process.
settings = {"queue": Queue.from_url(_URL, name="bench"), "functions": [noop]}


def versions() -> dict[str, str]:
    return _versions("saq", "redis", "hiredis")


class Bench(Peer):
    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.queue = Queue.from_url(url, name="bench")
        self.loop.run_until_complete(self.queue.connect())
        self._standing: asyncio.Task[None] | None = None

    def enqueue(self, n: int) -> None:
        async def run() -> None:
            for _ in range(n):
                await self.queue.enqueue("noop")
        self.loop.run_until_complete(run())

    def worker_commands(self, workers: int) -> list[list[str]]:
        return [[venv_script("saq"), "saq_bench.settings"] for _ in range(workers)]

    def round_trips(self, n: int, timeout: float) -> list[float]:
        async def one() -> None:
            key = uuid.uuid4().hex
            waiter = asyncio.ensure_future(self.queue.listen(
                [key], lambda _id, status: status in TERMINAL_STATUSES, timeout))
            await asyncio.sleep(0)  # the listen registers before the job exists
            await self.queue.enqueue("noop", key=key)
            await waiter
            job = await self.queue.job(key)
            if job is None or job.status != Status.COMPLETE or job.result != 1:
                raise RuntimeError(f"SAQ job ended {job and job.status}")

        async def run() -> list[float]:
            if self._standing is None:
                self._standing = asyncio.ensure_future(
                    self.queue.listen(["standing"], lambda *_: False, None))
                await asyncio.sleep(0.2)  # its PSUBSCRIBE is answered
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                await one()
                samples.append(time.perf_counter() - started)
            return samples
        return self.loop.run_until_complete(run())

    def close(self) -> None:
        if self._standing is not None:
            self._standing.cancel()
            try:
                self.loop.run_until_complete(self._standing)
            except asyncio.CancelledError:
                pass
        self.loop.run_until_complete(self.queue.disconnect())
        self.loop.close()
