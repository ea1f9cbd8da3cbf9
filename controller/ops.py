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
class StatsCollector(Collector):
    """Reads `mlq.stats()` on each scrape: every server instance reports the same numbers."""

    def __init__(self, mlq: MLQ) -> None:
        self.mlq = mlq

    def collect(self) -> Iterable[Metric]:
        stats = self.mlq.stats()
        ns = self.mlq.namespace
        for key, doc in _COUNTERS:
            counter = CounterMetricFamily(f"mlq_jobs_{key}", doc, labels=["namespace"])
            counter.add_metric([ns], stats[key])
            yield counter
        waiting = GaugeMetricFamily("mlq_jobs_waiting", "Jobs waiting to be taken.",
                                    labels=["namespace", "queue"])
        for queue, count in stats["waiting_by_queue"].items():
            waiting.add_metric([ns, queue], count)
        yield waiting
        yield _gauge("mlq_jobs_processing", "Jobs being run by a worker.", ns, stats["processing"])
        yield _gauge("mlq_jobs_dead", "Jobs in the dead-letter queue.", ns, stats["dead"])
        yield _gauge("mlq_jobs_scheduled", "Jobs waiting for their time (a delay or a retry).",
                     ns, stats["scheduled"])
        yield _gauge("mlq_jobs_deferred", "Jobs waiting for their dependencies.", ns,
                     stats["deferred"])
        yield _histogram(ns, stats["runtime_buckets"], stats["runtime_sum"])


def _gauge(name: str, doc: str, namespace: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc, labels=["namespace"])
    gauge.add_metric([namespace], value)
    return gauge


def _histogram(namespace: str, buckets: list[tuple[float, int]],
               total: float) -> HistogramMetricFamily:
    """Prometheus buckets are cumulative; Redis keeps one count per bucket."""
    cumulative, running = [], 0
    for bound, count in sorted(buckets):
        running += count
        cumulative.append((floatToGoString(bound), running))
    if not cumulative or cumulative[-1][0] != "+Inf":
        cumulative.append(("+Inf", running))
    histogram = HistogramMetricFamily("mlq_job_runtime_seconds", "Run time of finished jobs.",
                                      labels=["namespace"])
    histogram.add_metric([namespace], cumulative, sum_value=total)
    return histogram


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
