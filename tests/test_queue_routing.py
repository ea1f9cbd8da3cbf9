"""Named queues and priorities."""

from __future__ import annotations

from typing import Any

import pytest

from mlq import MLQ, InvalidMessage
from mlq.worker import Worker


def _taken(q: MLQ, **options: Any) -> list[Any]:
    """Messages in the order workers take them (each take by a fresh, idle worker)."""
    order = []
    n = 0
    while records := Worker(q, f"w{n}", **options).take(0):
        order += [r["msg"] for r in records]
        n += 1
    return order


def test_priorities_then_fifo_within_a_priority(q: MLQ) -> None:
    for msg, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 9), ("e", 5), ("f", 9)]:
        q.post(msg, priority=priority)
    assert q.job_count() == 6
    assert _taken(q) == ["d", "f", "b", "e", "a", "c"]


def test_workers_take_their_queues_in_order_of_preference(q: MLQ) -> None:
    q.post("cpu-1")
    q.post("gpu-1", queue="gpu")
    q.post("other", queue="other")
    q.post("gpu-2", queue="gpu", priority=3)
    assert q.job_count("gpu") == 2 and q.job_count() == 1
    assert _taken(q, queues=("gpu", "default")) == ["gpu-2", "gpu-1", "cpu-1"]
    assert q.job_count("other") == 1
    assert q.stats()["waiting_by_queue"] == {"default": 0, "gpu": 0, "other": 1}


def test_bad_priority_or_queue_is_refused(q: MLQ) -> None:
    for options in ({"priority": 10}, {"priority": -1}, {"priority": "high"},
                    {"priority": True}, {"queue": ""}, {"queue": 5}):
        with pytest.raises(InvalidMessage):
            q.post("m", **options)
    assert q.post("ok") == "1"


def test_requeued_and_dead_jobs_go_back_to_their_own_queue(q: MLQ) -> None:
    def fail_once(msg: Any, *args: Any) -> str:
        if args[0]["full_message"]["retries"] == 0 and not getattr(fail_once, "done", False):
            fail_once.done = True  # type: ignore[attr-defined]
            raise RuntimeError("first time")
        return "ok"

    job_id = q.post("x", queue="gpu", priority=7)
    worker = Worker(q, "w", queues=("gpu",), local_listeners={"fail_once": fail_once})
    assert worker.step(0)
    assert q.get_job(job_id)["status"] == "failed"
    q.requeue_dead(job_id)
    assert q.client.llen(q.keys.queue("gpu", 7)) == 1
    assert worker.step(0) and q.get_job(job_id)["result"] == "ok"


def test_a_blocked_worker_wakes_for_any_of_its_queues(q: MLQ) -> None:
    import threading
    worker = Worker(q, "w", queues=("gpu", "default"))
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(worker.take(5)))
    thread.start()
    q.post("late", queue="gpu", priority=2)
    thread.join(10)
    assert got and got[0] and got[0][0]["msg"] == "late"


def test_fair_share_between_owners(q: MLQ) -> None:
    q.post_many([f"alice-{n}" for n in range(1000)], owner="alice")
    q.post("bob-0", owner="bob")
    q.post("bob-1", owner="bob")
    assert q.job_count() == 1002
    first = [r["msg"] for n in range(4) for r in Worker(q, f"w{n}", fair=True).take(0) or []]
    assert first == ["alice-0", "bob-0", "alice-1", "bob-1"]  # bob is not starved
    assert q.get_job("1001")["owner"] == "bob"


def test_limit_of_running_jobs_per_owner(q: MLQ) -> None:
    q.post_many(["a1", "a2", "a3"], owner="alice")
    q.post("b1", owner="bob")
    def take(n: int) -> list[Any]:
        return Worker(q, f"w{n}", fair=True, max_running_per_owner=1).take(0) or []

    taken = [r for n in range(3) for r in take(n)]
    assert [r["msg"] for r in taken] == ["a1", "b1"]  # alice's others wait for a1
    q.scripts.finish(taken[0]["id"], "w0", 1, "completed", 0.0, [])
    assert [r["msg"] for r in take(9)] == ["a2"]


def test_owners_jobs_run_with_in_process_workers(redis_url: str, namespace: str) -> None:
    q = MLQ(namespace, redis_url=redis_url, fair=True, concurrency=2)
    try:
        def echo(msg: str, *args: Any) -> str:
            return msg

        q.create_listener(echo)
        ids = q.post_many([f"m{n}" for n in range(10)], owner="carol") + [q.post("x", owner="dan")]
        assert [q.wait(i, 10)["result"] for i in ids] == [f"m{n}" for n in range(10)] + ["x"]
        assert q.client.hgetall(q.keys.owner_running) == {}
        urgent = q.post("urgent", owner="carol", priority=3)  # jumps the owners' turns
        assert q.wait(urgent, 10)["result"] == "urgent"
    finally:
        q.shutdown(10)
        q.clear_all()
