"""MLQ from this checkout. Configuration: `mlq.supervisor.Supervisor` with
`concurrency=N` spawned worker processes (what `controller consumer --concurrency N`
runs), the listener given as a per-worker import (`--import mlq_bench:noop`, so no
registry round trip), logging at WARNING. The reader waits with `MLQ.wait`
(pub/sub). Bulk: `MLQ.post_many` (one Lua step, one round trip, per 500 jobs)."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

from common import mark_done
from peer import Peer
from peer import versions as _versions

NAMESPACE = "bench"


def noop(msg: Any, *args: Any) -> int:
    mark_done()
    return 1


def versions() -> dict[str, str]:
    import mlq
    found = _versions("redis", "hiredis", "msgpack")
    found["mlq"] = f"{mlq.__version__} (this checkout)"
    return found


class Bench(Peer):
    bulk_api = "MLQ.post_many"

    def __init__(self, url: str) -> None:
        from mlq.queue import MLQ
        self.url = url
        self.mlq = MLQ(NAMESPACE, redis_url=url)

    def enqueue(self, n: int) -> None:
        post = self.mlq.post
        for i in range(n):
            post(i)

    def bulk(self, n: int) -> None:
        self.mlq.post_many(range(n))

    def worker_commands(self, workers: int) -> list[list[str]]:
        return [[sys.executable, __file__, self.url, str(workers)]]

    def round_trips(self, n: int, timeout: float) -> list[float]:
        import time
        samples = []
        for i in range(n):
            started = time.perf_counter()
            record = self.mlq.wait(self.mlq.post(i), timeout=timeout)
            if record["status"] != "completed":
                raise RuntimeError(f"MLQ job ended {record['status']}: {record['error']}")
            samples.append(time.perf_counter() - started)
        return samples


def worker_main(url: str, workers: int) -> None:
    """A supervisor with `workers` children; SIGTERM asks it to finish and stop."""
    from mlq.supervisor import Supervisor
    logging.basicConfig(level=logging.WARNING)
    supervisor = Supervisor(NAMESPACE, url, concurrency=workers, imports=["mlq_bench:noop"])
    signal.signal(signal.SIGTERM, lambda *_: supervisor.request_stop())
    supervisor.run()


if __name__ == "__main__":
    worker_main(sys.argv[1], int(sys.argv[2]))
