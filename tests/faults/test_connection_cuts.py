"""Connection cuts: `CLIENT KILL TYPE normal` every 500 ms while jobs are posted and run.

Every connection of the workers, the supervisor, the reaper and the producer is
cut again and again (every fourth round the pub/sub ones too). Pass: every
posted job completes, none is dead-lettered, no worker process exits or is
replaced, and the consumer command still stops cleanly (exit 0) on SIGTERM.

A cut can drop a reply after Redis ran the command; redis-py then retries it
(test_lost_replies.py shows each case). A retried take strands a job as
'started' on a live worker, which only the reaper's job timeout recovers, so
that timeout is short here and the summary line counts such jobs.
"""

from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path

import pytest
import redis

from mlq import MLQ
from mlq.embedded import EmbeddedServer
from mlq.heartbeat import workers
from mlq.serialization import unpack
from tests.faults.conftest import Commands, wait_until

JOBS = 400
CUT_EVERY = 0.5
#: The reaper's job timeout here: far above a job's run time (10-40 ms).
STALL_TIMEOUT = 5


class Cutter:
    """Kills every normal client connection (pub/sub too on every fourth round)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.rounds = 0
        self.cut = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(CUT_EVERY):
            self.rounds += 1
            # skipme (the default) spares this connection only
            self.cut += int(self.client.client_kill_filter(_type="normal"))
            if self.rounds % 4 == 0:
                self.cut += int(self.client.client_kill_filter(_type="pubsub"))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.client.close()


@pytest.mark.timeout(90)
def test_connection_cuts_lose_nothing(own_redis: EmbeddedServer, commands: Commands,
                                      tmp_path: Path) -> None:
    url, namespace = own_redis.url, "cuts"
    q = MLQ(namespace, redis_url=url)
    consumer = commands.start(
        "consumer", "consumer", "--redis_url", url, "--namespace", namespace,
        "--concurrency", "2", "--import", "tests.faults.listeners:record",
        "--heartbeat_interval", "0.5", "--heartbeat_timeout", "5",
        # a take whose reply a cut drops leaves its job 'started' on a live worker
        # (test_lost_replies); the reaper's job timeout is what takes it back
        "--reaper", "--reaper_interval", "0.5", "--reaper_timeout", str(STALL_TIMEOUT))
    wait_until(lambda: sum(w["alive"] for w in workers(q.client, q.keys)) == 2, 60,
               f"2 workers\n{consumer.output()}")
    worker_ids = {w["id"] for w in workers(q.client, q.keys)}
    log = tmp_path / "executions.log"
    rng = random.Random()
    posted: list[str] = []
    post_errors = 0
    cutter = Cutter(url)
    try:
        started = time.monotonic()
        while len(posted) < JOBS:  # a steady flow, so posts are cut too
            try:
                posted.append(q.post({"log": str(log), "sleep": rng.uniform(0.01, 0.04)}))
            except redis.ConnectionError:
                post_errors += 1  # the client's own retries ran out: post again
            time.sleep(0.015)  # pacing the steady flow

        def all_done() -> bool:
            pipe = q.client.pipeline(transaction=False)
            for job_id in posted:
                pipe.hget(q.keys.job(job_id), "status")
            return all(unpack(s) == "completed" for s in pipe.execute())

        try:
            wait_until(all_done, 45, "every posted job to complete", interval=0.25)
        except AssertionError:
            stuck = {i: q.get_job(i)["status"] for i in posted
                     if q.get_job(i)["status"] != "completed"}
            raise AssertionError(f"not completed: {stuck}\n{consumer.output(200)}") from None
        elapsed = time.monotonic() - started
    finally:
        cutter.close()

    assert cutter.rounds >= 8 and cutter.cut > cutter.rounds, (cutter.rounds, cutter.cut)
    assert q.dead_letters() == []
    assert q.stats()["failed"] == 0
    # no worker exited: the same two worker ids, alive, and none started since
    now = workers(q.client, q.keys)
    assert {w["id"] for w in now} == worker_ids and all(w["alive"] for w in now), now
    assert consumer.running(), consumer.output()
    assert not re.search(r"worker \S+ ended", consumer.log_path.read_text()), consumer.output(200)
    counter = int(q.client.get(q.keys.counter) or 0)
    executions = len(log.read_text().splitlines())
    stalled = consumer.log_path.read_text().count("running longer than")
    assert consumer.terminate() == 0, consumer.output()
    print(f"\nconnection cuts: {JOBS} jobs in {elapsed:.1f} s, {cutter.rounds} rounds of "
          f"CLIENT KILL cut {cutter.cut} connections; all completed, 0 dead, 0 worker exits; "
          f"{post_errors} posts retried by the test, {counter - JOBS} extra job(s) created by "
          f"client retries, {stalled} job(s) stranded by a lost reply and recovered after "
          f"the {STALL_TIMEOUT} s job timeout, {executions - counter} duplicate executions")
