"""wait() reuses its subscriber connections: what one wait left unread must never
pass for the next wait's news."""

from __future__ import annotations

import threading
import time
from typing import Any

from mlq import MLQ, events
from mlq.serialization import pack
from mlq.worker import Worker


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
    channel = q.keys.job_channel(job_id)
    with events._subscribed(q.client, channel):
        q.client.publish(channel, pack([job_id, "failed", -1]))
        time.sleep(0.1)
    assert q.requeue_dead(job_id) == 1
    later = threading.Timer(0.3, lambda: worker.step(1))
    later.start()
    try:
        record = q.wait(job_id, 10)
    finally:
        later.join()
    assert (record["status"], record["result"]) == ("completed", "second attempt works")
