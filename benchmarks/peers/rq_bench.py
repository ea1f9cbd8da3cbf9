"""RQ. Fastest documented configuration: `SimpleWorker` (runs each job in the worker
process; the default Worker forks per job), logging at WARNING; results kept
(the default result_ttl), read back with `Job.latest_result(timeout=...)`, which
blocks on the job's result stream (XREAD BLOCK) instead of polling.
Bulk: `Queue.enqueue_many` with `Queue.prepare_data` (one pipeline)."""

from __future__ import annotations

import time

from common import mark_done
from peer import Peer, venv_script
from peer import versions as _versions
from redis import Redis
from rq import Queue
from rq.results import Result

QUEUE = "bench"


def noop() -> int:
    mark_done()
    return 1


def versions() -> dict[str, str]:
    return _versions("rq", "redis", "hiredis")


class Bench(Peer):
    bulk_api = "Queue.enqueue_many"

    def __init__(self, url: str) -> None:
        self.url = url
        self.queue = Queue(QUEUE, connection=Redis.from_url(url))

    def enqueue(self, n: int) -> None:
        enqueue = self.queue.enqueue
        for _ in range(n):
            enqueue(noop)

    def bulk(self, n: int) -> None:
        self.queue.enqueue_many([Queue.prepare_data(noop) for _ in range(n)])

    def worker_commands(self, workers: int) -> list[list[str]]:
        return [[venv_script("rq"), "worker", "--worker-class", "rq.worker.SimpleWorker",
                 "--url", self.url, "--logging_level", "WARNING", "--quiet", QUEUE]
                for _ in range(workers)]

    def round_trips(self, n: int, timeout: float) -> list[float]:
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            result = self.queue.enqueue(noop).latest_result(timeout=int(max(timeout, 1)))
            if result is None or result.type != Result.Type.SUCCESSFUL:
                raise RuntimeError(f"RQ job did not succeed: {result!r}")
            samples.append(time.perf_counter() - started)
        return samples
