"""/metrics' labelled series (queue, function, error kind), wait times, live workers
per queue, unserved queues, and mlq_redis_up: read with prometheus-client's own
parser from a real server, or from the same collector in process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from controller.ops import StatsCollector
from mlq import MLQ
from mlq.embedded import free_port
from mlq.heartbeat import beat
from mlq.metrics import FUNCTIONS_KEPT, OTHER
from mlq.worker import Worker

from .conftest import ServerProcess

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    """Sample name -> [(labels without the namespace, value)]."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "namespace"}
            samples.setdefault(sample.name, []).append((labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of `name` with exactly these labels."""
    found = [v for got, v in samples.get(name, []) if got == labels]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def in_process(q: MLQ) -> Samples:
    """The exposition a server of q's namespace would answer."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(q))
    return parse(generate_latest(registry).decode())


def ok(msg: Any, *args: Any) -> Any:
    return msg


def broken(msg: Any, *args: Any) -> Any:
    raise (MemoryError if msg == "oom" else RuntimeError)("failing on purpose")


def drain(worker: Worker) -> None:
    """Run the worker's jobs one step at a time until none is left."""
    for _ in range(1000):
        if not worker.step(0):
            return
    raise AssertionError("the worker never ran out of jobs")


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory,
                   redis_url: str) -> Iterator[ServerProcess]:
    """A server of a namespace of its own: live workers and queues are exact."""
    server = ServerProcess(namespace=f"m_{uuid.uuid4().hex[:12]}", redis_url=redis_url,
                           log_path=tmp_path_factory.mktemp("metrics") / "log").start()
    yield server
    server.stop()
    MLQ(server.namespace, redis_url=redis_url).clear_all()


def test_counters_and_histograms_are_labelled_by_queue_function_and_error_kind(
        metrics_server: ServerProcess, redis_url: str) -> None:
    q = MLQ(metrics_server.namespace, redis_url=redis_url)
    jobs = [("q1", "ok", 1), ("q1", "ok", 2), ("q1", "broken", "err"), ("q2", "ok", 3),
            ("q2", "broken", "oom")]
    for queue, function, msg in jobs:
        q.post(msg, functions=[function], queue=queue)
    # the worker's clock runs 3 s ahead: every wait lands in the (2.5, 5] bucket
    worker = Worker(q, "w1", local_listeners={"ok": ok, "broken": broken},
                    queues=["q1", "q2"], clock=lambda: time.time() + 3.0)
    drain(worker)
    got = parse(metrics_server.get("/metrics").text)

    assert value(got, "mlq_redis_up") == 1
    assert value(got, "mlq_jobs_completed_total") == 3  # the totals stay as they were
    assert value(got, "mlq_queue_jobs_completed_total", queue="q1", function="ok") == 2
    assert value(got, "mlq_queue_jobs_completed_total", queue="q2", function="ok") == 1
    assert len(got["mlq_queue_jobs_completed_total"]) == 2
    assert value(got, "mlq_queue_jobs_failed_total", queue="q1", function="broken",
                 error_kind="error") == 1
    assert value(got, "mlq_queue_jobs_failed_total", queue="q2", function="broken",
                 error_kind="oom") == 1
    assert len(got["mlq_queue_jobs_failed_total"]) == 2
    for queue, function, count in (("q1", "ok", 2), ("q1", "broken", 1), ("q2", "ok", 1),
                                   ("q2", "broken", 1)):
        assert value(got, "mlq_queue_job_runtime_seconds_count", queue=queue,
                     function=function) == count
        assert value(got, "mlq_queue_job_runtime_seconds_bucket", queue=queue,
                     function=function, le="+Inf") == count
    waits = {labels["queue"]: v for labels, v in got["mlq_queue_job_wait_seconds_count"]}
    assert waits == {"q1": 3, "q2": 2} and sum(waits.values()) == len(jobs)
    for queue, count in waits.items():
        assert value(got, "mlq_queue_job_wait_seconds_bucket", queue=queue, le="2.5") == 0
        assert value(got, "mlq_queue_job_wait_seconds_bucket", queue=queue, le="5.0") == count
        assert 3.0 * count <= value(got, "mlq_queue_job_wait_seconds_sum", queue=queue) < 5 * count


def test_live_workers_per_queue_and_unserved_queues(metrics_server: ServerProcess,
                                                    redis_url: str) -> None:
    q = MLQ(metrics_server.namespace, redis_url=redis_url)
    q.post("for the gpu", queue="gpu")  # no worker takes from gpu
    q.post("for q1", queue="q1")
    beat(q.client, q.keys, {"w-both": {"queues": ["q1", "q2"]}, "w-q2": {"queues": ["q2"]},
                            "w-old": {}}, timeout=30)
    try:
        got = parse(metrics_server.get("/metrics").text)
    finally:
        q.client.delete(*[q.keys.heartbeat(w) for w in ("w-both", "w-q2", "w-old")])
    assert value(got, "mlq_queue_live_workers", queue="q1") == 1
    assert value(got, "mlq_queue_live_workers", queue="q2") == 2
    # a heartbeat that does not say its queues counts for the default queue
    assert value(got, "mlq_queue_live_workers", queue="default") == 1
    assert value(got, "mlq_queue_live_workers", queue="gpu") == 0
    assert value(got, "mlq_queue_unserved", queue="gpu") == 1
    assert value(got, "mlq_queue_unserved", queue="q1") == 0  # waiting, but served
    assert value(got, "mlq_queue_unserved", queue="q2") == 0  # served, nothing waiting
    got = parse(metrics_server.get("/metrics").text)  # the heartbeats are gone now
    assert value(got, "mlq_queue_live_workers", queue="q1") == 0
    assert value(got, "mlq_queue_unserved", queue="q1") == 1


def test_function_labels_are_capped_and_the_rest_count_as_other(q: MLQ) -> None:
    names = [f"f{i:03d}" for i in range(FUNCTIONS_KEPT + 3)]
    for name in names:
        q.post(name, functions=[name])
    q.post("again", functions=[names[0]])  # a kept name stays its own label
    worker = Worker(q, "w1", local_listeners=dict.fromkeys(names, ok))
    drain(worker)
    got = in_process(q)
    completed = {labels["function"]: v for labels, v in got["mlq_queue_jobs_completed_total"]}
    assert set(completed) == {*names[:FUNCTIONS_KEPT], OTHER}
    assert completed[OTHER] == 3 and completed[names[0]] == 2
    assert sum(completed.values()) == len(names) + 1
    runtimes = {labels["function"] for labels, _ in got["mlq_queue_job_runtime_seconds_count"]}
    assert runtimes == set(completed)


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_metrics_answer_200_with_redis_up_0_while_redis_is_down(
        tmp_path: Any, silent_redis: str, kind: str) -> None:
    url = silent_redis if kind == "silent" else f"redis://127.0.0.1:{free_port()}/0"
    down = ServerProcess(namespace="down", redis_url=url, log_path=tmp_path / "log").start()
    try:
        started = time.monotonic()
        response = down.get("/metrics")
        assert time.monotonic() - started < 3.0
        assert response.status_code == 200, response.text
        assert parse(response.text) == {"mlq_redis_up": [({}, 0.0)]}
    finally:
        assert down.stop() == 0
