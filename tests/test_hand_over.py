"""A post hands its job straight to a worker that waits idle: started for it in
the post's own step, announced in the worker's inbox. Nothing is lost or run
twice whichever way the worker picks it up."""

from __future__ import annotations

import threading
import time
from typing import Any

from mlq import MLQ, defaults
from mlq.heartbeat import beat
from mlq.reaper import Reaper
from mlq.worker import Worker
from tests.conftest import wait_until


def _idle_worker(q: MLQ, worker_id: str = "w1", alive: bool = True) -> Worker:
    worker = Worker(q, worker_id, local_listeners={"echo": lambda msg, ctx: msg})
    if alive:
        beat(q.client, q.keys, {worker_id: {}}, timeout=30)
    assert worker.take(0.01) is None  # nothing queued: it now waits as idle
    assert q.client.zrange(q.keys.idle("default"), 0, -1) == [worker_id.encode()]
    return worker


def test_a_post_starts_its_job_on_the_idle_worker(q: MLQ) -> None:
    worker = Worker(q, "w1", local_listeners={"echo": lambda msg, ctx: msg})
    beat(q.client, q.keys, {"w1": {}}, timeout=30)
    taken: list[dict[str, Any]] = []
    blocked = threading.Thread(target=lambda: taken.extend(worker.take(10) or []))
    blocked.start()  # finds nothing, waits as idle, blocks on its inbox
    wait_until(lambda: q.client.zcard(q.keys.idle("default")) == 1, 10,
               "the worker to wait as idle", interval=0.005)
    job_id = q.post({"n": 1})
    blocked.join(10)
    assert taken and taken[0]["id"] == job_id and taken[0]["msg"] == {"n": 1}
    assert taken[0]["status"] == "started" and taken[0]["attempt"] == 1
    record = q.get_job(job_id)
    assert (record["status"], record["worker"], record["attempt"]) == ("started", "w1", 1)
    assert q.client.lrange(q.keys.processing("w1"), 0, -1) == [job_id.encode()]
    assert q.job_count() == 0 and q.client.llen(q.keys.inbox("w1")) == 0
    worker.run_job(taken[0])
    assert q.wait(job_id, 5)["result"] == {"n": 1}


def test_a_worker_whose_idle_claim_lapsed_is_passed_over(q: MLQ) -> None:
    # it stopped taking (it died while idle): its claim lapses within two blocking waits
    _idle_worker(q, "gone", alive=False)
    lapses = q.client.zscore(q.keys.idle("default"), "gone")  # scored by when
    wait_until(lambda: time.time() > lapses, 10, "the claim to lapse")
    job_id = q.post("m")
    assert q.get_job(job_id)["status"] == "queued" and q.job_count() == 1
    assert q.client.zcard(q.keys.idle("default")) == 0
    assert q.client.llen(q.keys.wake("default")) == 1  # a live worker is woken instead


def test_a_job_handed_over_while_the_worker_takes_runs_once(q: MLQ) -> None:
    worker = _idle_worker(q)
    job_id = q.post("m")
    # the worker stopped blocking before it saw its inbox, and takes instead: the
    # job comes back as its stray, and the inbox no longer announces it
    taken = worker.take(0)
    assert taken and [r["id"] for r in taken] == [job_id]
    assert q.client.llen(q.keys.inbox("w1")) == 0
    worker.run_job(taken[0])
    assert q.get_job(job_id)["status"] == "completed"
    assert worker.take(0.01) is None


def test_a_stopping_worker_runs_what_was_handed_to_it(q: MLQ) -> None:
    worker = _idle_worker(q)
    job_id = q.post("last one")
    stop = threading.Event()
    stop.set()
    worker.run(stop)
    assert q.get_job(job_id)["result"] == "last one"
    assert q.client.zcard(q.keys.idle("default")) == 0
    assert q.client.llen(q.keys.processing("w1")) == 0


def test_a_large_record_is_handed_over_through_the_processing_list(q: MLQ) -> None:
    worker = _idle_worker(q)
    big = "x" * 200_000
    job_id = q.post(big)
    (note,) = q.client.lrange(q.keys.inbox("w1"), 0, -1)
    assert len(note) < 100  # only when it was handed over
    taken = worker.take(5)
    assert taken and taken[0]["id"] == job_id and taken[0]["msg"] == big


def test_a_worker_on_two_queues_is_handed_one_job(q: MLQ) -> None:
    worker = Worker(q, "w1", queues=["a", "b"], local_listeners={"echo": lambda msg, ctx: msg})
    beat(q.client, q.keys, {"w1": {}}, timeout=30)
    assert worker.take(0.01) is None
    first = q.post("to a", queue="a")
    second = q.post("to b", queue="b")
    assert q.get_job(first)["status"] == "started"
    assert q.get_job(second)["status"] == "queued" and q.job_count("b") == 1
    taken = worker.take(0)  # its handed job first, then the next waiting one
    assert taken and [r["id"] for r in taken] == [first]
    worker.run_job(taken[0])
    assert [r["id"] for r in worker.take(0) or []] == [second]


def test_a_job_handed_to_a_worker_that_never_takes_it_is_taken_back(q: MLQ) -> None:
    """The worker died while idle, its heartbeat not yet expired: the note it left in
    its inbox says since when, and a sweep past HAND_OVER_WINDOW takes the job back."""
    _idle_worker(q, "gone")
    job_id = q.post("m")
    assert q.get_job(job_id)["worker"] == "gone"
    handed_at = time.time()
    reaper = Reaper(q)
    assert reaper.recover_dead_workers(handed_at).requeued == []  # in time, so far
    assert q.client.llen(q.keys.inbox("gone")) == 1
    report = reaper.recover_dead_workers(handed_at + defaults.HAND_OVER_WINDOW + 1)
    assert report.requeued == [job_id]
    record = q.get_job(job_id)
    assert (record["status"], record["worker"]) == ("queued", None)
    assert q.client.llen(q.keys.inbox("gone")) == 0
    assert q.client.zcard(q.keys.idle("default")) == 0
    live = Worker(q, "live", local_listeners={"echo": lambda msg, ctx: msg})
    taken = live.take(0)
    assert taken and taken[0]["id"] == job_id


def test_a_worker_that_took_its_job_is_left_alone_by_the_sweep(q: MLQ) -> None:
    worker = _idle_worker(q)
    job_id = q.post("m")
    taken = worker.take(1)  # from its inbox
    assert taken and taken[0]["id"] == job_id
    assert Reaper(q).recover_dead_workers(time.time() + 60).requeued == []
    assert q.get_job(job_id)["worker"] == "w1"


def _shout(suffix: str) -> Any:
    def shout(msg: str, *args: Any) -> str:
        return msg.upper() + suffix
    return shout


def _wait_as_idle(q: MLQ, worker: Worker) -> None:
    # the first take may only load the listeners: a worker whose listeners are out
    # of date does not wait as idle
    for _ in range(3):
        assert worker.take(0.01) in (None, [])
        if q.client.zcard(q.keys.idle("default")):
            return
    raise AssertionError("the worker never waited as idle")


def _handed_while_blocked(q: MLQ, worker: Worker, producer: MLQ, msg: str) -> Any:
    """Post while the worker blocks as idle, so that the job reaches it in its inbox;
    the job's result."""
    # a wake token an earlier post left would end the wait at once
    q.client.delete(q.keys.wake("default"))
    for _ in range(3):
        taken: list[dict[str, Any]] = []
        blocked = threading.Thread(target=lambda: taken.extend(worker.take(10) or []))
        blocked.start()
        wait_until(lambda: not blocked.is_alive() or q.client.zcard(q.keys.idle("default")),
                   10, "the worker to wait as idle", interval=0.005)
        if blocked.is_alive():
            break
        assert taken == []  # it only loaded the listeners
    job_id = producer.post(msg)
    blocked.join(10)
    assert taken and taken[0]["id"] == job_id
    worker.run_job(taken[0])
    return q.get_job(job_id)["result"]


def test_a_listener_replaced_while_a_worker_waits_idle_runs_in_its_new_version(
        q: MLQ, redis_url: str) -> None:
    producer = MLQ(q.namespace, redis_url=redis_url)  # a registry of its own
    producer.register_listener(_shout(""))
    worker = Worker(q, "w1")
    _wait_as_idle(q, worker)
    producer.register_listener(_shout("!"))
    # a post hands a job over with no registry sequence: the worker is no longer idle
    assert q.client.zcard(q.keys.idle("default")) == 0
    assert _handed_while_blocked(q, worker, producer, "hi") == "HI!"
    producer.remove_listener("shout")
    assert q.client.zcard(q.keys.idle("default")) == 0
    assert _handed_while_blocked(q, worker, producer, "hi") is None  # no listener left
    producer.close()


def test_a_listener_replaced_while_a_worker_runs_is_loaded_before_it_waits_idle(
        q: MLQ, redis_url: str) -> None:
    producer = MLQ(q.namespace, redis_url=redis_url)
    producer.register_listener(_shout(""))
    worker = Worker(q, "w1")
    job_id = producer.post("one")
    (record,) = worker.take(1) or []  # the listeners it loads are the first version
    producer.register_listener(_shout("!"))
    worker.run_job(record)
    assert q.get_job(job_id)["result"] == "ONE"
    assert _handed_while_blocked(q, worker, producer, "two") == "TWO!"
    producer.close()


def _fail(msg: Any, ctx: Any) -> None:
    raise ValueError(msg)


def test_a_post_does_not_pass_jobs_that_joined_the_queue_otherwise(q: MLQ) -> None:
    """A post hands its job to an idle worker without looking at the queue: what puts
    jobs in it otherwise takes the idle workers off the idle list first."""
    failing = Worker(q, "f", local_listeners={"fail": _fail})
    dead = q.post("dead letter")
    assert failing.step(0) and q.get_job(dead)["status"] == "failed"
    worker = Worker(q, "w1", local_listeners={"echo": lambda msg, ctx: msg})
    _wait_as_idle(q, worker)  # a first take may end on the wake token the post left
    elsewhere = Worker(q, "x", queues=("other",))

    def due_meanwhile() -> list[str]:
        later = q.post("later", delay=0.05)
        time.sleep(0.1)
        assert elsewhere.take(0) in (None, [])  # any take moves due jobs to their queue
        return [later]

    for joins in (lambda: [dead] if q.requeue_dead(dead) else [],
                  lambda: q.post_many(["many 1", "many 2"]), due_meanwhile):
        joined = joins()
        assert q.client.zcard(q.keys.idle("default")) == 0
        after = q.post("after them")
        assert q.get_job(after)["status"] == "queued"
        taken = worker.take(0, count=10) or []
        assert [r["id"] for r in taken] == [*joined, after]
        for record in taken:
            worker.run_job(record)
        _wait_as_idle(q, worker)
