"""ML workloads: load once per worker, one child per GPU, out-of-memory failures."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from typing import Any

import pytest

from mlq import MLQ, listener
from mlq.heartbeat import workers
from mlq.job import error_kind
from mlq.supervisor import Supervisor, oom_kill_count
from tests.conftest import wait_until


@pytest.fixture
def counter_env(redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch) -> str:
    counter = f"test:{namespace}:setups"
    monkeypatch.setenv("MLQ_TEST_REDIS_URL", redis_url)
    monkeypatch.setenv("MLQ_TEST_COUNTER", counter)
    return counter


def _run(supervisor: Supervisor) -> threading.Thread:
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    return thread


def test_setup_runs_once_per_worker_process(q: MLQ, redis_url: str, counter_env: str) -> None:
    supervisor = Supervisor(q.namespace, redis_url, concurrency=1,
                            imports=["tests.listeners:predict"])
    thread = _run(supervisor)
    ids = q.post_many(list(range(100)))
    assert q.wait(ids[-1], 60)["result"] == 99 * 3
    assert [q.get_job(i)["result"] for i in ids] == [n * 3 for n in range(100)]
    assert int(q.client.get(counter_env)) == 1
    supervisor.request_stop()
    thread.join(30)
    assert int(q.client.get(counter_env + ":teardown")) == 1


def test_setup_in_process_is_shared_by_threads(redis_url: str, namespace: str) -> None:
    calls: list[int] = []
    torn: list[Any] = []

    def load() -> str:
        calls.append(1)
        return "model"

    @listener(setup=load, teardown=torn.append)
    def infer(msg: int, *args: Any) -> str:
        return f"{args[0]['state']}:{msg}"

    q = MLQ(namespace, redis_url=redis_url, concurrency=3)
    q.create_listener(infer)
    ids = q.post_many(list(range(30)))
    assert q.wait(ids[-1], 20)["result"] == "model:29"
    q.shutdown(10)
    assert calls == [1] and torn == ["model"]
    q.clear_all()


def test_one_child_per_gpu(q: MLQ, redis_url: str) -> None:
    supervisor = Supervisor(q.namespace, redis_url, gpus=["0", "1"],
                            imports=["tests.listeners:which_gpu"], heartbeat_interval=0.2)
    thread = _run(supervisor)
    seen = set()
    deadline = time.monotonic() + 30
    while seen != {"0", "1"} and time.monotonic() < deadline:
        ids = q.post_many(["x"] * 20)
        seen.update(q.wait(i, 20)["result"] for i in ids)
    assert seen == {"0", "1"}
    advertised = sorted(g for w in workers(q.client, q.keys) for g in w.get("gpus", []))
    assert advertised == ["0", "1"]
    supervisor.request_stop()
    thread.join(30)


def test_memory_errors_are_marked_oom(q: MLQ) -> None:
    def greedy(msg: Any, *args: Any) -> None:
        raise MemoryError()

    def cuda(msg: Any, *args: Any) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    q.create_listener(greedy)
    q.create_listener(cuda)
    first = q.wait(q.post(1, functions=["greedy"]), 10)
    second = q.wait(q.post(1, functions=["cuda"]), 10)
    assert first["error_kind"] == "oom" and second["error_kind"] == "oom"
    assert first["status"] == "failed" and first["retries"] == 0  # not retried
    assert error_kind(ValueError("x")) == "error"


def test_oom_killed_child_fails_its_job_without_retry(q: MLQ, redis_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel's OOM killer cannot be summoned safely in a test: the cgroup
    # counter it bumps is stood in for, and the child is SIGKILLed as it would be.
    kills = itertools.count()
    monkeypatch.setattr("mlq.supervisor.oom_kill_count", lambda: next(kills))
    supervisor = Supervisor(q.namespace, redis_url, concurrency=1,
                            imports=["tests.listeners:hog"], heartbeat_interval=0.2)
    thread = _run(supervisor)
    job_id = q.post("big")
    wait_until(lambda: q.get_job(job_id)["status"] == "started", 20, "the job to start")
    pid = next(w["pid"] for w in workers(q.client, q.keys) if w["id"] == q.get_job(job_id)["worker"])
    os.kill(pid, signal.SIGKILL)
    record = q.wait(job_id, 20)
    assert record["status"] == "failed" and record["error_kind"] == "oom"
    assert "OOM killer" in record["error"] and record["retries"] == 0
    supervisor.request_stop()
    thread.join(30)


def test_oom_kill_count_reads_cgroup_events(tmp_path: Any) -> None:
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
    assert oom_kill_count(str(events)) == 2
    assert oom_kill_count(str(tmp_path / "missing")) is None

