"""Supervised worker processes: recovery on death, time limits, stopping, scale."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlq import MLQ
from mlq.heartbeat import workers
from mlq.reaper import Reaper
from mlq.supervisor import Supervisor
from tests import listeners
from tests.conftest import wait_until


class Running:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.thread = threading.Thread(target=supervisor.run, daemon=True)
        self.thread.start()

    def stop(self, immediate: bool = False, timeout: float = 30) -> None:
        self.supervisor.request_stop(immediate)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "supervisor did not stop"


@pytest.fixture
def supervise(redis_url: str, namespace: str) -> Iterator[Any]:
    started: list[Running] = []

    def start(**options: Any) -> Running:
        options.setdefault("heartbeat_interval", 0.2)
        options.setdefault("heartbeat_timeout", 2.0)
        running = Running(Supervisor(namespace, redis_url, **options))
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop(immediate=True)


def _child_pid(q: MLQ, job_id: str) -> int:
    worker_id = q.get_job(job_id)["worker"]
    return next(w["pid"] for w in workers(q.client, q.keys) if w["id"] == worker_id)


def test_killed_child_job_finishes_on_the_replacement(q: MLQ, supervise: Any) -> None:
    q.register_listener(listeners.sleepy)
    running = supervise(concurrency=1)
    job_id = q.post({"sleep": 1.0})
    wait_until(lambda: q.get_job(job_id)["status"] == "started", 20, "the job to start")
    first_pid = _child_pid(q, job_id)
    os.kill(first_pid, signal.SIGKILL)
    record = q.wait(job_id, timeout=30)
    assert record["status"] == "completed" and record["retries"] == 1
    assert record["last_error"] == "killed by signal 9"
    assert record["result"]["pid"] != first_pid and record["result"]["retries"] == 1
    running.stop()


def test_time_limit_kills_the_child_and_fails_the_job(q: MLQ, supervise: Any,
                                                      callback_server: Any) -> None:
    q.register_listener(listeners.sleepy)
    running = supervise(concurrency=1)
    job_id = q.post({"sleep": 30}, timeout=1, callback=callback_server.url)
    record = q.wait(job_id, timeout=20)
    assert record["status"] == "failed" and record["error"] == "time limit 1 s exceeded"
    assert record["result"] == "time limit 1 s exceeded"
    assert [r["id"] for r in q.dead_letters()] == [job_id]
    assert callback_server.wait_for(1)[0]["query"]["success"] == ["0"]
    # the replacement child takes the next job
    assert q.wait(q.post({"sleep": 0}), timeout=20)["status"] == "completed"
    running.stop()


def test_graceful_stop_finishes_running_jobs(q: MLQ, supervise: Any) -> None:
    q.register_listener(listeners.sleepy)
    running = supervise(concurrency=2)
    busy = [q.post({"sleep": 1.0}) for _ in range(2)]
    waiting = q.post({"sleep": 0})
    wait_until(lambda: all(q.get_job(j)["status"] == "started" for j in busy), 20,
               "both jobs to start")
    running.stop()
    assert [q.get_job(j)["status"] for j in busy] == ["completed", "completed"]
    assert q.get_job(waiting)["status"] == "queued"
    assert workers(q.client, q.keys) == []  # clean stop: no heartbeats left behind


def test_immediate_stop_puts_running_jobs_back(q: MLQ, supervise: Any) -> None:
    q.register_listener(listeners.sleepy)
    running = supervise(concurrency=1)
    job_id = q.post({"sleep": 30})
    wait_until(lambda: q.get_job(job_id)["status"] == "started", 20, "the job to start")
    started = time.monotonic()
    running.stop(immediate=True)
    assert time.monotonic() - started < 5
    record = q.get_job(job_id)
    assert record["status"] == "queued" and record["retries"] == 1
    assert q.job_count() == 1


def test_imported_listeners_and_heartbeats(q: MLQ, supervise: Any) -> None:
    running = supervise(concurrency=2, imports=["tests.listeners:double"])
    assert q.wait(q.post({"my_data": 21}), timeout=30)["result"] == 42
    wait_until(lambda: len([w for w in workers(q.client, q.keys) if w["alive"]]) == 2, 20,
               "two live children")
    for info in workers(q.client, q.keys):
        assert info["kind"] == "process" and info["pid"] != os.getpid()
        assert info["supervisor"] == os.getpid()
    running.stop()


def test_the_heartbeat_reports_the_largest_batch_that_fitted(q: MLQ, supervise: Any) -> None:
    ids = q.post_many(range(32))
    running = supervise(concurrency=1, imports=["tests.listeners:embed_fits_8"])
    assert [q.wait(i, timeout=30)["result"] for i in ids] == [n * 2 for n in range(32)]
    wait_until(lambda: [w.get("batch_fitted") for w in workers(q.client, q.keys)] == [8], 20,
               "the heartbeat to report batches of 8")
    running.stop()


def test_a_bad_import_is_refused_up_front(redis_url: str, namespace: str) -> None:
    with pytest.raises((ImportError, AttributeError, ValueError)):
        Supervisor(namespace, redis_url, imports=["tests.listeners:missing"])
    with pytest.raises(ValueError):
        Supervisor(namespace, redis_url, imports=["no_colon"])


def test_reaper_stops_an_overrunning_job_before_requeueing(q: MLQ, supervise: Any) -> None:
    q.register_listener(listeners.sleepy)
    running = supervise(concurrency=1)
    job_id = q.post({"sleep": 30})
    wait_until(lambda: q.get_job(job_id)["status"] == "started", 20, "the job to start")
    pid = _child_pid(q, job_id)
    # the sweep runs at a time past the job's timeout: no need to sleep until then
    overrun = q.get_job(job_id)["processing_started"] + 1.0
    report = Reaper(q, job_timeout=0.1, max_retries=5).reap_once(now=overrun)
    assert report.requeued in ([job_id], [])  # the supervisor may take it back first
    wait_until(lambda: not _alive(pid), 20, "the overrunning child to be stopped")
    wait_until(lambda: q.get_job(job_id)["status"] == "started", 20, "the job to start")
    assert q.get_job(job_id)["retries"] == 1 and q.get_job(job_id)["attempt"] == 2
    assert q.stats()["requeued"] == 1  # exactly one recovery, whoever did it
    running.stop(immediate=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie until the supervisor joins it still counts as gone
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except (FileNotFoundError, ProcessLookupError):  # reaped meanwhile (ESRCH reading /proc)
        return False


@pytest.mark.slow
def test_2000_jobs_over_4_children_run_once_each(q: MLQ, supervise: Any, tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    q.register_listener(listeners.sleepy)
    ids = [q.post({"log": str(log)}) for _ in range(2000)]
    running = supervise(concurrency=4)
    q.wait(ids[-1], timeout=120)
    wait_until(lambda: q.stats()["completed"] == 2000, 60, "2000 completed jobs")
    running.stop()
    executions = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert set(executions) == set(ids)  # none lost
    assert max(executions.values()) == 1  # none run twice
    assert len({line.split()[1] for line in log.read_text().splitlines()}) == 4
    assert q.dead_letters() == []


def test_a_supervisor_is_driven_one_step_at_a_time(q: MLQ, redis_url: str) -> None:
    """Supervisor.step(now) acts on the time it is given: a 60 s grace period runs
    out at once when the step says so, and the job still running is put back."""
    q.register_listener(listeners.sleepy)
    supervisor = Supervisor(q.namespace, redis_url, grace_period=60, heartbeat_interval=0.2)
    supervisor.start()
    try:
        job_id = q.post({"sleep": 30})
        while q.get_job(job_id)["status"] != "started":
            supervisor.step(block=True)  # the child's messages, until the job runs
        supervisor.request_stop()
        stopped = time.time()
        supervisor.step(now=stopped, block=False)  # the children are told to stop
        supervisor.step(now=stopped + 59, block=False)  # within the grace period
        assert q.get_job(job_id)["status"] == "started" and supervisor.running()
        supervisor.step(now=stopped + 61, block=False)  # the grace period is over
        while supervisor.running():
            supervisor.step(now=stopped + 61)  # kills the child, then reaps it
    finally:
        supervisor.finish()
    record = q.get_job(job_id)
    assert (record["status"], record["retries"]) == ("queued", 1)
    assert time.time() - stopped < 30  # nobody waited out the 60 s, nor the job's 30
