"""Two reapers at once on the same stalled jobs: each job is requeued exactly once.

Stalled jobs are made the way a dead machine leaves them: taken (started, in
a worker's processing list) by worker ids whose heartbeats are gone; and, for
the time-limit sweep, taken by a live worker long before `job_timeout`.
Pass: every job `queued` with `retries == 1`, in its queue exactly once, and
the `requeued` counter equal to the number of jobs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from mlq import MLQ
from mlq.embedded import EmbeddedServer
from mlq.heartbeat import beat
from mlq.reaper import Reaper, ReapReport
from mlq.record import record_from_hash
from tests.faults.conftest import Commands, wait_until

GHOSTS = ("ghost-1", "ghost-2", "ghost-3")


def _stall(q: MLQ, count: int, worker_ids: tuple[str, ...]) -> list[str]:
    """Post `count` jobs and have them taken, round robin, by `worker_ids`."""
    ids = q.post_many([{"n": n} for n in range(count)])
    for n in range(count):
        assert q.scripts.take("default", worker_ids[n % len(worker_ids)], time.time(),
                              strays=False)
    q.client.sadd(q.keys.workers, *worker_ids)
    return ids


def _check_requeued_once(q: MLQ, ids: list[str], requeued_before: int = 0) -> None:
    pipe = q.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(q.keys.job(job_id))
    records = [record_from_hash(raw) for raw in pipe.execute()]
    wrong = {r["id"]: (r["status"], r["retries"]) for r in records
             if (r["status"], r["retries"]) != ("queued", 1)}
    assert not wrong, f"not requeued exactly once: {wrong}"
    in_queue = Counter(i.decode() for i in q.client.lrange(q.keys.queue(), 0, -1))
    assert in_queue == Counter(ids), "a job is missing from its queue, or there twice"
    assert q.stats()["requeued"] - requeued_before == len(ids)
    assert q.client.zcard(q.keys.running) == 0


@pytest.mark.timeout(60)
def test_two_reapers_in_threads_requeue_each_job_once(own_redis: EmbeddedServer) -> None:
    """Both sweeps (dead workers, and jobs past job_timeout on a live worker) race,
    started together by a barrier, each reaper on its own connection; 5 rounds."""
    q = MLQ("reapers", redis_url=own_redis.url)
    reapers = [Reaper(MLQ("reapers", redis_url=own_redis.url), job_timeout=300)
               for _ in range(2)]
    total = 0
    for _ in range(5):
        requeued_before = q.stats()["requeued"]
        dead = _stall(q, 150, GHOSTS)
        # a live worker whose jobs started "long ago": the time-limit sweep's case
        slow = _stall(q, 50, ("slow-1",))
        beat(q.client, q.keys, {"slow-1": {"pid": 0}}, timeout=60)
        barrier = threading.Barrier(2)
        reports: list[ReapReport] = []

        def sweep(reaper: Reaper, barrier: threading.Barrier, reports: list[ReapReport]) -> None:
            barrier.wait()
            reports.append(reaper.reap_once(now=time.time() + 1000))

        threads = [threading.Thread(target=sweep, args=(r, barrier, reports)) for r in reapers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(reports) == 2
        ids = dead + slow
        _check_requeued_once(q, ids, requeued_before)
        claimed = Counter(i for report in reports for i in report.requeued)
        assert claimed == Counter(ids), "each job is reported by exactly one reaper"
        total += len(ids)
        q.client.delete(q.keys.queue(), q.keys.heartbeat("slow-1"))  # next round starts clean
    split = [len(r.requeued) for r in reports]
    print(f"\ntwo reapers (threads): {total} stalled jobs over 5 rounds, each requeued "
          f"exactly once (last round split {split[0]}/{split[1]} between the reapers)")


@pytest.mark.timeout(60)
def test_two_reaper_commands_requeue_each_job_once(own_redis: EmbeddedServer,
                                                    commands: Commands) -> None:
    """Two `controller reaper` processes sweeping every 0.1 s over the same dead workers."""
    url = own_redis.url
    q = MLQ("reapers", redis_url=url)
    ids = _stall(q, 300, GHOSTS)
    reapers = [commands.start(f"reaper-{n}", "reaper", "--redis_url", url, "--namespace",
                              "reapers", "--reaper_interval", "0.1") for n in (1, 2)]
    wait_until(lambda: q.stats()["requeued"] >= len(ids), 30,
               f"the jobs to be requeued\n{reapers[0].output()}\n{reapers[1].output()}")
    time.sleep(1.0)  # ten more sweeps each: nothing more may happen
    _check_requeued_once(q, ids)
    assert q.client.smembers(q.keys.workers) == set(), "the dead workers are forgotten"
    logs = [r.log_path.read_text().count("requeued:") for r in reapers]
    assert sum(logs) == len(ids), logs
    for reaper in reapers:
        assert reaper.terminate() == 0, reaper.output()
    print(f"\ntwo reapers (commands): {len(ids)} stalled jobs, each requeued exactly once "
          f"(split {logs[0]}/{logs[1]})")
