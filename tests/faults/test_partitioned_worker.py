"""A worker that only looks dead: its late finish is fenced and changes nothing.

The supervisor of a consumer is frozen (SIGSTOP) while its child runs a job, so
the heartbeats stop but the listener goes on, as when a worker is cut off from
Redis for a while. The reaper takes the job back once the heartbeat expires and
another consumer runs it again. Pass: the job completes once, from the second
attempt (its result, retries 1, one `completed` count), the first attempt's late
finish is dropped, and the callback is sent once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from mlq import MLQ
from mlq.embedded import EmbeddedServer
from tests.faults.conftest import Command, Commands, Endpoint, wait_until

RUN_TIME = 4.0


def _consumer(commands: Commands, name: str, url: str) -> Command:
    return commands.start(name, "consumer", "--redis_url", url, "--namespace", "split",
                          "--import", "tests.faults.listeners:record",
                          "--heartbeat_interval", "0.3", "--heartbeat_timeout", "1.5")


@pytest.mark.timeout(60)
def test_late_finish_of_a_recovered_attempt_is_fenced(own_redis: EmbeddedServer,
                                                      commands: Commands,
                                                      tmp_path: Path) -> None:
    url = own_redis.url
    q = MLQ("split", redis_url=url)
    endpoint = Endpoint()
    log = tmp_path / "executions.log"
    try:
        first = _consumer(commands, "consumer-1", url)
        commands.start("reaper", "reaper", "--redis_url", url, "--namespace", "split",
                       "--reaper_interval", "0.3")
        job_id = q.post({"log": str(log), "sleep": RUN_TIME}, callback=f"{endpoint.base}/ok")
        wait_until(lambda: q.get_job(job_id)["status"] == "started", 60,
                   f"the job to start\n{first.output()}")
        os.kill(first.pid, signal.SIGSTOP)  # heartbeats stop; the child runs on
        frozen_at = time.time()
        try:
            second = _consumer(commands, "consumer-2", url)
            record = q.wait(job_id, timeout=30)
            # the first attempt ends meanwhile (RUN_TIME after it started) and is dropped
            wait_until(lambda: "finished late" in first.log_path.read_text(), 15,
                       f"the first attempt's late finish\n{first.output()}")
        finally:
            os.kill(first.pid, signal.SIGCONT)
        rerun_after = record["processing_started"] - frozen_at

        runs = [line.split() for line in log.read_text().splitlines()]
        assert len(runs) == 2 and {r[0] for r in runs} == {job_id}, runs
        assert record["status"] == "completed" and record["retries"] == 1, record
        assert record["result"]["pid"] == int(runs[1][1]), "the result is the second attempt's"
        assert q.get_job(job_id) == record, "the late finish changed the record"
        assert q.stats()["completed"] == 1
        calls = endpoint.wait_for("/ok", job_id, 2, timeout=2.0)
        assert len(calls) == 1, f"{len(calls)} callbacks for one job"
        for command in (first, second):
            assert command.terminate() == 0, command.output()
    finally:
        endpoint.close()
    print(f"\npartitioned worker: job run again elsewhere {rerun_after:.1f} s after the "
          f"freeze (heartbeat timeout 1.5 s); the first attempt's late finish was fenced "
          f"(record unchanged, 1 completed, 1 callback)")
