"""/healthz, /metrics, /openapi.json, size limits and error shapes on a real gevent server."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from controller import openapi
from controller.app import create_app
from mlq import MLQ
from mlq.embedded import free_port

from .conftest import JSON, SMALL_BODY, ServerProcess


def slow(msg: Any, *args: Any) -> Any:
    if msg == "fail":
        raise RuntimeError("failing on purpose")
    return msg


LISTENERS = [slow]


# -- health ---------------------------------------------------------------------------
def test_healthz_ok(server: ServerProcess) -> None:
    response = server.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok")


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_healthz_is_503_within_2s_while_redis_is_unreachable(
        tmp_path: Any, silent_redis: str, kind: str) -> None:
    url = silent_redis if kind == "silent" else f"redis://127.0.0.1:{free_port()}/0"
    dead = ServerProcess(namespace="dead", redis_url=url, log_path=tmp_path / "log").start()
    try:
        started = time.monotonic()
        response = dead.get("/healthz")
        assert time.monotonic() - started < 2.0
        assert response.status_code == 503
        assert "Redis" in response.json()["error"]
        if kind == "refused":  # other routes say the same, as JSON, never 500
            assert dead.get("/jobs/count").status_code == 503
    finally:
        assert dead.stop() == 0


# -- metrics ----------------------------------------------------------------------------
def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_follow_the_jobs(server: ServerProcess, worker: MLQ) -> None:
    ns = (("namespace", server.namespace),)
    before = scrape(server)
    ok = server.post_job("hello")
    bad = server.post_job("fail")
    server.post_job("waits", queue="metrics-held")
    worker.wait(ok, timeout=10)
    worker.wait(bad, timeout=10)
    after = scrape(server)

    def grew(name: str, labels: tuple[tuple[str, str], ...] = ns) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    assert grew("mlq_jobs_posted_total") == 3
    assert grew("mlq_jobs_completed_total") == 1
    assert grew("mlq_jobs_failed_total") == 1
    assert after[("mlq_jobs_waiting", (("namespace", server.namespace), ("queue", "metrics-held")))] == 1
    assert grew("mlq_jobs_dead") == 1
    assert ("mlq_jobs_processing", ns) in after and ("mlq_jobs_requeued_total", ns) in after
    assert grew("mlq_job_runtime_seconds_count") == 2
    inf = (("le", "+Inf"),) + ns  # labels are sorted by name
    assert after[("mlq_job_runtime_seconds_bucket", inf)] == after[("mlq_job_runtime_seconds_count", ns)]
    buckets = sorted((float(dict(labels)["le"]), value) for (name, labels), value in after.items()
                     if name == "mlq_job_runtime_seconds_bucket")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative


# -- OpenAPI ----------------------------------------------------------------------------
def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_openapi_covers_every_route_and_validates(server: ServerProcess) -> None:
    document = server.get("/openapi.json").json()
    assert document == openapi.document()
    validate(document)
    app = create_app(MLQ("unused", redis_url="redis://127.0.0.1:1/0"))
    rules = list(app.url_map.iter_rules())
    assert len(rules) >= 17
    for rule in rules:
        path = _openapi_path(rule.rule)
        assert path in document["paths"], f"{rule.rule} is not documented"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"][path], f"{method} {rule.rule} is not documented"
    documented = {(p, m) for p, ops in document["paths"].items() for m in ops}
    served = {(_openapi_path(r.rule), m.lower()) for r in rules
              for m in (r.methods or set()) - {"HEAD", "OPTIONS"}}
    assert documented == served  # nothing documented that does not exist either


# -- errors, limits ---------------------------------------------------------------------
def test_unknown_routes_and_methods_are_json(server: ServerProcess) -> None:
    response = server.get("/no/such/route")
    assert response.status_code == 404 and response.json()["error"]
    response = server.request("PUT", "/jobs")
    assert response.status_code == 405 and response.json()["error"]
    assert "POST" in response.headers["Allow"]
    assert server.request("PATCH", "/deadletter").status_code == 405


def test_body_over_the_limit_is_413(server: ServerProcess) -> None:
    big = b'{"msg": "' + b"x" * SMALL_BODY + b'"}'
    response = server.post("/jobs", data=big)
    assert response.status_code == 413 and response.json()["error"]
    assert server.post("/consumer", data=big, headers=JSON).status_code == 413


def test_chunked_body_over_the_limit_is_413(server: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"msg": "'
        for _ in range(SMALL_BODY // 16384 + 2):
            yield b"x" * 16384
        yield b'"}'

    response = server.post("/jobs", data=chunks())
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 413 and response.json()["error"]


def test_chunked_body_under_the_limit_is_read(server: ServerProcess) -> None:
    response = server.post("/jobs", data=iter([b'{"msg": ', b'"chunked", ', b'"queue": "held"}']))
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 200
    assert server.get(f"/jobs/{response.text}").json()["msg"] == "chunked"


ODD_REQUESTS = [
    ("GET", "/jobs/" + "9" * 30), ("GET", "/jobs/%00"), ("GET", "/jobs/1%0A2/result"),
    ("GET", "/jobs/1/result.%22%0D%0Ax"), ("GET", "/jobs/1/link?ttl=%FF"),
    ("GET", "/jobs/1/result?expires=%FF&sig=%FF"), ("GET", "/jobs/1/result?sig=" + "é" * 64),
    ("POST", "/deadletter/%FF/requeue"), ("DELETE", "/deadletter/abc"),
    ("DELETE", "/consumer?name="), ("GET", "/jobs/count?queue=%00"), ("POST", "/consumer"),
    ("GET", "/" + "a" * 5000), ("OPTIONS", "/jobs"),
]


@pytest.mark.parametrize(("method", "path"), ODD_REQUESTS)
def test_odd_requests_never_give_500(server: ServerProcess, method: str, path: str) -> None:
    response = server.request(method, path, data=b"\xff\x00{")
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]


def test_sigterm_stops_the_server_cleanly_even_with_open_streams(tmp_path: Any, redis_url: str,
                                                                 http_namespace: str) -> None:
    other = ServerProcess(namespace=http_namespace, redis_url=redis_url,
                          log_path=tmp_path / "log").start()
    job_id = other.post_job("x", queue="held")
    with other.get(f"/jobs/{job_id}/events", stream=True) as stream:
        next(stream.iter_lines(chunk_size=None))  # type: ignore[call-overload]
        started = time.monotonic()
        assert other.stop() == 0
    assert time.monotonic() - started < 5
    with pytest.raises(requests.ConnectionError):
        requests.get(other.url + "/healthz", timeout=2)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_many_event_streams_take_greenlets_not_threads(server: ServerProcess) -> None:
    job_id = server.post_job("x", queue="held")  # never taken: every stream stays open
    streams = []
    try:
        for _ in range(120):  # past redis-py 8's default pool cap of 100 connections
            response = server.get(f"/jobs/{job_id}/events", stream=True)
            assert response.status_code == 200, response.text
            first = next(response.iter_lines(chunk_size=None))  # type: ignore[call-overload]
            assert first == b"event: queued", first  # live, not "event: error"
            streams.append(response)
        started = time.monotonic()
        assert server.get("/healthz").text == "ok"
        assert time.monotonic() - started < 1
        assert server.process is not None
        status = Path(f"/proc/{server.process.pid}/status").read_text()
        found = re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE)
        assert found is not None and int(found.group(1)) < 10
    finally:
        for response in streams:
            response.close()
