"""Retries after an exception: scheduled again with full-jitter backoff, until the
job's `retries` are used up (docs/lifecycle.md)."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

import mlq
from mlq import MLQ, InvalidMessage
from mlq.dispatch import dispatcher
from mlq.lifecycle import retry_delay
from mlq.worker import Worker
from tests.conftest import CallbackRecorder, wait_until


def _flaky(failures: int, exc: type[Exception] = ConnectionError) -> Any:
    """A listener whose first `failures` attempts raise `exc`."""
    calls: list[int] = []

    def listener(msg: Any, context: dict[str, Any]) -> str:
        calls.append(context["full_message"]["attempt"])
        if len(calls) <= failures:
            raise exc(f"transient failure {len(calls)}")
        return "done"

    listener.calls = calls  # type: ignore[attr-defined]
    return listener


def _drain(q: MLQ, worker: Worker, job_id: str, timeout: float = 10) -> dict[str, Any]:
    """Step `worker` until the job has ended."""
    wait_until(lambda: worker.step(0.05) is not None and q.get_job(job_id)["status"] in
               ("completed", "failed"), timeout, f"job {job_id} to end")
    return q.get_job(job_id)


def test_a_job_with_retries_runs_again_after_an_exception_and_completes(q: MLQ) -> None:
    listener = _flaky(2)
    worker = Worker(q, "w", local_listeners={"flaky": listener})
    job_id = q.post("m", retries=2, backoff=0.01)
    assert worker.step(1)
    waiting = q.get_job(job_id)
    # between attempts the record says it waits, and why
    assert waiting["status"] == "scheduled" and waiting["attempt"] == 1
    assert "ConnectionError: transient failure 1" in waiting["last_error"]
    assert waiting["next_attempt_at"] is not None and waiting["worker"] is None
    assert q.get_progress(job_id) == "[scheduled]"
    record = _drain(q, worker, job_id)
    assert (record["status"], record["result"], record["attempt"]) == ("completed", "done", 3)
    assert listener.calls == [1, 2, 3]
    assert q.dead_letters() == [] and q.stats()["retried"] == 2


def test_past_its_retries_a_job_fails_into_the_dead_letters(q: MLQ) -> None:
    worker = Worker(q, "w", local_listeners={"flaky": _flaky(10)})
    job_id = q.post("m", retries=1, backoff=0)
    record = _drain(q, worker, job_id)
    assert record["status"] == "failed" and record["attempt"] == 2
    assert "transient failure 2" in record["error"]
    assert [r["id"] for r in q.dead_letters()] == [job_id]


def test_without_retries_an_exception_fails_the_job_at_once(q: MLQ) -> None:
    worker = Worker(q, "w", local_listeners={"flaky": _flaky(1)})
    job_id = q.post("m")
    assert worker.step(1)
    assert q.get_job(job_id)["status"] == "failed"


def test_retry_on_retries_only_the_named_exceptions_and_their_subclasses(q: MLQ) -> None:
    worker = Worker(q, "w", local_listeners={"flaky": _flaky(1, ValueError)})
    job_id = q.post("m", retries=3, backoff=0, retry_on=["KeyError", "TimeoutError"])
    assert worker.step(1)
    assert q.get_job(job_id)["status"] == "failed"  # a ValueError is not retried

    # ConnectionRefusedError is an OSError: named by its base class, it is retried
    worker = Worker(q, "w2", local_listeners={"flaky": _flaky(1, ConnectionRefusedError)})
    job_id = q.post("m", retries=3, backoff=0, retry_on=["builtins.OSError"])
    assert _drain(q, worker, job_id)["status"] == "completed"


def test_a_listener_may_ask_for_a_retry_after_a_delay_of_its_choosing(q: MLQ) -> None:
    def listener(msg: Any, context: dict[str, Any]) -> str:
        if context["full_message"]["attempt"] == 1:
            raise mlq.Retry(delay=30)
        return "second"

    worker = Worker(q, "w", local_listeners={"l": listener})
    job_id = q.post("m", retries=1)
    before = time.time()
    assert worker.step(1)
    record = q.get_job(job_id)
    assert record["status"] == "scheduled"
    assert before + 30 <= record["next_attempt_at"] <= time.time() + 30
    # not due yet: a worker takes nothing; once due (a later clock), it runs
    assert not worker.step(0)
    later = Worker(q, "w2", local_listeners={"l": listener}, clock=lambda: time.time() + 31)
    assert later.step(0) and q.get_job(job_id)["result"] == "second"


def test_the_backoff_is_full_jitter_capped_by_backoff_max() -> None:
    rng = random.Random(7)
    record = {"id": "1", "retry": {"retries": 10, "backoff": 2.0, "backoff_max": 20.0,
                                   "retry_on": None}, "retries": 0}
    for done in range(6):
        record["attempt"] = done + 1  # `done` retries taken before this attempt
        delays = [retry_delay(record, ValueError(), rng) for _ in range(400)]
        ceiling = min(20.0, 2.0 * 2 ** done)
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.9 * ceiling and min(delays) < 0.1 * ceiling
    record["attempt"] = 11
    assert retry_delay(record, ValueError(), rng) is None  # all 10 retries used


def test_a_retry_sends_no_callback_and_the_final_outcome_sends_one(
        q: MLQ, callback_server: CallbackRecorder) -> None:
    worker = Worker(q, "w", local_listeners={"flaky": _flaky(2)})
    job_id = q.post("m", callback=callback_server.url, retries=2, backoff=0)
    _drain(q, worker, job_id)
    requests = callback_server.wait_for(1)
    time.sleep(0.2)  # a stray callback for a retry would arrive by now
    assert len(callback_server.requests) == 1
    assert requests[0]["query"]["success"] == ["1"]


@pytest.mark.parametrize("options", [
    {"retries": 101}, {"retries": -1}, {"retries": 1.5}, {"retries": True},
    {"retries": 2, "backoff": -1}, {"retries": 2, "backoff": "1"},
    {"retries": 2, "backoff_max": float("inf")}, {"retries": 2, "retry_on": [3]},
])
def test_bad_retry_options_are_refused_and_post_nothing(q: MLQ, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage):
        q.post("m", **options)
    assert q.stats()["posted"] == 0


def test_a_batch_item_that_raised_is_retried_on_its_own(q: MLQ) -> None:
    attempts: dict[str, int] = {}

    @mlq.listener(batch_size=4)
    def embed(msgs: list[Any], context: dict[str, Any]) -> list[Any]:
        outcomes: list[Any] = []
        for msg, record in zip(msgs, context["full_messages"]):
            attempts[msg] = record["attempt"]
            flaky = msg == "flaky" and record["attempt"] == 1
            outcomes.append(ConnectionError("GPU busy") if flaky else msg.upper())
        return outcomes

    ids = q.post_many(["a", "flaky", "b"], retries=1, backoff=0)
    q.create_listener(embed)
    records = [q.wait(job_id, 10) for job_id in ids]
    assert [r["result"] for r in records] == ["A", "FLAKY", "B"]
    assert attempts == {"a": 1, "flaky": 2, "b": 1}


def test_waiting_for_a_cancelled_job_raises(q: MLQ) -> None:
    job = q.submit(sorted, [2, 1])
    assert job.cancel()
    with pytest.raises(mlq.RemoteError, match="cancelled"):
        job.result(5)
    with pytest.raises(mlq.JobFailed, match="cancelled"):
        q.block_until_result(job.id, 5)


def test_a_waiter_sees_the_retry_as_a_step_and_gets_the_final_record(q: MLQ) -> None:
    worker = Worker(q, "w", local_listeners={"flaky": _flaky(1)})
    job_id = q.post("m", retries=1, backoff=0)
    statuses: list[Any] = []
    waited: list[dict[str, Any]] = []
    watcher = threading.Thread(target=lambda: statuses.extend(
        e["status"] for e in q.watch(job_id, keepalive=0.2) if e is not None))
    waiter = threading.Thread(target=lambda: waited.append(q.wait(job_id, 10)))
    waiter.start()
    watcher.start()
    wait_until(lambda: dispatcher(q.client, q.keys).listeners() >= 2, 10,
               "the waiter and the watcher to listen")
    _drain(q, worker, job_id)
    waiter.join(10)
    watcher.join(10)
    assert waited[0]["status"] == "completed" and waited[0]["attempt"] == 2
    assert statuses[-1] == "completed"
    assert "scheduled" in statuses and set(statuses) <= {"queued", "started", "scheduled",
                                                         "completed"}
