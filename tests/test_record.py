"""The job record (mlq/record.py): every field a step writes is declared there, and a
dead letter's requeue starts the job as clean as a new one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mlq import MLQ
from mlq.defaults import STORED_APART
from mlq.reaper import Reaper
from mlq.record import DECLARED, FRESH_ATTEMPT, PAST_ATTEMPT, RECORD_FIELDS, failed
from mlq.worker import Worker


def _fields_of_every_job(q: MLQ) -> dict[str, set[str]]:
    found = {}
    for key in q.client.scan_iter(match=q.keys.job_prefix.replace("{", "\\{")
                                  .replace("}", "\\}") + "*"):
        found[key.decode()] = {name.decode() for name in q.client.hkeys(key)}
    return found


def _steps(q: MLQ) -> list[tuple[str, Callable[[], Any]]]:
    """Every step that writes records, in an order where each has something to act on."""
    clock = [1000.0]
    listeners: dict[str, Any] = {}
    worker = Worker(q, "w1", clock=lambda: clock[0], local_listeners=listeners)
    other = Worker(q, "w2", clock=lambda: clock[0])
    reaper = Reaper(q, job_timeout=10, max_retries=2)

    def listener(msg: Any, *args: Any) -> Any:
        if msg == "big":
            return b"x" * STORED_APART
        return 1 / 0 if msg == "boom" else msg

    def run_all() -> None:
        listeners["f"] = listener
        while worker.step():
            pass

    def cancel_running() -> None:
        job_id = q.post("to cancel")
        other.take(0)
        q.cancel(job_id)
        clock[0] += 100
        reaper.reap_once(now=clock[0])  # stopped: failed as cancelled

    def time_out_twice() -> None:
        q.post("slow")
        for _ in range(2):
            other.take(0, count=32)
            clock[0] += 100
            reaper.reap_once(now=clock[0])  # requeued, then given up: dead letters
        assert q.stats()["dead"] > 0

    def progress() -> None:
        q.post("p")
        record = worker.take(0)[0]  # type: ignore[index]
        assert worker.update_progress(record["id"], record["attempt"], 50)

    def fail_from_outside() -> None:
        q.post("limited")
        record = other.take(0)[0]  # type: ignore[index]
        assert q.fail_job(record["id"], "w2", record["attempt"], "time limit")

    return [
        ("post", lambda: q.post({"a": 1}, owner="ann", priority=3, functions=["f"])),
        ("post_many", lambda: q.post_many(["big", "boom"], functions=["f"])),
        ("submit", lambda: (q.submit(divmod, 7, 2), q.submit(divmod, 7, 0))),
        ("take, complete, fail", run_all),
        ("progress", progress),
        ("cancel a queued job", lambda: q.cancel(q.post("queued"))),
        ("cancel a running job, then recover it", cancel_running),
        ("requeue, then give up", time_out_twice),
        ("fail from outside (time limit)", fail_from_outside),
        ("requeue a dead letter", lambda: q.requeue_dead()),
    ]


def test_every_field_a_step_writes_is_declared(q: MLQ) -> None:
    q.max_result_size = 2 * STORED_APART  # a result big enough to be kept apart
    seen: set[str] = set()
    for name, step in _steps(q):
        step()
        for key, fields in _fields_of_every_job(q).items():
            assert fields <= DECLARED, f"after {name}: {key} has {sorted(fields - DECLARED)}"
            seen |= fields
    # the scenario reached the fields only some outcomes write
    assert {"finished_by", "stored_result", "call", "exception", "error_kind"} <= seen


def test_the_public_record_lists_every_public_field(q: MLQ) -> None:
    record = q.get_job(q.post("m"))
    assert list(record)[:len(RECORD_FIELDS)] == list(RECORD_FIELDS)
    assert not set(record) & (set(PAST_ATTEMPT) - set(RECORD_FIELDS))


def test_a_requeued_dead_letter_starts_as_clean_as_a_new_record(q: MLQ) -> None:
    """A failed job requeued from the dead letters must forget its past attempt
    (who finished it, a retry's schedule), or the next worker's death would not
    put it back."""
    job_id = q.post("m")
    first = Worker(q, "w1", clock=lambda: 100.0)
    first.take(0)
    assert q.scripts.finish(job_id, "w1", 1, "failed", 101.0, failed("boom")) == 1
    assert q.requeue_dead(job_id) == 1
    raw = {k.decode() for k in q.client.hkeys(q.keys.job(job_id))}
    assert not raw & set(PAST_ATTEMPT)
    record = q.get_job(job_id)
    assert {k: record[k] for k in FRESH_ATTEMPT} == FRESH_ATTEMPT

    # its next worker dies: the job goes back to its queue, not to 'cancelled'
    Worker(q, "w2", clock=lambda: 200.0).take(0)
    Reaper(q, job_timeout=10, max_retries=5).reap_once(now=300.0)
    record = q.get_job(job_id)
    assert (record["status"], record["retries"], record["error_kind"]) == ("queued", 1, None)


@pytest.mark.parametrize("name", sorted(FRESH_ATTEMPT))
def test_a_new_record_holds_each_fresh_field(q: MLQ, name: str) -> None:
    assert q.get_job(q.post("m"))[name] == FRESH_ATTEMPT[name]
