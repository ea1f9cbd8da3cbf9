"""wait() reuses its subscriber connections: what one wait left unread must never
pass for the next wait's news."""

from __future__ import annotations

import threading
from typing import Any

from mlq import MLQ, events
from mlq.serialization import pack
from mlq.worker import Worker
from tests.conftest import wait_until


def test_waiting_again_after_a_requeue_ignores_the_old_outcome(q: MLQ) -> None:
    outcomes = iter([RuntimeError("first attempt fails"), "second attempt works"])

    def flaky(msg: Any, *args: Any) -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    worker = Worker(q, "w1", local_listeners={"flaky": flaky})
    job_id = q.post("m")
    assert worker.step(1)
    assert q.wait(job_id, 5)["status"] == "failed"
    # a wait that returned from reading the record can leave the failure's event
    # unread on its connection; the next wait on that job reuses the connection
    # (the failure's event, as a finish sends it to a listener: with the record)
    channel = q.keys.job_channel(job_id)
    failed = [part for item in q.client.hgetall(q.keys.job(job_id)).items() for part in item]
    with events._subscribed(q.client, channel):
        assert q.client.publish(channel, pack([job_id, "failed", -1, failed])) == 1
    assert q.requeue_dead(job_id) == 1
    waited: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: waited.append(q.wait(job_id, 10)))
    waiter.start()
    # the job runs only once the waiter listens: it must wait for this outcome
    wait_until(lambda: q.client.pubsub_numsub(channel)[0][1] > 0, 10, "the waiter to subscribe",
               interval=0.005)
    assert worker.step(1)
    waiter.join(10)
    assert waited, "wait() did not return"
    assert (waited[0]["status"], waited[0]["result"]) == ("completed", "second attempt works")


def test_a_reused_subscriber_connection_delivers_no_earlier_message(q: MLQ) -> None:
    channel = q.keys.job_channel("1")
    with events._subscribed(q.client, channel):
        assert q.client.publish(channel, pack(["1", "failed", -1])) == 1  # never read
    with events._subscribed(q.client, channel) as pubsub:
        assert events._next_message(pubsub, channel, 0.3) is None
        assert q.client.publish(channel, pack(["1", "completed", 100])) == 1
        message = events._next_message(pubsub, channel, 5)
    assert message is not None and message["data"] == pack(["1", "completed", 100])
