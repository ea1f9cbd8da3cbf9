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
import collections
import itertools
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # mlq from this checkout

from redis.crc import key_slot

from mlq import MLQ
from mlq.keys import Keys
from benchmarks.harness.report import replace_section
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


SECTION = """## Redis Cluster: 3 shards against 1

`python benchmarks/cluster.py`: six namespaces on a Redis Cluster in cluster mode
(`redis+cluster://`), each drained by one worker process; the same jobs on a
cluster of one master and of three. The names are picked so that each of the
three shards holds two namespaces.

{figures}

Shards add Redis CPU, not worker CPU. Here the six workers and every shard share
two cores, so a second and third shard have no core of their own to run on and
cannot raise the rate. Where Redis is the bottleneck (many workers on other
hosts, a Redis host with cores to spare), namespaces on different shards no
longer compete for one Redis thread. A namespace is as fast as the one shard it lives on: sharding
spreads many namespaces, it does not speed up one.
"""


def evenly_spread(count: int, shards: int) -> list[str]:
    """`count` namespace names whose slots fall evenly into `shards` equal slot
    ranges (how `valkey-cli --cluster create` deals them out), so that every
    shard has the same share of the work."""
    names: list[str] = []
    per_shard = collections.Counter[int]()
    for i in itertools.count():
        name = f"bench_{i}"
        shard = key_slot(Keys(name).prefix.encode()) * shards // 16384
        if per_shard[shard] < -(-count // shards):
            per_shard[shard] += 1
            names.append(name)
        if len(names) == count:
            return names
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--namespaces", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per namespace")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--docs", default=str(Path(__file__).resolve().parents[1] / "docs"),
                        help="folder of the benchmarks.md to update ('' for none)")
    options = parser.parse_args()
    namespaces = evenly_spread(options.namespaces, 3)
    rates = {shards: measure(shards, namespaces, options.jobs, options.repeats)
             for shards in (1, 3)}
    lines = [f"{options.namespaces} namespaces x {options.jobs:,} jobs, one worker process "
             f"each, {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}:", ""]
    for shards, values in rates.items():
        lines.append(f"- {shards} shard(s): median {statistics.median(values):,.0f} jobs/s "
                     f"(runs: {', '.join(f'{v:,.0f}' for v in values)})")
    ratio = statistics.median(rates[3]) / statistics.median(rates[1])
    lines.append(f"- 3 shards / 1 shard: {ratio:.2f}x")
    print("\n" + "\n".join(lines))
    if options.docs:
        page = Path(options.docs) / "benchmarks.md"
        page.write_text(replace_section(page.read_text(), "cluster", SECTION.format(
            figures="\n".join(lines))))
        print(f"written to {page}")


if __name__ == "__main__":
    main()
