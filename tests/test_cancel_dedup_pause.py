"""Cancel in every state, dedup keys, and paused queues (docs/lifecycle.md)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from mlq import MLQ, InvalidMessage
from mlq.errors import InvalidName
from mlq.worker import Worker
from tests.conftest import CallbackRecorder, wait_until

# counts what the whole session server received: in the group of such files, which an
# xdist worker runs before any other file has left clients on its server (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("counts-server-commands")


def _worker(q: MLQ, ran: list[Any], name: str = "w", **options: Any) -> Worker:
    return Worker(q, name, local_listeners={"l": lambda msg, ctx: ran.append(msg)}, **options)


# -- cancel -------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{}, {"delay": 60}, {"depends_on": "first"}])
def test_a_waiting_job_cancelled_ends_cancelled_and_never_runs(q: MLQ,
                                                               options: dict[str, Any]) -> None:
    first = q.post("first", delay=120)
    if options.get("depends_on"):
        options = {"depends_on": [first]}
    job_id = q.post("m", **options)
    assert q.cancel(job_id) is True
    record = q.get_job(job_id)
    assert (record["status"], record["error_kind"], record["progress"]) == ("cancelled",
                                                                           "cancelled", -1)
    assert q.wait(job_id, 1)["status"] == "cancelled"
    ran: list[Any] = []
    later = _worker(q, ran, clock=lambda: time.time() + 300)
    while later.step(0):
        pass
    assert ran == ["first"] and q.get_job(job_id)["status"] == "cancelled"
    stats = q.stats()
    assert (stats["cancelled"], stats["failed"], stats["dead"]) == (1, 0, 0)
    assert [r["id"] for r in q.list_jobs("cancelled")[1]] == [job_id]
    assert q.cancel(job_id) is False  # it has ended


def test_a_running_listener_sees_cancelled_and_its_job_ends_cancelled_without_callback(
        q: MLQ, callback_server: CallbackRecorder) -> None:
    seen = threading.Event()

    def patient(msg: Any, context: dict[str, Any]) -> str:
        seen.set()
        while msg == "long" and not context["cancelled"]():
            time.sleep(0.01)
        return "stopped early"

    q.create_listener(patient)
    job_id = q.post("long", callback=callback_server.url)
    assert seen.wait(10)
    assert q.cancel(job_id) is True
    record = q.wait(job_id, 10)
    assert (record["status"], record["error"]) == ("cancelled", "cancelled")
    assert q.post("next", callback=callback_server.url)  # its callback comes...
    requests = callback_server.wait_for(1)
    assert len(requests) == 1 and requests[0]["query"]["job_id"] != [job_id]  # ...only its


def test_cancel_many_by_ids_or_by_queue(q: MLQ) -> None:
    a, b = q.post("a"), q.post("b", delay=60)
    gpu = [q.post("g", queue="gpu"), q.post("h", queue="gpu", delay=60)]
    assert sorted(q.cancel_many(ids=[a, "999"])) == [a]
    # ids as a client may write them: "007" is job 7; what no post made is left out
    c = q.post("c", delay=60)
    assert q.cancel_many(ids=["0" + c, "x1", int(c) + 1000, *range(5000, 9000)]) == [c]
    assert q.get_job(c)["status"] == "cancelled"
    assert sorted(q.cancel_many(queue="gpu")) == sorted(gpu)
    assert q.get_job(b)["status"] == "scheduled"
    with pytest.raises(InvalidMessage):
        q.cancel_many()
    with pytest.raises(InvalidMessage):
        q.cancel_many(ids=[a], queue="gpu")


# -- dedup keys -----------------------------------------------------------------------
def test_a_dedup_key_returns_the_live_job_instead_of_making_another(q: MLQ) -> None:
    first = q.enqueue("resize", key="resize:42")
    again = q.enqueue("resize", key="resize:42")
    assert (again.id, again.duplicate, first.duplicate) == (first.id, True, False)
    assert q.post("resize", key="resize:42", delay=5) == first.id
    assert q.stats()["posted"] == 1 and q.get_job(first.id)["key"] == "resize:42"
    ran: list[Any] = []
    assert _worker(q, ran).step(1)
    # once its job ended the key is free again
    assert q.enqueue("resize", key="resize:42").id != first.id


def test_key_ttl_covers_the_finished_job_for_that_long(q: MLQ) -> None:
    first = q.post("m", key="k", key_ttl=0.5)
    assert _worker(q, []).step(1)
    assert q.post("m", key="k") == first
    wait_until(lambda: q.post("m", key="k") != first, 10, "the key to lapse")


def test_a_key_is_claimed_atomically_by_concurrent_posts(q: MLQ) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        barrier.wait()
        ids.append(q.post("m", key="once"))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(set(ids)) == 1 and q.stats()["posted"] == 1


@pytest.mark.parametrize("options", [{"key": "k" * 257}, {"key": ""}, {"key": 5},
                                     {"key_ttl": 5}, {"key": "k", "key_ttl": -1}])
def test_bad_keys_are_refused_and_post_nothing(q: MLQ, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage):
        q.post("m", **options)
    assert q.stats()["posted"] == 0


# -- paused queues ----------------------------------------------------------------------
def test_a_paused_queue_keeps_its_jobs_until_resumed(q: MLQ) -> None:
    ran: list[Any] = []
    worker = _worker(q, ran, queues=["gpu", "default"])
    q.pause("gpu")
    assert q.paused() == ["gpu"]
    held = q.post("held", queue="gpu")  # posts are still accepted
    q.post("other")
    assert worker.step(0.2) and ran == ["other"]  # other queues go on
    assert not worker.step(0.2) and q.get_job(held)["status"] == "queued"
    assert q.job_count("gpu") == 1
    q.resume("gpu")
    assert q.paused() == []
    assert worker.step(1) and ran == ["other", "held"]


def test_a_worker_idle_on_a_queue_is_handed_nothing_once_it_is_paused(q: MLQ) -> None:
    ran: list[Any] = []
    worker = _worker(q, ran)
    assert not worker.step(0.01)  # nothing queued: it waits as idle on the queue
    q.pause("default")
    held = q.post("held")
    assert q.get_job(held)["status"] == "queued" and q.job_count() == 1
    assert not worker.step(0.2) and ran == []
    q.resume("default")
    assert worker.step(1) and ran == ["held"]


def test_resuming_wakes_an_idle_worker(q: MLQ) -> None:
    q.pause("default")
    q.create_listener(lambda msg, ctx: msg)
    job_id = q.post("m")
    time.sleep(0.3)  # a paused queue's job must not be handed to the idle worker
    assert q.get_job(job_id)["status"] == "queued"
    q.resume("default")
    assert q.wait(job_id, 10)["status"] == "completed"


def test_pausing_a_bad_queue_name_is_refused(q: MLQ) -> None:
    with pytest.raises(InvalidName):
        q.pause("no spaces")


def test_cancelled_may_be_called_in_a_tight_loop_without_a_round_trip_each(q: MLQ) -> None:
    calls: list[int] = []

    def spin(msg: Any, context: dict[str, Any]) -> int:
        started = time.monotonic()
        while not context["cancelled"]() and time.monotonic() - started < 0.5:
            calls.append(1)
        return len(calls)

    def reads() -> int:
        return int(q.client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))

    worker = Worker(q, "w", local_listeners={"spin": spin})
    q.post("m")
    before = reads()
    assert worker.step(1)
    assert len(calls) > 1000 and reads() - before < 20  # 0.5 s of checks: one every 0.2 s
