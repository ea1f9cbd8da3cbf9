"""Delayed jobs (delay / at) wait as `scheduled` until due; jobs with a deadline
(expires) that no worker started in time end `expired` and never run."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mlq import MLQ, InvalidMessage
from mlq.worker import Worker
from tests.conftest import wait_until


def _recorder() -> tuple[list[Any], Any]:
    ran: list[Any] = []

    def listener(msg: Any, *args: Any) -> Any:
        ran.append(msg)
        return msg

    return ran, listener


def test_a_delayed_job_is_scheduled_until_due_then_runs(q: MLQ) -> None:
    ran, listener = _recorder()
    posted = time.time()
    job_id = q.post("later", delay=0.5)
    record = q.get_job(job_id)
    assert record["status"] == "scheduled" and q.get_progress(job_id) == "[scheduled]"
    assert posted + 0.5 <= record["next_attempt_at"] <= time.time() + 0.5
    assert q.list_jobs("scheduled")[0] == 1 and q.stats()["scheduled"] == 1
    q.create_listener(listener)  # an idle worker must wake for it on its own
    record = q.wait(job_id, 10)
    assert record["status"] == "completed" and ran == ["later"]
    assert record["processing_started"] >= posted + 0.5


@pytest.mark.parametrize("at", [
    lambda now: now + 0.3,
    lambda now: datetime.fromtimestamp(now + 0.3, timezone.utc),
    lambda now: datetime.fromtimestamp(now + 0.3, timezone.utc).isoformat().replace("+00:00", "Z"),
])
def test_at_takes_epoch_seconds_a_datetime_or_iso_text(q: MLQ, at: Any) -> None:
    now = time.time()
    job_id = q.post("m", at=at(now))
    assert q.get_job(job_id)["next_attempt_at"] == pytest.approx(now + 0.3, abs=1e-3)
    worker = Worker(q, "w", local_listeners={"l": _recorder()[1]})
    assert not worker.step(0)  # not due
    wait_until(lambda: (worker.step(0.1), q.get_job(job_id)["status"])[1] == "completed",
               10, "the job to run once due")


def test_an_at_in_the_past_queues_the_job_at_once(q: MLQ) -> None:
    job_id = q.post("m", at=datetime.now(timezone.utc) - timedelta(hours=1))
    assert q.get_job(job_id)["status"] == "queued"


def test_many_jobs_due_at_the_same_moment_all_run(q: MLQ) -> None:
    ran, listener = _recorder()
    due = time.time() + 1.5  # after the last of the six posts, on a slow machine too
    ids = q.post_many(range(3000), at=due)
    assert q.stats()["scheduled"] == 3000
    worker = Worker(q, "w", local_listeners={"l": listener})
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 1.0))
    thread.start()
    try:
        wait_until(lambda: len(ran) == 3000, 30, "all 3000 due jobs to run")
    finally:
        stop.set()
        thread.join(10)
    starts = [q.get_job(i)["processing_started"] for i in ids[::100]]
    assert min(starts) >= due
    assert sorted(ran) == list(range(3000))


@pytest.mark.parametrize("options", [
    {"delay": -1}, {"delay": "soon"}, {"delay": float("nan")}, {"delay": True},
    {"at": "next tuesday"}, {"at": "2026-13-45T00:00:00Z"}, {"at": -5},
    {"delay": 1, "at": time.time()}, {"expires": 0}, {"expires": -3},
])
def test_bad_times_are_refused_and_post_nothing(q: MLQ, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage):
        q.post("m", **options)
    with pytest.raises(InvalidMessage):
        q.post_many(["a", "b"], **options)
    assert q.stats()["posted"] == 0


def test_a_job_not_started_by_its_deadline_expires_and_never_runs(q: MLQ) -> None:
    ran, listener = _recorder()
    job_id = q.post("stale", expires=0.2)
    fresh = q.post("fresh", expires=60)
    time.sleep(0.3)  # no worker: the deadline passes while it waits
    worker = Worker(q, "w", local_listeners={"l": listener})
    assert worker.step(1)
    record = q.get_job(job_id)
    assert (record["status"], record["error_kind"]) == ("expired", "expired")
    assert q.get_progress(job_id) == "[expired]"
    assert ran == ["fresh"] and q.get_job(fresh)["status"] == "completed"
    stats = q.stats()
    assert (stats["expired"], stats["failed"], stats["dead"]) == (1, 0, 0)
    assert [r["id"] for r in q.list_jobs("expired")[1]] == [job_id]
    assert q.job_count() == 0 and q.wait(job_id, 1)["status"] == "expired"


def test_a_worker_that_takes_a_job_past_its_deadline_expires_it(q: MLQ) -> None:
    ran, listener = _recorder()
    job_id = q.post("m", expires=30)
    late = Worker(q, "w", local_listeners={"l": listener}, clock=lambda: time.time() + 60)
    assert not late.step(0)
    assert q.get_job(job_id)["status"] == "expired" and ran == []


def test_a_scheduled_job_past_its_deadline_expires_unrun(q: MLQ) -> None:
    job_id = q.post("m", delay=120, expires=60)
    Worker(q, "w", clock=lambda: time.time() + 90).step(0)
    record = q.get_job(job_id)
    assert record["status"] == "expired" and q.stats()["scheduled"] == 0


def test_a_dead_letter_requeued_after_its_deadline_runs(q: MLQ) -> None:
    """The deadline is for the first start: a failed job a user requeues later runs."""
    outcomes = iter([RuntimeError("first attempt fails"), "second works"])

    def listener(msg: Any, *args: Any) -> Any:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    job_id = q.post("m", expires=30)
    assert Worker(q, "w", local_listeners={"l": listener}).step(1)
    assert q.get_job(job_id)["status"] == "failed"
    assert q.requeue_dead(job_id) == 1
    later = Worker(q, "w2", local_listeners={"l": listener}, clock=lambda: time.time() + 60)
    assert later.step(0) and q.get_job(job_id)["result"] == "second works"


@pytest.mark.parametrize("options", [{"delay": 1e16}, {"at": 4e11}, {"expires": 1e12},
                                     {"at": "9999-12-31T00:00:00Z"}])
def test_times_beyond_ten_years_are_refused(q: MLQ, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage, match="ten years"):
        q.post("m", **options)
    assert q.stats()["posted"] == 0
