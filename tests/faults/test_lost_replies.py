"""A reply lost on the wire: the step ran in Redis, the client saw a dropped connection.

`CLIENT KILL` (test_connection_cuts) sometimes drops a connection after Redis ran
a command but before its reply left; redis-py then retries the command on a new
connection. These tests make that happen on purpose, once, for one command,
with a connection class that reads the reply and then reports the connection
lost — so each case is deterministic.

Such a retry runs a step twice, so each step must be safe to repeat: a take
hands over what the worker already holds, a finish recognises itself, and a
post returns the id its first run made.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mlq import MLQ
from mlq.connection import connect
from mlq.embedded import EmbeddedServer
from mlq.worker import Worker
from tests.faults import listeners

#: Each command's name in what the shared round trips send, and an EVALSHA's sha.
_COMMAND = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Z]+)\r\n(?:\$40\r\n([0-9a-f]{40})\r\n)?")
#: EVALSHA sha (or a command name) -> how many more replies to lose.
LOSE: dict[str, int] = {}
_LOCK = threading.Lock()


class LosesReplies(redis.Connection):
    """A connection that, when armed for a command, lets it run and then drops its reply.

    Only a reply that reports work done (not None, false or 0) is dropped: an empty
    take before a job arrives does not use up the loss.
    """

    _last: tuple[Any, ...] = ()
    #: the commands of what was sent packed (the shared round trips'), one per reply
    _packed: list[str] = []

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        self._last = args
        super().send_command(*args, **kwargs)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        data = b"".join(command) if isinstance(command, list) else command
        self._packed = [(sha or name).decode() for name, sha in _COMMAND.findall(data)]
        super().send_packed_command(command, check_health)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().read_response(*args, **kwargs)
        if self._packed:
            key = self._packed.pop(0)
        else:
            last = self._last
            name = str(last[0]).upper() if last else ""
            key = str(last[1]) if name == "EVALSHA" and len(last) > 1 else name
        with _LOCK:
            if response and LOSE.get(key, 0) > 0:
                LOSE[key] -= 1
                self.disconnect()
                raise redis.ConnectionError("reply lost on the wire (test)")
        return response


@pytest.fixture
def flaky(own_redis: EmbeddedServer) -> Iterator[MLQ]:
    """An MLQ whose client (MLQ's own settings, retries included) can lose replies."""
    LOSE.clear()
    mlq = MLQ("lost", client=connect(own_redis.url, connection_class=LosesReplies))
    yield mlq
    LOSE.clear()
    mlq.callbacks.close(wait=False)
    mlq.client.close()


def _sha(mlq: MLQ, step: str) -> str:
    return str(mlq.scripts._scripts[step].sha)


def _worker(mlq: MLQ) -> Worker:
    return Worker(mlq, "w-lost", local_listeners={"quick": listeners.quick})


def _held(mlq: MLQ) -> list[str]:
    return [i.decode() for i in mlq.client.lrange(mlq.keys.processing("w-lost"), 0, -1)]


@pytest.mark.timeout(30)
def test_take_reply_lost_strands_no_job(flaky: MLQ) -> None:
    first, second = flaky.post("a"), flaky.post("b")
    worker = _worker(flaky)
    LOSE[_sha(flaky, "take")] = 1
    assert worker.step(0.0)
    worker.step(0.0)  # one more go: a worker may notice a stray on its next take
    states = {i: flaky.get_job(i)["status"] for i in (first, second)}
    assert states == {first: "completed", second: "completed"}, (states, _held(flaky))


@pytest.mark.timeout(30)
def test_finish_reply_lost_still_sends_the_callback(flaky: MLQ, callback_server: Any) -> None:
    job_id = flaky.post("a", callback=callback_server.url)
    worker = _worker(flaky)
    LOSE[_sha(flaky, "finish")] = 1
    assert worker.step(0.0)
    assert flaky.get_job(job_id)["status"] == "completed"
    arrived = callback_server.wait_for(1, timeout=3)
    assert len(arrived) == 1, "the job completed but its callback was never sent"


@pytest.mark.timeout(30)
def test_post_reply_lost_creates_one_job(flaky: MLQ) -> None:
    LOSE[_sha(flaky, "post")] = 1
    job_id = flaky.post("a")
    assert LOSE[_sha(flaky, "post")] == 0  # the reply was lost, and the post sent again
    assert int(flaky.client.get(flaky.keys.counter)) == 1, f"returned {job_id}"
    assert job_id == "1" and flaky.list_jobs()[0] == 1


@pytest.mark.timeout(30)
def test_requeue_reply_lost_requeues_once(flaky: MLQ) -> None:
    """The reaper's step is safe to retry: its claim (LREM) is the fence."""
    job_id = flaky.post("a")
    flaky.scripts.take("default", "ghost", time.time())
    flaky.client.sadd(flaky.keys.workers, "ghost")
    LOSE[_sha(flaky, "requeue")] = 1
    from mlq.reaper import Reaper
    report = Reaper(flaky).reap_once()
    record = flaky.get_job(job_id)
    assert record["status"] == "queued" and record["retries"] == 1
    assert flaky.client.lrange(flaky.keys.queue(), 0, -1).count(job_id.encode()) == 1
    assert flaky.stats()["requeued"] == 1
    assert report.requeued == []  # the retry saw nothing left to do: not reported
