"""Dependencies: a job `deferred` until every job it depends on has completed,
queued by the step that completes the last of them, holding no worker meanwhile."""

from __future__ import annotations

from typing import Any

import pytest

from mlq import MLQ, InvalidMessage
from mlq.worker import Worker
from tests.conftest import wait_until


def _steps(q: MLQ, worker: Worker, job_id: str, status: str) -> dict[str, Any]:
    wait_until(lambda: (worker.step(0.05), q.get_job(job_id)["status"])[1] == status, 10,
               f"job {job_id} to be {status}")
    return q.get_job(job_id)


def test_a_fan_out_and_its_fan_in_finish_on_a_single_worker_slot(q: MLQ) -> None:
    """Today's block_until_result pattern would hold the only slot while waiting."""
    def listener(msg: Any, context: dict[str, Any]) -> Any:
        if msg == "merge":
            results = context["dependency_results"]()
            return [sum(results.values()), len(results)]
        return msg * 2

    q.create_listener(listener, concurrency=1)
    ids = q.post_many(range(100), then={"msg": "merge"})
    assert len(ids) == 101
    fan_in = ids[-1]
    assert q.get_job(fan_in)["depends_on"] == ids[:-1]
    record = q.wait(fan_in, 30)
    assert record["status"] == "completed"
    assert record["result"] == [sum(n * 2 for n in range(100)), 100]


def test_a_dependent_waits_deferred_then_runs_after_its_dependencies(q: MLQ) -> None:
    first, second = q.post("a"), q.post("b")
    job_id = q.post("c", depends_on=[first, second])
    assert q.get_job(job_id)["status"] == "deferred"
    assert q.get_progress(job_id) == "[deferred]"
    assert q.stats()["deferred"] == 1 and q.list_jobs("deferred")[0] == 1
    order: list[str] = []
    worker = Worker(q, "w", local_listeners={"l": lambda msg, ctx: order.append(msg)})
    assert worker.step(1) and q.get_job(job_id)["status"] == "deferred"
    _steps(q, worker, job_id, "completed")
    assert order == ["a", "b", "c"]


def test_depending_on_completed_jobs_queues_at_once(q: MLQ) -> None:
    worker = Worker(q, "w", local_listeners={"l": lambda msg, ctx: msg})
    done = q.post("a")
    assert worker.step(1)
    assert q.get_job(q.post("b", depends_on=[done]))["status"] == "queued"


def test_a_failed_dependency_fails_its_dependents_without_running_them(q: MLQ) -> None:
    ran: list[str] = []

    def listener(msg: Any, ctx: Any) -> None:
        ran.append(msg)
        if msg == "bad":
            raise RuntimeError("broken")

    bad = q.post("bad")
    child = q.post("child", depends_on=[bad])
    grandchild = q.post("grandchild", depends_on=[child])
    worker = Worker(q, "w", local_listeners={"l": listener})
    assert worker.step(1)
    for job_id, cause in ((child, bad), (grandchild, child)):
        record = q.get_job(job_id)
        assert (record["status"], record["error_kind"]) == ("failed", "dependency")
        assert record["error"] == f"dependency {cause} failed"
    assert not worker.step(0) and ran == ["bad"]
    # a job posted later on a failed dependency fails at once
    late = q.get_job(q.post("late", depends_on=[bad]))
    assert (late["status"], late["error_kind"]) == ("failed", "dependency")
    # the dead letters hold the job that failed, not those that followed it
    assert [r["id"] for r in q.dead_letters()] == [bad]


def test_a_cancelled_or_expired_dependency_fails_its_dependents(q: MLQ) -> None:
    cancelled = q.post("a", delay=60)
    expiring = q.post("b", expires=30)
    on_cancelled = q.post("c", depends_on=[cancelled])
    on_expired = q.post("d", depends_on=[expiring])
    assert q.cancel(cancelled)
    assert q.get_job(on_cancelled)["error"] == f"dependency {cancelled} cancelled"
    Worker(q, "w", clock=lambda: __import__("time").time() + 60).step(0)
    assert q.get_job(on_expired)["error"] == f"dependency {expiring} expired"


def test_a_delayed_dependent_waits_for_both_its_dependencies_and_its_time(q: MLQ) -> None:
    worker = Worker(q, "w", local_listeners={"l": lambda msg, ctx: msg})
    first = q.post("a")
    job_id = q.post("b", depends_on=[first], delay=60)
    assert worker.step(1)
    assert q.get_job(job_id)["status"] == "scheduled"


@pytest.mark.parametrize("depends_on, message", [
    (["999999"], "no job 999999"),
    (["x1"], "is not a job id"),
    ([str(n) for n in range(10_001)], "at most 10000"),
])
def test_bad_dependencies_are_refused_and_post_nothing(q: MLQ, depends_on: list[str],
                                                       message: str) -> None:
    q.post("exists")
    with pytest.raises(InvalidMessage, match=message):
        q.post("m", depends_on=depends_on)
    assert q.stats()["posted"] == 1


def test_then_is_checked_before_the_fan_out_is_posted(q: MLQ) -> None:
    with pytest.raises(InvalidMessage):
        q.post_many(["a", "b"], then={"msg": "merge", "queue": "bad name!"})
    with pytest.raises(InvalidMessage):
        q.post_many(["a", "b"], then={"msg": "merge", "colour": "red"})
    with pytest.raises(InvalidMessage):
        q.post_many(["a"], then=["not", "a", "dict"])
    assert q.stats()["posted"] == 0
