"""HTTP: MLQ's gevent server against a bare gevent+Flask app, same load generator,
interleaved, on the run's private Redis."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlq.embedded import free_port, port_open

from . import loadgen, procs, summary, venvs
from .venvs import BENCH_DIR, REPO_DIR

NAMESPACE = "bench-http"
BLOB_BYTES = 10 * 1024 ** 2
BLOB_SEED = 5
POST_BODY = json.dumps({"msg": {"image": "cat.jpg", "size": 224}}).encode()
POST_CONNECTIONS = 8
GET_CONNECTIONS = 2  # each answer is 10 MiB: a few connections saturate a core


def _start(args: list[str], log_path: Path) -> tuple[procs.Group, int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(venvs.MLQ_PATH), str(BENCH_DIR)]))
    with open(log_path, "ab") as log:
        group = procs.Group([sys.executable, str(BENCH_DIR / "http_apps.py"), args[0], str(port),
                             *args[1:]], env, log, cwd=str(REPO_DIR))
    deadline = time.monotonic() + 20
    while not port_open("127.0.0.1", port, 0.2):
        if group.proc.poll() is not None or time.monotonic() > deadline:
            group.stop()
            raise RuntimeError(f"{args[0]} server did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.05)
    return group, port


def _finished_blob_job(redis_url: str) -> str:
    """A completed job whose result is the same 10 MiB the bare app serves."""
    sys.path.insert(0, str(BENCH_DIR))
    from mlq.queue import MLQ
    from mlq.worker import Worker

    from http_apps import blob
    data = blob(BLOB_BYTES, BLOB_SEED)
    mlq = MLQ(NAMESPACE, redis_url=redis_url)
    job_id = mlq.post("blob")
    Worker(mlq, "bench-http-worker", local_listeners={"blob": lambda msg, ctx: data}).step(block=5)
    record = mlq.get_job(job_id)
    if record["status"] != "completed" or record["result"] != data:
        raise RuntimeError(f"the 10 MiB job did not complete: {record['status']} {record['error']}")
    return job_id


@dataclass(frozen=True)
class Case:
    title: str
    goal: float  # MLQ / bare, the speed goal
    connections: int
    targets: tuple[tuple[str, int, loadgen.Request], ...]  # (side, port, request)


def run(redis_url: str, repeats: int, seconds: float, workdir: Path,
        say: Callable[[str], None]) -> dict[str, Any]:
    try:
        from controller.app import create_app  # noqa: F401 - written by another engineer
        from controller.server import make_server  # noqa: F401
    except ImportError as exc:
        return {"error": f"controller.app/controller.server not importable yet: {exc}"}
    job_id = _finished_blob_job(redis_url)
    blob_args = [str(BLOB_BYTES), str(BLOB_SEED)]
    servers: list[procs.Group] = []
    try:
        ports = {}
        for side, args in (("mlq", ["mlq", redis_url, NAMESPACE]),
                           ("bare + LPUSH", ["lpush", redis_url]),
                           ("bare", ["bare", *blob_args]),
                           ("bare, stock", ["bare", *blob_args, "stock"])):
            group, ports[side] = _start(args, workdir / f"http-{args[0]}-{len(servers)}.log")
            servers.append(group)
        post = loadgen.Request("POST", "/jobs", POST_BODY, "application/json")
        cases = (
            Case("POST /jobs", 0.7, POST_CONNECTIONS,
                 (("mlq", ports["mlq"], post), ("bare", ports["bare"], post),
                  ("bare + LPUSH", ports["bare + LPUSH"], post),
                  ("bare, stock", ports["bare, stock"], post))),
            Case("GET /jobs/<id>/result, 10 MiB", 0.5, GET_CONNECTIONS,
                 (("mlq", ports["mlq"], loadgen.Request("GET", f"/jobs/{job_id}/result")),
                  ("bare", ports["bare"], loadgen.Request("GET", "/blob")))),
        )
        samples = _measure(cases, repeats, seconds, say)
    finally:
        for group in servers:
            group.stop()
    generator = loadgen.tool()
    return {
        "tool": generator,
        "note": (f"Load: {generator}, one thread, {POST_CONNECTIONS} keep-alive connections for "
                 f"POST, {GET_CONNECTIONS} for the 10 MiB GET, {seconds:g} s per measurement, "
                 f"{repeats} interleaved repeat(s). \"bare\": a Flask app on gevent's WSGIServer, "
                 "access log off, TCP_NODELAY set on each connection; \"bare, stock\": the same "
                 "without TCP_NODELAY (gevent's pywsgi sends headers and body in two writes, so "
                 "Nagle's algorithm holds every keep-alive response after the first until the "
                 "client's delayed ACK, ~40 ms). \"bare + LPUSH\": the bare app whose POST /jobs "
                 "pushes the body on a Redis list with one redis-py LPUSH, the least any "
                 "Redis-backed enqueue does per request. MLQ's app runs on "
                 "`controller.server.make_server` as shipped."),
        "cases": [{"title": case.title, "goal": case.goal,
                   **{side: summary.spread(samples[(case.title, side)]) for side, _, _ in case.targets}}
                  for case in cases],
    }


def _measure(cases: tuple[Case, ...], repeats: int, seconds: float,
             say: Callable[[str], None]) -> dict[tuple[str, str], list[float]]:
    samples: dict[tuple[str, str], list[float]] = {}
    for case in cases:  # warm-up: imports, Redis connections, first responses
        for _, port, request in case.targets:
            loadgen.requests_per_second(port, request, case.connections, 1)
    for repeat in range(repeats):
        for case in cases:
            for side, port, request in case.targets:
                rate = loadgen.requests_per_second(port, request, case.connections, seconds)
                samples.setdefault((case.title, side), []).append(rate)
                say(f"  http {repeat + 1}/{repeats} {case.title:30} {side:12} {rate:10,.0f} req/s")
    return samples

