"""Operations routes: /healthz, /metrics (Prometheus), /openapi.json."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import redis
from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from mlq.errors import REDIS_DOWN
from mlq.job import RUNTIME_BUCKETS
from mlq.metrics import WAIT_BUCKETS, Labelled, live_workers_by_queue, unserved
from mlq.queue import MLQ

from . import openapi
from .helpers import ServerState, current_state, json_response, text_response

bp = Blueprint("ops", __name__)

#: /healthz answers within this many seconds even when Redis hangs (SPEC §7 says 2 s).
HEALTH_DEADLINE = 1.5

_COUNTERS = (
    ("posted", "Jobs posted."),
    ("completed", "Jobs completed."),
    ("failed", "Jobs failed."),
    ("requeued", "Jobs put back in their queue by the reaper or from the dead letters."),
    ("cancelled", "Jobs cancelled."),
    ("expired", "Jobs not started by their deadline (post option expires)."),
    ("retried", "Attempts that raised and were scheduled to run again (post option retries)."),
)


@bp.get("/healthz")
def healthz() -> Response:
    """``ok`` while Redis answers; 503 JSON (within 2 s) while it does not."""
    ping_within(current_state().mlq, HEALTH_DEADLINE)
    return text_response("ok")


def ping_within(mlq: MLQ, deadline: float) -> None:
    """PING Redis; redis.TimeoutError when no answer comes within `deadline` seconds.

    The client's own timeouts and retries can add up to several seconds, so the
    ping runs in a thread (a greenlet under gevent) and we stop waiting for it.
    """
    outcome: dict[str, Exception | bool] = {}

    def ping() -> None:
        try:
            outcome["ok"] = mlq.ping()
        except Exception as exc:  # noqa: BLE001 (any failure is re-raised in the request)
            outcome["error"] = exc

    thread = threading.Thread(target=ping, name="mlq-healthz", daemon=True)
    thread.start()
    thread.join(deadline)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    if "ok" not in outcome:
        raise redis.TimeoutError(f"no answer from Redis within {deadline} s")


# -- metrics ----------------------------------------------------------------------
#: A scrape of a Redis that does not answer gives up on it this soon (Prometheus'
#: default scrape timeout is 10 s) and reports mlq_redis_up 0.
SCRAPE_DEADLINE = 1.5

_QUEUE_LABELS = ["namespace", "queue"]
_FUNCTION_LABELS = ["namespace", "queue", "function"]


class StatsCollector(Collector):
    """Reads `mlq.stats()` on each scrape: every server instance reports the same numbers."""

    def __init__(self, mlq: MLQ) -> None:
        self.mlq = mlq

    def collect(self) -> Iterable[Metric]:
        ns = self.mlq.namespace
        up = "Whether this server could read Redis for this scrape (0: the rest is missing)."
        try:  # everything is read before anything is yielded: a scrape is whole or says 0
            ping_within(self.mlq, SCRAPE_DEADLINE)
            stats = self.mlq.stats()
            labelled = self.mlq.listing.labelled_metrics()
            live = live_workers_by_queue(self.mlq.workers())
        except REDIS_DOWN:
            yield _gauge("mlq_redis_up", up, ns, 0)
            return
        yield _gauge("mlq_redis_up", up, ns, 1)
        yield from _totals(ns, stats)
        yield from _by_function(ns, labelled)
        yield from _by_queue(ns, stats["waiting_by_queue"], labelled, live)


def _totals(ns: str, stats: dict[str, Any]) -> Iterable[Metric]:
    """The namespace's totals, labelled by namespace alone (queue for the waiting)."""
    for key, doc in _COUNTERS:
        counter = CounterMetricFamily(f"mlq_jobs_{key}", doc, labels=["namespace"])
        counter.add_metric([ns], stats[key])
        yield counter
    waiting = GaugeMetricFamily("mlq_jobs_waiting", "Jobs waiting to be taken.",
                                labels=_QUEUE_LABELS)
    for queue, count in stats["waiting_by_queue"].items():
        waiting.add_metric([ns, queue], count)
    yield waiting
    yield _gauge("mlq_jobs_processing", "Jobs being run by a worker.", ns, stats["processing"])
    yield _gauge("mlq_jobs_dead", "Jobs in the dead-letter queue.", ns, stats["dead"])
    yield _gauge("mlq_jobs_scheduled", "Jobs waiting for their time (a delay or a retry).",
                 ns, stats["scheduled"])
    yield _gauge("mlq_jobs_deferred", "Jobs waiting for their dependencies.", ns,
                 stats["deferred"])
    runtime = HistogramMetricFamily("mlq_job_runtime_seconds", "Run time of finished jobs.",
                                    labels=["namespace"])
    runtime.add_metric([ns], _cumulative(stats["runtime_buckets"]),
                       sum_value=stats["runtime_sum"])
    yield runtime


def _by_function(ns: str, labelled: Labelled) -> Iterable[Metric]:
    """Counters and run times by queue and function (past metrics.FUNCTIONS_KEPT
    names, new ones are counted as 'other')."""
    completed = CounterMetricFamily("mlq_queue_jobs_completed", "Jobs completed, by queue and "
                                    "function.", labels=_FUNCTION_LABELS)
    for (queue, function), count in sorted(labelled.completed.items()):
        completed.add_metric([ns, queue, function], count)
    yield completed
    failed = CounterMetricFamily("mlq_queue_jobs_failed", "Jobs failed, by queue, function "
                                 "and error kind.", labels=[*_FUNCTION_LABELS, "error_kind"])
    for (queue, function, kind), count in sorted(labelled.failed.items()):
        failed.add_metric([ns, queue, function, kind], count)
    yield failed
    runtime = HistogramMetricFamily("mlq_queue_job_runtime_seconds", "Run time of finished "
                                    "attempts, by queue and function.", labels=_FUNCTION_LABELS)
    for (queue, function), histogram in sorted(labelled.runtime.items()):
        runtime.add_metric([ns, queue, function],
                           _cumulative(histogram.buckets(RUNTIME_BUCKETS)),
                           sum_value=histogram.total)
    yield runtime


def _by_queue(ns: str, waiting: dict[str, int], labelled: Labelled,
              live: dict[str, int]) -> Iterable[Metric]:
    """Wait times, live workers and unserved queues, by queue."""
    wait = HistogramMetricFamily("mlq_queue_job_wait_seconds", "Time from a job's post to "
                                 "the start of its finished attempts.", labels=_QUEUE_LABELS)
    for queue, histogram in sorted(labelled.wait.items()):
        wait.add_metric([ns, queue], _cumulative(histogram.buckets(WAIT_BUCKETS)),
                        sum_value=histogram.total)
    yield wait
    workers = GaugeMetricFamily("mlq_queue_live_workers", "Workers with a live heartbeat "
                                "that take from the queue.", labels=_QUEUE_LABELS)
    flagged = GaugeMetricFamily("mlq_queue_unserved", "1 while the queue has waiting jobs "
                                "and no live worker takes from it.", labels=_QUEUE_LABELS)
    alone = unserved(waiting, live)
    for queue in sorted(set(waiting) | set(live)):
        workers.add_metric([ns, queue], live.get(queue, 0))
        flagged.add_metric([ns, queue], alone.get(queue, 0))
    yield workers
    yield flagged


def _gauge(name: str, doc: str, namespace: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc, labels=["namespace"])
    gauge.add_metric([namespace], value)
    return gauge


def _cumulative(buckets: list[tuple[float, int]]) -> list[tuple[str, float]]:
    """Prometheus buckets are cumulative; Redis keeps one count per bucket."""
    cumulative: list[tuple[str, float]] = []
    running = 0
    for bound, count in sorted(buckets):
        running += count
        cumulative.append((floatToGoString(bound), running))
    if not cumulative or cumulative[-1][0] != "+Inf":
        cumulative.append(("+Inf", running))
    return cumulative


def _registry(state: ServerState) -> CollectorRegistry:
    registry = state.extras.get("metrics")
    if registry is None:
        # auto_describe off: registering must not scrape Redis
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatsCollector(state.mlq))
        state.extras["metrics"] = registry
    return registry  # type: ignore[no-any-return]


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition of the namespace's counters, gauges and run times."""
    body = generate_latest(_registry(current_state()))
    return Response(body, content_type=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 description of every route."""
    document: dict[str, Any] = openapi.document()
    return json_response(document)
