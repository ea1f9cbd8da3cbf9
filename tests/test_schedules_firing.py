"""Periodic jobs fired by the workers themselves: no scheduler process, one job
per slot however many workers run (schedules.py, fired from reaper.Sweep)."""

from __future__ import annotations

import time
from typing import Any

from mlq import MLQ
from tests.conftest import wait_until


def test_three_consumers_post_one_job_per_slot(q: MLQ, redis_url: str) -> None:
    ran: list[float] = []
    consumers = [MLQ(q.namespace, redis_url=redis_url) for _ in range(3)]
    try:
        for consumer in consumers:
            consumer.create_listener(lambda msg, ctx: ran.append(time.time()))
        schedule = q.schedule("tick", "* * * * * *", {"tick": True})  # every second
        assert schedule["next_run"] >= time.time() - 1
        assert [s["name"] for s in q.schedules()] == ["tick"]
        wait_until(lambda: len(ran) >= 4, 20, "four slots to fire")
        assert q.unschedule("tick") is True
    finally:
        for consumer in consumers:
            consumer.shutdown(timeout=10)
    _, jobs = q.list_jobs(limit=100)
    # one job per slot: each slot's post named it by its token, and all three
    # consumers' posts of a slot got the one job that token names (a slot fired late
    # may post within a second of the next, so the posts' times cannot tell)
    slots = [q.client.get(key) for key in q.client.scan_iter(match=q.keys.posted("cron:tick:*"))]
    assert len(slots) >= 4
    assert sorted(int(job_id) for job_id in slots) == sorted(int(job["id"]) for job in jobs)
    assert all(job["msg"] == {"tick": True} for job in jobs)
    assert q.schedules() == [] and q.unschedule("tick") is False


def test_a_schedule_fires_on_a_worker_with_its_options(q: MLQ, redis_url: str) -> None:
    got: list[Any] = []
    q.schedule("gpu-tick", "* * * * * *", "m", queue="gpu", priority=3)
    gpu = MLQ(q.namespace, redis_url=redis_url, queues=["gpu"])
    gpu.create_listener(lambda msg, ctx: got.append(ctx["full_message"]))
    try:
        wait_until(lambda: got, 20, "the schedule's first job")
    finally:
        gpu.shutdown(timeout=10)
    assert (got[0]["queue"], got[0]["priority"], got[0]["msg"]) == ("gpu", 3, "m")
