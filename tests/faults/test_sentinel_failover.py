"""A Redis master SIGKILLed in the middle of a run, behind Sentinel.

One master, two replicas and three sentinels, all on loopback ports. Two
`controller consumer` processes and one `controller server` use the
`redis+sentinel://` URL; 2,000 jobs are posted, half through the Python
client and half through the server, and the master is killed after the
first 700. The run must finish with no MLQ process restarted. Posts made with
`replicas=1` (server: `--min_replicas 1`) that were acknowledged must all end
completed; a job may run twice (each execution is counted), never be lost.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
import requests

from mlq import MLQ
from mlq.embedded import free_port
from mlq.errors import REDIS_DOWN, NotReplicated
from mlq.serialization import unpack
from tests.faults.conftest import Commands, base_env, wait_for_port, wait_until
from tests.topologies import SentinelSetup

JOBS = 2_000
KILL_AFTER = 700
NAMESPACE = "failover"


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(tmp_path / "redis")
    try:
        yield setup.start()
    finally:
        setup.stop()


class Poster:
    """Posts the jobs, even through the server, odd through the library, each
    retried until acknowledged; remembers what was acknowledged."""

    def __init__(self, q: MLQ, server_url: str, log: Path, replicas: int) -> None:
        self.q = q
        self.server_url = server_url
        self.log = log
        self.replicas = replicas
        self.acknowledged: dict[int, str] = {}
        self.refused = 0  # tries answered with an error (Redis away, not replicated)
        self.http = requests.Session()

    def post(self, seq: int) -> None:
        # each job takes a little while, so that jobs queue up and run across the kill
        msg = {"log": str(self.log), "seq": seq, "sleep": 0.005}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.acknowledged[seq] = self._post_once(seq, msg)
                return
            except (*REDIS_DOWN, NotReplicated, requests.RequestException, _Refused):
                self.refused += 1
                time.sleep(0.1)  # the failover takes seconds: no need to hammer
        raise AssertionError(f"post {seq} never acknowledged")

    def _post_once(self, seq: int, msg: dict[str, Any]) -> str:
        if seq % 2:
            return self.q.post(msg, replicas=self.replicas)
        answer = self.http.post(f"{self.server_url}/jobs", timeout=10,
                                json={"msg": msg})
        if answer.status_code != 200:
            raise _Refused(answer.text)
        return answer.text.strip()


class _Refused(Exception):
    pass


def _watch_events(url: str, seen: list[str]) -> None:
    """Reads a job's event stream through the failover, noting each event."""
    with requests.get(url, stream=True, timeout=90) as stream:
        for line in stream.iter_lines(chunk_size=None):
            if line.startswith(b"event: "):
                seen.append(line[7:].decode())


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("replicas", [0, 1])
def test_master_killed_mid_run(sentinel_setup: SentinelSetup, commands: Commands,
                               tmp_path: Path, replicas: int) -> None:
    url = sentinel_setup.url
    env = base_env(MLQ_REDIS_URL=url, MLQ_NAMESPACE=NAMESPACE)
    consumers = [commands.start(f"consumer{i}", "consumer", "--import",
                                "tests.faults.listeners:record", "--concurrency", "2",
                                "--heartbeat_timeout", "5", env=env) for i in range(2)]
    port = free_port()
    server = commands.start("server", "server", "--server_port", str(port),
                            "--min_replicas", str(replicas), env=env)
    wait_for_port(port, server)

    q = MLQ(NAMESPACE, redis_url=url)
    log = tmp_path / "runs.log"
    poster = Poster(q, f"http://127.0.0.1:{port}", log, replicas)
    # a job that runs across the failover, awaited by the library and by an event stream
    held = q.post({"log": str(log), "seq": -1, "sleep": 3}, replicas=1)
    waited: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: waited.update(q.wait(held, timeout=90)))
    events: list[str] = []
    reader = threading.Thread(target=_watch_events,
                              args=(f"http://127.0.0.1:{port}/jobs/{held}/events", events))
    waiter.start()
    reader.start()

    old_master = sentinel_setup.master_port()
    for seq in range(KILL_AFTER):
        poster.post(seq)
    killed_at = time.monotonic()
    sentinel_setup.master.kill()
    for seq in range(KILL_AFTER, JOBS):
        poster.post(seq)
    failover = wait_until(lambda: sentinel_setup.master_port() != old_master, 30, "a new master")
    posting_took = time.monotonic() - killed_at

    ids = list(poster.acknowledged.values())
    statuses = _settle(q, ids)
    executions = collections.Counter(line.split()[0] for line in log.read_text().splitlines())
    lost = [i for i in ids if statuses[i] is None]
    unfinished = [i for i in ids if statuses[i] not in (None, "completed")]
    duplicated = sum(1 for i in ids if executions[i] > 1)
    print(f"\nreplicas={replicas}: {len(ids)} jobs acknowledged, {poster.refused} tries refused "
          f"during the failover; lost {len(lost)}, not completed {len(unfinished)}, "
          f"run twice {duplicated}; posting after the kill took {posting_took:.1f} s")

    waiter.join(90)
    reader.join(90)
    assert failover
    assert waited.get("status") == "completed", waited
    assert events and events[-1] == "completed", events
    assert not unfinished, (unfinished[:10], commands.outputs())
    if replicas:
        assert not lost, lost[:10]
    # every acknowledged job whose post survived ran; none ran without being posted
    assert all(executions[i] >= 1 for i in ids if statuses[i] == "completed")
    for consumer in consumers:
        assert consumer.running(), consumer.output()
        output = consumer.output(last=100_000)
        assert " ended: " not in output, output[:output.index(" ended: ")][-6000:]
    assert server.running(), server.output()


def _settle(q: MLQ, ids: list[str], timeout: float = 60.0) -> dict[str, str | None]:
    """Each job's status once none is left queued or running (None: no record),
    or when `timeout` passes."""
    def read() -> dict[str, str | None]:
        pipe = q.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(q.keys.job(job_id), "status")
        found = {}
        for job_id, raw in zip(ids, pipe.execute()):
            found[job_id] = None if raw is None else unpack(raw)
        return found

    deadline = time.monotonic() + timeout
    while True:
        try:
            statuses = read()
        except redis.RedisError:
            statuses = {}
        if statuses and all(s in (None, "completed", "failed") for s in statuses.values()):
            return statuses
        if time.monotonic() > deadline:
            return statuses or {job_id: None for job_id in ids}
        time.sleep(0.2)  # the pause between two polls
