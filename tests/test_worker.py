"""The worker's steps (take, finish, progress), driven one call at a time with a given
clock (no threads)."""

from __future__ import annotations

from typing import Any

from mlq import MLQ
from mlq.reaper import Reaper
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


