"""A worker that runs out of work sends its blocking wait (BLPOP) with the finish
of its last job (worker_link.py). The wait must not hold up work the take
found, a scheduled job due before it ends, or a registry change; and a worker
that stops with its wait out loses nothing."""

from __future__ import annotations

import threading
import time
from typing import Any

from mlq import MLQ
from mlq.worker import Worker
from tests.conftest import wait_until

#: The run loop's blocking wait in these tests: long, so that a wait that should
#: not have blocked shows.
BLOCK = 6.0


class _Running:
    """A worker's run loop in a thread, with the times its jobs started."""

    def __init__(self, q: MLQ, listener: Any = None) -> None:
        self.started: dict[str, float] = {}

        def record(msg: Any, ctx: Any) -> Any:
            self.started[ctx["full_message"]["id"]] = time.time()
            return listener(msg, ctx) if listener else msg

        self.worker = Worker(q, "w1", local_listeners={"echo": record})
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop, BLOCK))

    def __enter__(self) -> _Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(3 * BLOCK)
        assert not self.thread.is_alive()


def test_a_job_due_before_the_wait_ends_starts_on_time(q: MLQ) -> None:
    go = threading.Event()
    with _Running(q, lambda msg, ctx: go.wait(10) and msg) as running:
        first = q.post("first")
        wait_until(lambda: first in running.started, 10, "the first job to start")
        due = q.post("later", delay=1.0)
        # only the finish's take can tell the worker that a job falls due while it waits
        q.client.delete(q.keys.wake("default"))
        go.set()
        record = q.wait(due, 3 * BLOCK)
        assert record["status"] == "completed"
        assert running.started[due] - record["timestamp"] < 1.0 + BLOCK / 3


def test_jobs_the_take_found_run_without_waiting(q: MLQ) -> None:
    go = threading.Event()
    with _Running(q, lambda msg, ctx: go.wait(10) and msg) as running:
        wait_until(lambda: running.worker._idle, 10, "the worker to wait as idle")
        held = q.post("held")  # runs while the others are posted
        wait_until(lambda: held in running.started, 10, "the first job to start")
        queued = [q.post(n) for n in range(3)]
        begun = time.monotonic()
        go.set()
        for job_id in queued:
            assert q.wait(job_id, 3 * BLOCK)["status"] == "completed"
        assert time.monotonic() - begun < BLOCK / 2


def test_a_listener_registered_while_a_job_runs_is_used_after_it(
        q: MLQ, redis_url: str) -> None:
    producer = MLQ(q.namespace, redis_url=redis_url)  # a registry of its own
    go = threading.Event()
    with _Running(q, lambda msg, ctx: go.wait(10) and msg):
        first = q.post("first")
        wait_until(lambda: q.get_job(first)["status"] == "started", 10, "the first to start")
        producer.register_listener(_shout)  # the finish's take finds the registry changed
        go.set()
        assert q.wait(first, 10)["status"] == "completed"
        begun = time.monotonic()
        second = producer.post("second", functions=["_shout"])
        assert q.wait(second, 3 * BLOCK)["result"] == "SECOND"
        assert time.monotonic() - begun < BLOCK / 2
    producer.close()


def _shout(msg: str, *args: Any) -> str:
    return msg.upper()


def test_a_worker_stopped_while_its_wait_is_out_loses_nothing(q: MLQ) -> None:
    with _Running(q) as running:
        # handed over, so that no wake token is left to end the wait at once
        wait_until(lambda: q.client.zcard(q.keys.idle("default")), 10, "the worker to wait idle")
        assert q.wait(q.post("one"), 10)["status"] == "completed"
        wait_until(lambda: running.worker._link.waiting, 10, "the wait sent with the finish")
    assert q.client.zcard(q.keys.idle("default")) == 0  # it left the idle list
    job_id = q.post("after the stop")
    assert q.get_job(job_id)["status"] == "queued" and q.job_count() == 1


def test_a_busy_worker_leaves_the_wake_for_idle_ones(q: MLQ) -> None:
    holds = {"first": threading.Event(), "second": threading.Event()}
    with _Running(q, lambda msg, ctx: holds[msg].wait(10) and msg if msg in holds else msg) \
            as running:
        first = q.post("first")
        wait_until(lambda: first in running.started, 10, "the first job to start")
        second = q.post("second")  # queued: the finish of the first takes it
        q.client.delete(q.keys.wake("default"))
        holds["first"].set()
        wait_until(lambda: second in running.started, 10, "the second job to start")
        third = q.post("third")  # no worker waits idle: it leaves a wake token
        time.sleep(0.2)
        # the worker's wait sent with its finish did not block, so it did not take it
        assert q.client.llen(q.keys.wake("default")) == 1
        holds["second"].set()
        for job_id in (first, second, third):
            assert q.wait(job_id, 10)["status"] == "completed"
