"""Each atomic step, driven one call at a time with a given clock (no threads)."""

from __future__ import annotations

import threading
import time
from typing import Any

from mlq import MLQ
from mlq.reaper import Reaper
from mlq.record import new_fields
from mlq.worker import Worker


def _take(q: MLQ, worker: Worker) -> dict[str, Any]:
    records = worker.take(0)
    assert records and len(records) == 1
    return records[0]


def test_take_moves_into_processing_and_finish_is_fenced(q: MLQ) -> None:
    job_id = q.post("m")
    worker = Worker(q, "w1", clock=lambda: 1000.0)
    record = _take(q, worker)
    assert record["status"] == "started" and record["attempt"] == 1
    assert q.client.lrange(q.keys.processing("w1"), 0, -1) == [job_id.encode()]
    assert q.client.zscore(q.keys.running, job_id) == 1000.0
    assert q.job_count() == 0
    # a finish from another worker id or attempt changes nothing
    assert q.scripts.finish(job_id, "w2", 1, "completed", 1001.0, []) == 0
    assert q.scripts.finish(job_id, "w1", 2, "completed", 1001.0, []) == 0
    assert q.get_job(job_id)["status"] == "started"
    assert q.scripts.finish(job_id, "w1", 1, "completed", 1001.0, []) == 1
    assert q.get_job(job_id)["status"] == "completed"
    assert q.client.llen(q.keys.processing("w1")) == 0 and q.client.zcard(q.keys.running) == 0
    # the same finish sent again (its reply lost) reports success and changes nothing
    assert q.scripts.finish(job_id, "w1", 1, "failed", 1002.0, []) == 1
    assert q.get_job(job_id)["status"] == "completed" and q.stats()["completed"] == 1
    assert q.scripts.finish(job_id, "w2", 1, "completed", 1001.0, []) == 0


def test_progress_is_fenced(q: MLQ) -> None:
    job_id = q.post("m")
    worker = Worker(q, "w1")
    _take(q, worker)
    assert worker.update_progress(job_id, 1, 40) is True
    assert q.get_progress(job_id) == "40"
    assert worker.update_progress(job_id, 2, 90) is False
    assert Worker(q, "w2").update_progress(job_id, 1, 90) is False
    assert q.get_progress(job_id) == "40"


def test_stale_attempt_after_requeue_overwrites_nothing(q: MLQ, callback_server: Any) -> None:
    job_id = q.post("m", callback=callback_server.url)
    slow = Worker(q, "slow", clock=lambda: 100.0)
    record = _take(q, slow)
    reaper = Reaper(q, job_timeout=10, max_retries=5)
    report = reaper.reap_once(now=200.0)
    assert report.requeued == [job_id]
    requeued = q.get_job(job_id)
    assert requeued["status"] == "queued" and requeued["retries"] == 1
    assert requeued["worker"] is None and requeued["progress"] is None
    fresh = Worker(q, "fresh")
    again = _take(q, fresh)
    assert again["attempt"] == 2
    # the old attempt finishes late: fenced off, and no callback for it
    slow.finish(record, "completed", [], "late", 100.0)
    assert q.get_job(job_id)["status"] == "started"
    fresh.finish(again, "completed", [], "fresh", 201.0)
    assert q.get_job(job_id)["status"] == "completed"
    hits = callback_server.wait_for(1)
    assert len(hits) == 1 and hits[0]["query"]["short_result"] == ["fresh"]


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


def test_clear_all_while_queued_leaves_nothing_to_run(q: MLQ) -> None:
    q.post("m")
    q.clear_all()
    assert Worker(q, "w").take(0) is None


def test_a_take_whose_reply_was_lost_is_handed_over_again(q: MLQ) -> None:
    job_id = q.post("m")
    worker = Worker(q, "w1")
    first = worker.take(0)
    assert first and first[0]["id"] == job_id
    # the reply never arrived; the worker takes again
    again = worker.take(0)
    assert again and again[0]["id"] == job_id and again[0]["attempt"] == 1
    assert q.client.lrange(q.keys.processing("w1"), 0, -1) == [job_id.encode()]


def test_a_post_sent_twice_makes_one_job(q: MLQ) -> None:
    fields = new_fields("m", None, None, None, "default", max_message_size=q.max_message_size)
    first = q.scripts.post("default", fields, token="fixed-token")
    assert q.scripts.post("default", fields, token="fixed-token") == first
    assert q.job_count() == 1  # one job, whatever the retries


def test_reaper_heartbeat_timeout_is_its_own(q: MLQ) -> None:
    from mlq.heartbeat import beat
    job_id = q.post("m")
    _take(q, Worker(q, "quiet"))
    beat(q.client, q.keys, {"quiet": {"pid": 1}}, timeout=60)  # key lives 60 s
    assert Reaper(q, job_timeout=3600).reap_once().requeued == []  # TTL alone: alive
    later = time.time() + 10
    assert Reaper(q, job_timeout=3600, heartbeat_timeout=5).reap_once(now=later).requeued == [job_id]
