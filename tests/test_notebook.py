"""The notebook API: submit a function itself, wait, map, cancel."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from typing import Any

import pytest

from mlq import MLQ
from mlq.supervisor import Supervisor
from tests import listeners
from tests.conftest import wait_until



def test_submit_runs_the_function_itself(q: MLQ) -> None:
    q.create_listener()  # a worker with no listeners of its own
    offset = Fraction(1, 3)

    def add(x: int, y: int = 0) -> Fraction:  # defined here: travels by value
        return x + y + offset

    job = q.submit(add, 2, y=3)
    assert job.result(timeout=10) == Fraction(16, 3)
    assert job.status == "completed" and job.progress == 100
    assert q.map(lambda n: n * n, range(10), timeout=20) == [n * n for n in range(10)]


def test_remote_exception_is_raised_again(q: MLQ) -> None:
    q.create_listener()

    def explode(value: int) -> None:
        raise ValueError(f"bad value {value}")

    job = q.submit(explode, 7)
    with pytest.raises(ValueError, match="bad value 7") as info:
        job.result(timeout=10)
    assert any("Traceback" in note for note in getattr(info.value, "__notes__", []))
    assert job.status == "failed"


def test_wait_with_a_progress_bar(q: MLQ, capsys: pytest.CaptureFixture[str]) -> None:
    def steps(msg: Any, *args: Any) -> str:
        for value in (25, 50, 75):
            args[0]["update_progress"](value)
        return "done"

    q.create_listener(steps)
    job = q.job(q.post("x"))
    record = job.wait(timeout=10, progress=True)
    assert record["status"] == "completed"
    assert f"job {job.id}" in capsys.readouterr().err


def test_cancel_a_queued_job(q: MLQ) -> None:
    job = q.submit(sum, [1, 2])
    assert job.cancel() is True
    assert job.status == "cancelled" and q.get_job(job.id)["error"] == "cancelled"
    ran: list[int] = []

    def record_run(msg: Any, *args: Any) -> None:
        ran.append(1)

    q.create_listener(record_run)
    assert q.wait(q.post("after"), 10)["status"] == "completed"
    assert ran == [1]  # only the later job ran
    assert job.cancel() is False


def test_cancel_a_running_job_stops_it(q: MLQ, redis_url: str) -> None:
    supervisor = Supervisor(q.namespace, redis_url, concurrency=1, heartbeat_interval=0.2,
                            cancel_grace=1.0)
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    try:
        job = q.submit(listeners.slow_call, 30)
        wait_until(lambda: job.status == "started", 20, "the job to start")
        started = time.monotonic()
        assert job.cancel() is True
        record = job.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert record["status"] == "cancelled" and record["error"] == "cancelled"
        assert q.submit(listeners.slow_call, 0).result(timeout=20) == "finished"
    finally:
        supervisor.request_stop(immediate=True)
        thread.join(30)


def test_unsigned_code_is_refused_by_a_worker_with_a_secret(redis_url: str, namespace: str) -> None:
    worker = MLQ(namespace, redis_url=redis_url, secret="s3cret")
    stranger = MLQ(namespace, redis_url=redis_url)
    try:
        worker.create_listener()
        job = stranger.submit(print, "never printed")
        record = job.wait(timeout=10)
        assert record["status"] == "failed" and record["error"].startswith("job code is not signed")
        signed = MLQ(namespace, redis_url=redis_url, secret="s3cret").submit(len, "abc")
        assert signed.result(timeout=10) == 3
    finally:
        worker.shutdown(10)
        worker.clear_all()


def test_submitted_functions_report_progress(q: MLQ) -> None:
    def halfway() -> str:
        from mlq import report_progress
        report_progress(50)
        return "done"

    job = q.submit(halfway)
    events = q.watch(job.id)
    seen = [next(events)["progress"]]  # subscribed before any worker runs it
    q.create_listener()
    seen += [e["progress"] for e in events if e]
    assert 50 in seen and job.result(10) == "done"
    from mlq import report_progress
    assert report_progress(10) is False  # outside a job: harmless
