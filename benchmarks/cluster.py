#!/usr/bin/env python
"""Draining several namespaces on a Redis Cluster of 3 shards against 1 shard.

    python benchmarks/cluster.py                    # 6 namespaces x 3,000 jobs, best of 3
    python benchmarks/cluster.py --namespaces 6 --jobs 2000 --repeats 1

Each namespace's keys live in one slot (its hash tag), so namespaces spread over
the shards. Both set-ups run in cluster mode (`redis+cluster://`), on loopback,
from the same `valkey-server` binary; the only difference is how many masters
share the slots. Every namespace gets the same number of jobs up front, then one
worker process per namespace drains it; the time runs from the workers' start
until every job's outcome is recorded, and the rate is all jobs over that time.

Shards add Redis CPU, not client CPU: they pay off when Redis is the bottleneck.
On a machine with few cores the workers and the shards share those cores, so
the report states the core count next to the figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # mlq from this checkout

from mlq import MLQ
from tests.topologies import ClusterSetup


def noop(msg: object, *args: object) -> object:
    return msg


def drain(url: str, namespace: str, start: multiprocessing.synchronize.Event,
          stop: multiprocessing.synchronize.Event) -> None:
    """One worker process: consume `namespace` from `start` until `stop`."""
    with MLQ(namespace, redis_url=url) as q:
        start.wait()
        q.create_listener(noop, concurrency=1)
        stop.wait()


def one_run(url: str, namespaces: list[str], jobs: int) -> float:
    """Jobs per second for draining every namespace with one worker process each."""
    queues = [MLQ(namespace, redis_url=url) for namespace in namespaces]
    for q in queues:
        q.clear_all()
        q.post_many(range(jobs), chunk_size=1000)
    start, stop = multiprocessing.Event(), multiprocessing.Event()
    workers = [multiprocessing.Process(target=drain, args=(url, ns, start, stop))
               for ns in namespaces]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # imports and connections, out of the timed part
    began = time.monotonic()
    start.set()
    for q in queues:
        while q.stats()["completed"] < jobs:
            time.sleep(0.01)
    took = time.monotonic() - began
    stop.set()
    for worker in workers:
        worker.join(30)
    for q in queues:
        q.clear_all()
        q.close()
    return len(namespaces) * jobs / took


def measure(shards: int, namespaces: list[str], jobs: int, repeats: int) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        cluster = ClusterSetup(Path(folder), masters=shards)
        try:
            cluster.start()
            owners = [cluster.node_owning(MLQ(ns, redis_url=cluster.url).keys.prefix).port
                      for ns in namespaces]
            spread = sorted(owners.count(port) for port in set(owners))
            print(f"{shards} shard(s): namespaces per shard {spread}")
            return [one_run(cluster.url, namespaces, jobs) for _ in range(repeats)]
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--namespaces", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per namespace")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    namespaces = [f"bench_{i}" for i in range(options.namespaces)]
    rates = {shards: measure(shards, namespaces, options.jobs, options.repeats)
             for shards in (1, 3)}
    print(f"\n{options.namespaces} namespaces x {options.jobs} jobs, one worker process each, "
          f"{os.cpu_count()} CPU cores")
    for shards, values in rates.items():
        print(f"  {shards} shard(s): median {statistics.median(values):,.0f} jobs/s "
              f"(runs: {', '.join(f'{v:,.0f}' for v in values)})")
    ratio = statistics.median(rates[3]) / statistics.median(rates[1])
    print(f"  3 shards / 1 shard: {ratio:.2f}x")


if __name__ == "__main__":
    main()
