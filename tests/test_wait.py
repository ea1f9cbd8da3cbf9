"""wait() and watch() listen through the process's one shared subscription
(dispatch.py): no subscribe per job, one connection for any number of waits,
and nothing lost across a dropped connection or an old message."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from mlq import MLQ, dispatch, events
from mlq.dispatch import dispatcher
from mlq.embedded import EmbeddedServer
from mlq.serialization import pack
from mlq.worker import Worker
from tests.conftest import end_as_subscriptions_drop, wait_until

# counts what the whole session server received: in the group of such files, which an
# xdist worker runs before any other file has left clients on its server (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("counts-server-commands")


def _listeners(q: MLQ) -> int:
    return dispatcher(q.client, q.keys).listeners()


def _calls(q: MLQ, *commands: str) -> int:
    stats = q.client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in commands)


def _pubsub_connections(q: MLQ) -> int:
    return sum(1 for client in q.client.client_list()
               if int(client["sub"]) or int(client["psub"]))


def _wait_in_threads(q: MLQ, ids: list[str], timeout: float) -> tuple[list[Any], list[threading.Thread]]:
    results: list[Any] = []
    threads = [threading.Thread(target=lambda i=i: results.append(q.wait(i, timeout)))
               for i in ids]
    for thread in threads:
        thread.start()
    return results, threads


def _fails_then_works() -> Any:
    """A listener whose first run fails and whose second works."""
    outcomes = iter([RuntimeError("first attempt fails"), "second attempt works"])

    def flaky(msg: Any, *args: Any) -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    return flaky


def test_waiting_again_after_a_requeue_ignores_the_old_outcome(q: MLQ) -> None:
    flaky = _fails_then_works()
    worker = Worker(q, "w1", local_listeners={"flaky": flaky})
    job_id = q.post("m")
    assert worker.step(1)
    assert q.wait(job_id, 5)["status"] == "failed"
    # the failure's event again, as a finish sends it (with the record), while nobody
    # listens; it has come before the requeue (a wait can tell no event still on its
    # way from a new one)
    channel = q.keys.job_channel(job_id)
    failed = [part for item in q.client.hgetall(q.keys.job(job_id)).items() for part in item]
    shared = dispatcher(q.client, q.keys)
    received = shared._received
    q.client.publish(channel, pack([job_id, "failed", -1, failed]))
    wait_until(lambda: shared._received > received, 10, "the old event to come")
    assert q.requeue_dead(job_id) == 1
    waited, (waiter,) = _wait_in_threads(q, [job_id], 10)
    # the job runs only once the waiter listens: it must wait for this outcome
    wait_until(lambda: _listeners(q) == 1, 10, "the waiter to listen", interval=0.005)
    assert worker.step(1)
    waiter.join(10)
    assert waited, "wait() did not return"
    assert (waited[0]["status"], waited[0]["result"]) == ("completed", "second attempt works")


def test_an_outcome_its_record_does_not_bear_out_does_not_end_a_wait(q: MLQ) -> None:
    # as an earlier run's outcome still on its way when the wait began comes: after
    # it, and without a record (nobody waited for that run)
    worker = Worker(q, "w1", local_listeners={"echo": lambda msg, *args: msg})
    job_id = q.post("second run")
    shared = dispatcher(q.client, q.keys)
    waited, (waiter,) = _wait_in_threads(q, [job_id], 10)
    wait_until(lambda: _listeners(q) == 1, 10, "the waiter to listen", interval=0.005)
    received = shared._received
    q.client.publish(q.keys.job_channel(job_id), pack([job_id, "failed", -1]))
    wait_until(lambda: shared._received > received, 10, "the old outcome to be read")
    waiter.join(0.2)
    assert not waited, "the wait ended on an outcome its job's record did not show"
    assert worker.step(1)
    waiter.join(10)
    assert waited and (waited[0]["status"], waited[0]["result"]) == ("completed", "second run")


def test_an_outcome_its_record_does_not_bear_out_does_not_end_a_watch(q: MLQ) -> None:
    worker = Worker(q, "w1", local_listeners={"echo": lambda msg, *args: msg})
    job_id = q.post("second run")
    shared = dispatcher(q.client, q.keys)
    seen: list[Any] = []
    watcher = threading.Thread(target=lambda: seen.extend(q.watch(job_id, keepalive=30)))
    watcher.start()
    wait_until(lambda: _listeners(q) == 1, 10, "the watch to listen", interval=0.005)
    received = shared._received
    q.client.publish(q.keys.job_channel(job_id), pack([job_id, "failed", -1]))
    wait_until(lambda: shared._received > received, 10, "the old outcome to be read")
    assert worker.step(1)
    watcher.join(10)
    statuses = [state["status"] for state in seen if state is not None]
    assert statuses[0] == "queued" and statuses[-1] == "completed" and "failed" not in statuses


def test_an_outcome_that_came_while_nobody_read_is_not_taken_for_the_next_run(
        redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the tender empties the connection only now and then: the first run's outcome
    # still lies on it, unread, when the wait after the requeue begins
    monkeypatch.setattr(dispatch, "READ_TIMEOUT", 30.0)
    q, poster = MLQ(namespace, redis_url=redis_url), MLQ(namespace, redis_url=redis_url)
    flaky = _fails_then_works()
    try:
        worker = Worker(poster, "w1", local_listeners={"flaky": flaky})
        dispatcher(q.client, q.keys).subscribe()
        job_id = poster.post("m")
        assert worker.step(1) and poster.wait(job_id, 5)["status"] == "failed"
        assert poster.requeue_dead(job_id) == 1
        waited, (waiter,) = _wait_in_threads(q, [job_id], 10)
        # the failure and the requeue's event both read, by the waiter or before it
        shared = dispatcher(q.client, q.keys)
        wait_until(lambda: waited or (_listeners(q) == 1 and shared._received >= 2), 10,
                   "the waiter to read what lay on the connection", interval=0.005)
        assert worker.step(1)
        waiter.join(10)
        assert waited, "wait() did not return"
        assert (waited[0]["status"], waited[0]["result"]) == ("completed", "second attempt works")
    finally:
        q.close()
        poster.close()


def test_forty_waits_share_one_connection_and_subscribe_to_nothing_per_job(
        tmp_path: Path) -> None:
    # a server of its own: the counts are the whole server's, and clients that other
    # tests leave behind may subscribe on theirs
    with EmbeddedServer(port=None, data_dir=tmp_path) as server:
        q = MLQ("forty", redis_url=server.url)
        try:
            _forty_waits(q)
        finally:
            q.close()


def _forty_waits(q: MLQ) -> None:
    worker = Worker(q, "w1", local_listeners={"echo": lambda msg, *args: msg})
    assert q.wait(q.post("warm-up"), 0.01 if worker.step(1) else 5)["status"] == "completed"
    subscribes = _calls(q, "subscribe", "psubscribe", "unsubscribe", "punsubscribe")
    connections = _pubsub_connections(q)
    ids = [q.post(n) for n in range(40)]
    results, threads = _wait_in_threads(q, ids, 20)
    wait_until(lambda: _listeners(q) == 40, 10, "40 waiters to listen", interval=0.01)
    assert _pubsub_connections(q) <= connections
    while worker.step(8):
        pass
    for thread in threads:
        thread.join(20)
    assert sorted(record["result"] for record in results) == list(range(40))
    assert _calls(q, "subscribe", "psubscribe", "unsubscribe", "punsubscribe") == subscribes


def test_a_wait_outlives_the_loss_of_the_shared_connection(
        q: MLQ, monkeypatch: pytest.MonkeyPatch) -> None:
    # only the news of the lost connection can end this wait in time, not a re-read
    monkeypatch.setattr(events, "RECHECK_INTERVAL", 120.0)
    worker = Worker(q, "w1", local_listeners={"echo": lambda msg, *args: msg})
    done = q.post("done")
    assert worker.step(1)
    job_id = q.post("waited for")
    shared = dispatcher(q.client, q.keys)
    shared.subscribe()  # made before the waiter comes: the kill below must hit it
    waited, (waiter,) = _wait_in_threads(q, [job_id], 60)
    # its first look done (the look marks the job), it waits for news alone
    wait_until(lambda: q.client.hexists(q.keys.job(job_id), "waited"), 10,
               "the waiter's first look", interval=0.005)
    connects = shared._pubsub.connects
    end_as_subscriptions_drop(q, job_id, like=done)
    waiter.join(60)
    assert waited and (waited[0]["id"], waited[0]["result"]) == (job_id, "done")
    assert shared._pubsub.connects > connects
    # and the shared connection serves the next wait as before
    second = q.post("after")
    while worker.step(1):
        pass
    assert q.wait(second, 10)["result"] == "after"


def test_events_nobody_waits_for_are_read_off_the_shared_connection(
        q: MLQ, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "READ_TIMEOUT", 0.05)
    worker = Worker(q, "w1", local_listeners={"echo": lambda msg, *args: msg})
    first = q.post("first")
    assert worker.step(1)
    assert q.wait(first, 10)["result"] == "first"  # the subscription is up from now on
    shared = dispatcher(q.client, q.keys)
    received = shared._received
    for n in range(100):
        q.post(n)
    while worker.step(0.1):
        pass
    # nobody waits, yet the connection is emptied: Redis keeps no backlog for it
    wait_until(lambda: shared._received - received >= 100, 10, "the events to be read")
    wait_until(lambda: all(int(client["omem"]) == 0 for client in q.client.client_list()
                           if int(client["psub"])), 10, "no output held for the subscription")


def test_the_shared_connection_closes_when_idle_and_opens_again_for_the_next_wait(
        q: MLQ, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "IDLE_CLOSE", 0.2)
    monkeypatch.setattr(dispatch, "READ_TIMEOUT", 0.05)
    worker = Worker(q, "w1", local_listeners={"echo": lambda msg, *args: msg})
    first = q.post("first")
    assert worker.step(1)
    assert q.wait(first, 10)["result"] == "first"
    shared = dispatcher(q.client, q.keys)
    wait_until(lambda: shared._pubsub is None, 10, "the idle connection to close")
    second = q.post("second")
    waited, (waiter,) = _wait_in_threads(q, [second], 20)
    wait_until(lambda: _listeners(q) == 1, 10, "the waiter to listen", interval=0.005)
    assert worker.step(1)
    waiter.join(20)
    assert waited and waited[0]["result"] == "second"


def test_the_finish_hands_a_waiter_the_record_so_it_reads_nothing_after(
        q: MLQ, redis_url: str) -> None:
    go = threading.Event()
    worker = Worker(q, "w1", local_listeners={"held": lambda msg, *args: go.wait(10) and msg})
    job_id = q.post("handed over")
    running = threading.Thread(target=worker.step, args=(1,))
    running.start()
    wait_until(lambda: q.get_job(job_id, fields=["status"])["status"] == "started", 10,
               "the job to start")
    # a waiter of its own, whose connections Redis can tell apart by name
    waiter_mlq = MLQ(q.namespace, client=redis.Redis.from_url(redis_url, client_name="waiter"))
    try:
        waited, (waiter,) = _wait_in_threads(waiter_mlq, [job_id], 10)
        wait_until(lambda: q.client.hexists(q.keys.job(job_id), "waited"), 10, "the wait's mark")
        sent = _commands_of(q, "waiter")
        go.set()
        running.join(10)
        waiter.join(10)
        assert waited and (waited[0]["status"], waited[0]["result"]) == ("completed",
                                                                         "handed over")
        assert _commands_of(q, "waiter") == sent  # the event carried the record
    finally:
        waiter_mlq.close()


def test_a_wait_looks_again_after_quiet_spells_between_events(
        q: MLQ, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "RECHECK_INTERVAL", 0.05)
    go = threading.Event()
    worker = Worker(q, "w1", local_listeners={"held": lambda msg, *args: go.wait(10) and msg})
    job_id = q.post("after a while")
    waited, (waiter,) = _wait_in_threads(q, [job_id], 20)
    running = threading.Thread(target=worker.step, args=(1,))
    running.start()  # its 'started' event, then nothing for many recheck intervals
    wait_until(lambda: q.get_job(job_id, fields=["status"])["status"] == "started", 10,
               "the job to start")
    threading.Event().wait(0.3)
    go.set()
    running.join(10)
    waiter.join(20)
    assert waited and waited[0]["result"] == "after a while"


def test_a_wait_for_a_job_that_has_ended_is_one_command(q: MLQ, redis_url: str) -> None:
    worker = Worker(q, "w1", local_listeners={"echo": lambda msg, *args: msg})
    first, small, big = q.post("first"), q.post("small"), q.post("x" * 100_000)
    assert worker.step(1) and worker.step(1) and worker.step(1)
    waiter_mlq = MLQ(q.namespace, client=redis.Redis.from_url(redis_url, client_name="first-look"))
    try:
        waiter_mlq.wait(first, 10)  # its connections are made, its subscription too
        sent = _commands_of(q, "first-look")
        record = waiter_mlq.wait(small, 10)
        assert (record["status"], record["result"], record["position"]) == ("completed", "small",
                                                                            None)
        # one step, the first look, brought the record: its EVALSHA, and in it HGET
        # (the status) and HGETALL; no read followed it
        assert _commands_of(q, "first-look") == sent + 3
        assert _last_commands(q, "first-look") == ["evalsha"]
        assert record == q.get_job(small)
        assert waiter_mlq.wait(big, 10)["result"] == "x" * 100_000  # read apart
    finally:
        waiter_mlq.close()


def _last_commands(q: MLQ, name: str) -> list[str]:
    """The last command of each connection so named, but its subscription's."""
    return [c["cmd"] for c in q.client.client_list()
            if c["name"] == name and not (int(c["sub"]) or int(c["psub"]))]


def _commands_of(q: MLQ, name: str) -> int:
    return sum(int(c["tot-cmds"]) for c in q.client.client_list() if c["name"] == name)
