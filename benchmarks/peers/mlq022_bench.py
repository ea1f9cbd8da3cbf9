"""The original MLQ 0.2.2 from PyPI (redis-py 2.10, in its own venv). It has one
way to consume: `create_listener`, a BRPOPLPUSH loop in a thread; one process per
worker. It has no blocking wait for a client, so the reader uses the pub/sub
channel its workers publish each result on (`pub_<id>`). It subscribes before the
post, to the id the post will get (the next value of the namespace's counter; this
driver is the only producer, and the id is checked): subscribing after the post
misses results that come first, and the record is no help then, since a worker
publishes before it marks the record done. No bulk enqueue API."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from common import host_port, mark_done
from mlq.queue import MLQ  # the PyPI package: this venv's PYTHONPATH excludes the checkout
from peer import Peer
from peer import versions as _versions

NAMESPACE = "bench022"


def noop(msg: Any, *args: Any) -> int:
    mark_done()
    return 1


def versions() -> dict[str, str]:
    return _versions("mlq", "redis", "hiredis", "msgpack")


def _queue(url: str) -> MLQ:
    host, port = host_port(url)
    return MLQ(NAMESPACE, host, port, 0)


class Bench(Peer):
    def __init__(self, url: str) -> None:
        self.url = url
        self.mlq = _queue(url)

    def enqueue(self, n: int) -> None:
        post = self.mlq.post
        for i in range(n):
            post(i)

    def worker_commands(self, workers: int) -> list[list[str]]:
        return [[sys.executable, __file__, self.url] for _ in range(workers)]

    def round_trips(self, n: int, timeout: float) -> list[float]:
        samples = []
        client = self.mlq._redis
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        for i in range(n):
            started = time.perf_counter()
            channel = f"pub_{int(client.get(self.mlq.id_key) or 0) + 1}"
            pubsub.subscribe(channel)
            job_id = self.mlq.post(i)
            if "pub_" + job_id != channel:
                raise RuntimeError(f"another producer took id {channel[4:]}")
            deadline = time.monotonic() + timeout
            while not pubsub.get_message(timeout=max(deadline - time.monotonic(), 0.001)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"MLQ 0.2.2 job {job_id} not done in {timeout} s")
            samples.append(time.perf_counter() - started)
            pubsub.unsubscribe(channel)
        pubsub.close()
        return samples


def worker_main(url: str) -> None:
    logging.basicConfig(level=logging.WARNING)  # it logs INFO lines per job otherwise
    _queue(url).create_listener(noop)
    threading.Event().wait()  # the listener thread works; SIGTERM ends the process


if __name__ == "__main__":
    worker_main(sys.argv[1])
