"""The reaper: one sweep at a time, at a given time, over jobs that workers took and
then left (a dead worker, a job past its timeout)."""

from __future__ import annotations

import threading
import time
from typing import Any

from mlq import MLQ
from mlq.heartbeat import beat
from mlq.reaper import Reaper
from mlq.worker import Worker


def _take(q: MLQ, worker: Worker) -> dict[str, Any]:
    """The one job `worker` takes now (it must find one)."""
    records = worker.take(0)
    assert records and len(records) == 1
    return records[0]



def test_reaper_recovers_a_dead_workers_jobs(q: MLQ) -> None:
    first, second = q.post(1), q.post(2)
    worker = Worker(q, "gone")
    _take(q, worker)
    q.client.sadd(q.keys.workers, "gone")  # it registered, then stopped heartbeating
    # a job moved by the blocking take but never started comes back untouched
    q.client.lmove(q.keys.queue(), q.keys.processing("gone"), "RIGHT", "LEFT")
    report = Reaper(q, job_timeout=3600).reap_once()
    assert report.requeued == [first]
    assert q.get_job(first)["retries"] == 1 and q.get_job(second)["retries"] == 0
    assert q.job_count() == 2
    assert not q.client.sismember(q.keys.workers, "gone")
    # the requeued job goes to the head: it is the next one taken
    assert _take(q, Worker(q, "next"))["id"] == first


def test_reaper_gives_up_after_max_retries(q: MLQ, callback_server: Any) -> None:
    job_id = q.post("m", callback=callback_server.url)
    for attempt in range(1, 4):
        worker = Worker(q, f"w{attempt}", clock=lambda: 0.0)
        _take(q, worker)
        report = Reaper(q, job_timeout=1, max_retries=3).reap_once(now=100.0)
    assert report.failed == [job_id]
    record = q.get_job(job_id)
    assert record["status"] == "failed" and record["error"] == "gave up after 3 attempts"
    assert record["error_kind"] == "lost"
    assert record["progress"] == -1 and [r["id"] for r in q.dead_letters()] == [job_id]
    (hit,) = callback_server.wait_for(1)
    assert hit["query"]["success"] == ["0"]


def test_two_reapers_never_requeue_a_job_twice(q: MLQ, redis_url: str) -> None:
    ids = [q.post(i) for i in range(200)]
    for n in range(20):
        worker = Worker(q, f"dead{n}", clock=lambda: 0.0)
        assert len(worker.take(0, count=10) or []) == 10
        q.client.sadd(q.keys.workers, f"dead{n}")
    reports = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        other = MLQ(q.namespace, redis_url=redis_url)
        barrier.wait()
        reports.append(Reaper(other, job_timeout=1).reap_once(now=100.0))

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    requeued = reports[0].requeued + reports[1].requeued
    assert sorted(requeued, key=int) == ids
    assert all(q.get_job(i)["retries"] == 1 for i in ids)
    assert q.job_count() == 200


def test_reaper_heartbeat_timeout_is_its_own(q: MLQ) -> None:
    job_id = q.post("m")
    _take(q, Worker(q, "quiet"))
    beat(q.client, q.keys, {"quiet": {"pid": 1}}, timeout=60)  # key lives 60 s
    assert Reaper(q, job_timeout=3600).reap_once().requeued == []  # TTL alone: alive
    later = time.time() + 10
    assert Reaper(q, job_timeout=3600, heartbeat_timeout=5).reap_once(now=later).requeued == [job_id]
