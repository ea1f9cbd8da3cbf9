"""A wait for a job that its own client posted while the process's subscription was
up reads nothing: every event of the job since before the post reached the
subscription, and the ones that came before the wait began were kept there
(dispatch.Dispatcher.mark, events.OwnPosts). Where that cannot be known, the
wait looks at the job's state as any other."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mlq import MLQ, events, recent
from mlq.dispatch import dispatcher
from mlq.serialization import unpack_raw_from_lua as unpack
from mlq.worker import Worker
from tests.conftest import end_as_subscriptions_drop, wait_until


def _commands_of(q: MLQ, name: str) -> int:
    return sum(int(c["tot-cmds"]) for c in q.client.client_list() if c["name"] == name)


@pytest.fixture
def poster(q: MLQ, redis_url: str) -> Iterator[MLQ]:
    """A client of its own on the namespace, whose connections Redis can tell apart."""
    mlq = MLQ(q.namespace, client=redis.Redis.from_url(redis_url, client_name="poster"))
    yield mlq
    mlq.close()


@pytest.fixture
def worker(q: MLQ) -> Worker:
    return Worker(q, "w1", local_listeners={"echo": lambda msg, *args: msg})


@pytest.fixture
def no_rereads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the news a wait hears can end it in time, not a re-read of the state."""
    monkeypatch.setattr(events, "RECHECK_INTERVAL", 120.0)


def _wait_at_once(mlq: MLQ, job_id: str) -> dict[str, Any]:
    """The record a wait returns, long before its timeout would end it (a wait that
    times out still reads the state once, so the result alone would not tell)."""
    waited: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: waited.append(mlq.wait(job_id, 60)), daemon=True)
    waiter.start()
    waiter.join(20)
    assert waited, "the wait went on after its job had ended"
    return waited[0]


def _subscribed(mlq: MLQ, worker: Worker) -> str:
    """A first post and its wait: the process's subscription is up from then on.
    Then a second: the first wait for a job posted while subscribed, after which
    the client's posts are marked waited for (the finish sends their records)."""
    for message in ("first", "second"):
        job_id = mlq.post(message)
        assert worker.step(1)
        assert mlq.wait(job_id, 10)["result"] == message
    return job_id


def test_a_wait_for_a_job_its_client_posted_sends_nothing(
        q: MLQ, poster: MLQ, worker: Worker, no_rereads: None) -> None:
    _subscribed(poster, worker)
    for message in ("ended before its wait", "ended during its wait"):
        job_id = poster.post(message)
        sent = _commands_of(q, "poster")
        if message == "ended before its wait":
            assert worker.step(1)
            record = poster.wait(job_id, 10)
        else:
            waited: list[dict[str, Any]] = []
            waiter = threading.Thread(target=lambda: waited.append(poster.wait(job_id, 10)))
            waiter.start()
            wait_until(lambda: dispatcher(poster.client, poster.keys).listeners() == 1, 10,
                       "the wait to listen", interval=0.005)
            assert worker.step(1)
            waiter.join(10)
            (record,) = waited
        assert (record["id"], record["status"], record["result"]) == (job_id, "completed",
                                                                      message)
        assert record == q.get_job(job_id)
        # no first look, and the finish sent the record along with its event
        assert _commands_of(q, "poster") == sent


def test_a_second_wait_for_the_same_job_looks_first(
        q: MLQ, worker: Worker, no_rereads: None) -> None:
    _subscribed(q, worker)
    job_id = q.post("twice")
    assert worker.step(1)
    assert q.wait(job_id, 10)["result"] == "twice"
    # the first wait took the job's kept event: the second must read the state
    assert _wait_at_once(q, job_id)["result"] == "twice"


@pytest.mark.parametrize("limit", [("RECENT_KEPT", 4), ("RECENT_BYTES", 1)])
def test_a_wait_looks_first_when_the_kept_events_ran_out(
        q: MLQ, poster: MLQ, worker: Worker, no_rereads: None,
        monkeypatch: pytest.MonkeyPatch, limit: tuple[str, int]) -> None:
    monkeypatch.setattr(recent, *limit)
    _subscribed(poster, worker)
    shared = dispatcher(poster.client, poster.keys)
    mark = shared.mark()
    job_id = poster.post("early")
    for n in range(6):
        poster.post(n)
    while worker.step(0.1):
        pass
    # read while nobody waited (the tender), and dropped past the post's mark
    wait_until(lambda: shared._recent.lost_upto > mark[1], 10, "the kept events to run out")
    sent = _commands_of(q, "poster")
    # the later jobs' events pushed this one's out of the few kept: it reads first
    assert _wait_at_once(poster, job_id)["result"] == "early"
    assert _commands_of(q, "poster") > sent


def test_a_wait_looks_first_when_the_subscription_was_made_again_since_the_post(
        q: MLQ, worker: Worker, no_rereads: None) -> None:
    first = _subscribed(q, worker)
    shared = dispatcher(q.client, q.keys)
    connects = shared._pubsub.connects
    job_id = q.post("during the outage")
    end_as_subscriptions_drop(q, job_id, like=first)
    # (and the reader has heard it, telling the listeners of then to look again)
    wait_until(lambda: shared._pubsub is not None and shared._connects > connects, 10,
               "the subscription to be made again")
    record = _wait_at_once(q, job_id)
    assert (record["id"], record["status"]) == (job_id, "completed")


def test_a_wait_after_a_requeue_is_not_handed_the_outcome_before_it(
        q: MLQ, no_rereads: None) -> None:
    outcomes = iter([RuntimeError("first attempt fails"), "second attempt works"])

    def flaky(msg: Any, *args: Any) -> str:
        outcome = next(outcomes) if msg == "flaky" else msg
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    worker = Worker(q, "w1", local_listeners={"flaky": flaky})
    _subscribed(q, worker)
    job_id = q.post("flaky")  # its failure is kept for the wait to come
    assert worker.step(1)
    assert q.requeue_dead(job_id) == 1
    # the requeue's event has come, after the failure's (not still on its way)
    shared, channel = dispatcher(q.client, q.keys), q.keys.job_channel(job_id).encode()
    kept = shared._recent.by_channel
    wait_until(lambda: channel in kept and unpack(kept[channel][-1][1])[1] == b"queued", 10,
               "the requeue's event")
    waited: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: waited.append(q.wait(job_id, 60)), daemon=True)
    waiter.start()
    wait_until(lambda: dispatcher(q.client, q.keys).listeners() == 1, 10,
               "the wait to listen", interval=0.005)
    assert worker.step(1)
    waiter.join(20)
    assert waited and (waited[0]["status"], waited[0]["result"]) == ("completed",
                                                                     "second attempt works")


def test_a_wait_is_handed_an_outcome_that_another_reader_heard_first(
        q: MLQ, worker: Worker, no_rereads: None) -> None:
    _subscribed(q, worker)
    job_id = q.post("watched")
    # an event stream of the same process follows the job to its end, before the wait
    states: list[str] = []
    watcher = threading.Thread(target=lambda: states.extend(
        state["status"] for state in q.watch(job_id, keepalive=60) if state is not None))
    watcher.start()
    wait_until(lambda: dispatcher(q.client, q.keys).listeners() == 1, 10,
               "the stream to listen", interval=0.005)
    assert worker.step(1)
    watcher.join(10)
    assert states and states[-1] == "completed"
    assert _wait_at_once(q, job_id)["result"] == "watched"
