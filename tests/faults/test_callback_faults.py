"""A callback endpoint that hangs, one that answers 500, and the jobs around them.

One in-process worker (callback timeout 1 s) runs a job whose callback hangs
past the timeout, a job whose callback answers 500, and five jobs right after
them whose callbacks work. Pass: every job completes at once (callbacks are off
the critical path; the next jobs wait for no callback), each failing callback
is tried 3 times, about 1 s then 3 s apart (plus the timeout for the hanging
one), and the good callbacks arrive within the callback timeout.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from mlq import MLQ
from mlq.embedded import EmbeddedServer
from tests.faults import listeners
from tests.faults.conftest import Endpoint

CALLBACK_TIMEOUT = 1.0
#: SPEC §5: 3 attempts, about 1 s then 3 s apart.
BACKOFF = (1.0, 3.0)
HANG = CALLBACK_TIMEOUT + 0.5


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint(hang=HANG)
    yield server
    server.close()


def _gaps(times: list[float]) -> list[float]:
    return [round(b - a, 2) for a, b in itertools.pairwise(times)]


@pytest.mark.timeout(60)
def test_failing_callbacks_delay_no_job(own_redis: EmbeddedServer, endpoint: Endpoint) -> None:
    q = MLQ("callbacks", redis_url=own_redis.url, callback_timeout=CALLBACK_TIMEOUT,
            heartbeat_interval=0.2, heartbeat_timeout=2)
    try:
        q.create_listener(listeners.quick)
        hang = q.post("hang", callback=f"{endpoint.base}/hang")
        fail = q.post("fail", callback=f"{endpoint.base}/fail")
        after = [q.post(n, callback=f"{endpoint.base}/ok") for n in range(5)]
        records = {i: q.wait(i, timeout=10) for i in [hang, fail, *after]}

        assert all(r["status"] == "completed" for r in records.values()), records
        first_posted = min(r["timestamp"] for r in records.values())
        last_done = max(r["processing_finished"] for r in records.values())
        assert last_done - first_posted < CALLBACK_TIMEOUT, (
            f"the jobs took {last_done - first_posted:.2f} s: a callback was in their way")

        for job_id in after:  # the good callbacks were not held up either
            arrived = endpoint.wait_for("/ok", job_id, 1, CALLBACK_TIMEOUT)
            assert len(arrived) == 1, f"callback of job {job_id} late or missing"
            assert arrived[0] - records[job_id]["processing_finished"] < CALLBACK_TIMEOUT

        # the hanging one: attempt, timeout, 1 s, attempt, timeout, 3 s, attempt
        expected = {"/hang": [CALLBACK_TIMEOUT + BACKOFF[0], CALLBACK_TIMEOUT + BACKOFF[1]],
                    "/fail": list(BACKOFF)}
        measured = {}
        for path, job_id in (("/hang", hang), ("/fail", fail)):
            times = endpoint.wait_for(path, job_id, 3, 15)
            assert len(times) == 3, f"{path}: {len(times)} attempts"
            assert times[0] - records[job_id]["processing_finished"] < 0.5
            gaps = _gaps(times)
            for gap, want in zip(gaps, expected[path]):
                assert want - 0.1 <= gap <= want + 0.75, f"{path}: gaps {gaps}, want {want}"
            measured[path] = gaps
        time.sleep(1.5)  # past when a 4th attempt would have come
        assert len(endpoint.times("/hang", hang)) == 3 and len(endpoint.times("/fail", fail)) == 3
        # a failing callback never changes the outcome
        assert q.get_job(hang)["status"] == q.get_job(fail)["status"] == "completed"
    finally:
        q.shutdown(timeout=10)
    print(f"\ncallback faults: 7 jobs done in {last_done - first_posted:.3f} s despite a "
          f"hanging and a failing callback; 3 attempts each, gaps {measured['/hang']} s "
          f"(hang, timeout {CALLBACK_TIMEOUT:g} s) and {measured['/fail']} s (500)")
