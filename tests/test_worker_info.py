"""What a worker's heartbeat says it serves (queues, functions, concurrency, GPUs),
and the overview's flag on a queue whose jobs no live worker takes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from controller.overview import OverviewSource, function_rows, served_queues
from mlq import MLQ
from mlq.heartbeat import beat, retire
from tests.cli.conftest import Running, base_env
from tests.conftest import wait_until


def shout(msg: Any, *args: Any) -> str:
    return str(msg).upper()


@pytest.fixture
def fresh(redis_url: str, namespace: str) -> Iterator[MLQ]:
    q = MLQ(namespace, redis_url=redis_url, heartbeat_interval=0.2)
    yield q
    q.shutdown(timeout=10)
    q.clear_all()


def _alive(q: MLQ, count: int, *names: str) -> list[dict[str, Any]] | None:
    """The live workers once there are `count` and each reports every one of `names`."""
    alive = [w for w in q.workers() if w["alive"]]
    if len(alive) == count and all(set(names) <= set(w.get("functions", ())) for w in alive):
        return alive
    return None


def test_an_in_process_consumer_reports_what_it_serves(redis_url: str, namespace: str) -> None:
    q = MLQ(namespace, redis_url=redis_url, queues=("gpu", "default"), heartbeat_interval=0.2)
    lock = threading.Lock()

    def holds_a_lock(msg: Any, *args: Any) -> Any:  # a lock cannot be pickled: local only
        with lock:
            return msg

    try:
        q.create_listener(shout, concurrency=2)
        q.create_listener(holds_a_lock)
        workers = wait_until(lambda: _alive(q, 2, "shout", "holds_a_lock"), 10,
                             "both threads report both functions")
        for worker in workers:
            assert worker["queues"] == ["gpu", "default"]
            assert worker["functions"] == ["holds_a_lock", "shout"]
            assert worker["imported"] == ["holds_a_lock"]  # registered ones every worker runs
            assert (worker["concurrency"], worker["gpus"], worker["kind"]) == (2, [], "thread")
    finally:
        q.shutdown(timeout=10)
        q.clear_all()


def test_a_supervised_consumer_reports_what_it_serves(fresh: MLQ, redis_url: str,
                                                      namespace: str) -> None:
    fresh.register_listener(shout)  # every worker of the namespace runs it too
    running = Running(("consumer", "--import", "tests.listeners:double",
                       "--import", "tests.listeners:predict", "--queues", "gpu,default",
                       "--concurrency", "2", "--gpus", "3,5", "--heartbeat_interval", "0.2",
                       "--redis_url", redis_url, "--namespace", namespace), base_env())
    try:
        workers = wait_until(lambda: _alive(fresh, 2, "double", "shout"), 20,
                             "two children reporting their imported and registered functions")
        for worker in workers:
            assert worker["kind"] == "process"
            assert worker["queues"] == ["gpu", "default"]
            assert worker["functions"] == ["double", "predict", "shout"]
            assert worker["imported"] == ["double", "predict"]
            assert worker["concurrency"] == 2
        assert sorted(worker["gpus"] for worker in workers) == [["3"], ["5"]]  # one GPU each
        assert running.stop(timeout=20) == 0
    finally:
        running.close()


def _fake_worker(q: MLQ, worker_id: str, **info: Any) -> None:
    beat(q.client, q.keys, {worker_id: {"host": "gpu1", "pid": 4242, "kind": "process",
                                        "job": None, **info}}, timeout=30)


def test_a_queue_with_waiting_jobs_and_no_worker_is_flagged(fresh: MLQ) -> None:
    source = OverviewSource(fresh, cache_seconds=0.0)
    for n in range(4):
        fresh.post(n, queue="gpu")
    fresh.post("x", queue="cpu")
    fresh.pause("cpu")
    rows = {row.name: row for row in source.get().queues}
    assert rows["gpu"].unserved and rows["gpu"].waiting == 4
    assert rows["cpu"].unserved  # paused or not, no worker would take its jobs
    _fake_worker(fresh, "gpu1:4242:s1-c1", queues=["gpu"])
    rows = {row.name: row for row in source.get().queues}
    assert not rows["gpu"].unserved and rows["cpu"].unserved
    retire(fresh.client, fresh.keys, ["gpu1:4242:s1-c1"])
    assert {row.name for row in source.get().queues if row.unserved} == {"gpu", "cpu"}


def test_a_worker_that_does_not_say_its_queues_silences_the_flag() -> None:
    # a worker of an older MLQ: it may serve any queue, so none is flagged wrongly
    assert served_queues([{"id": "a", "queues": ["gpu"]}, {"id": "b"}]) is None
    assert served_queues([{"id": "a", "queues": ["gpu", "cpu"]}]) == {"gpu", "cpu"}


def test_function_rows_list_registered_then_imported_with_their_live_workers() -> None:
    registered = [{"name": "zeta", "size": 10, "registered": 1.0},
                  {"name": "alpha", "size": 20, "registered": 2.0}]
    workers = [{"id": "w1", "alive": True, "functions": ["alpha", "train", "zeta"]},
               {"id": "w2", "alive": True, "functions": ["embed", "train"]},
               {"id": "w3", "alive": False, "functions": ["gone"]}]
    rows = function_rows(registered, workers)
    assert [(r["name"], r["in_registry"], r["workers"]) for r in rows] == [
        ("zeta", True, ["w1"]), ("alpha", True, ["w1"]), ("embed", False, ["w2"]),
        ("train", False, ["w1", "w2"])]
