#!/usr/bin/env python
"""Streamed output: how soon a chunk a listener yields reaches its reader.

    python benchmarks/streaming.py                  # updates its section of docs/benchmarks.md
    python benchmarks/streaming.py --jobs 5 --docs ''

A worker process (`controller consumer`) runs a generator listener that yields
its chunks `--gap` ms apart, each chunk the wall-clock time just before it is
yielded. Readers in this process follow each job from before it starts, and take
each chunk's delay as the time it arrived minus the time it carries (one
machine, one clock):

- the library: `MLQ.stream(job_id)`;
- HTTP: `GET /jobs/<id>/stream` of a `controller server` process (SSE), read with
  requests.

The first chunk of each job is reported apart (time to first chunk), and the
delays of all chunks as p50 and p99. Goal: the first chunk reaches the reader in
under 20 ms.

Everything runs on one private server (`mlq.embedded.EmbeddedServer`, loopback, a
free port, AOF off), started and stopped by this script.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_DIR)]

import requests  # noqa: E402

from benchmarks.harness import procs  # noqa: E402
from benchmarks.harness.standalone import measure_on_private_redis, write_section  # noqa: E402
from mlq import MLQ  # noqa: E402
from mlq.embedded import free_port  # noqa: E402

NAMESPACE = "bench_streaming"
GOAL_FIRST_MS = 20.0


def chunks(msg: dict[str, Any], *args: Any) -> Iterator[float]:
    """The benchmark's listener: `msg['n']` chunks, `msg['gap']` s apart, each the
    time it is yielded."""
    for _ in range(msg["n"]):
        time.sleep(msg["gap"])
        yield time.time()


def start(url: str, workdir: Path, *args: str) -> procs.Group:
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    with open(workdir / f"{args[0]}.log", "wb") as log:  # the child keeps its own copy
        return procs.Group([sys.executable, "-m", "controller", *args, "--redis_url", url,
                            "--namespace", NAMESPACE], env, log, cwd=str(REPO_DIR))


def delays_from_library(q: MLQ, job_id: str) -> list[float]:
    return [time.time() - sent for _, sent in q.stream(job_id)]


def delays_over_http(base: str, job_id: str) -> list[float]:
    delays = []
    with requests.get(f"{base}/jobs/{job_id}/stream", stream=True, timeout=30) as response:
        for line in response.iter_lines(chunk_size=None):
            if line.startswith(b"data: ") and b"status" not in line:
                delays.append(time.time() - json.loads(line[6:]))
    return delays


def follow(q: MLQ, read: Any, target: str, options: argparse.Namespace) -> list[list[float]]:
    """Each job's delays, its reader listening before the job is posted."""
    runs = []
    for _ in range(options.jobs):
        job_id = q.post({"n": options.chunks, "gap": options.gap / 1000}, queue="stream",
                        functions=["chunks"], delay=0.2)  # the reader is there first
        delays: list[float] = []
        reader = threading.Thread(target=lambda: delays.extend(read(target, job_id)))
        reader.start()
        reader.join(60)
        if len(delays) != options.chunks:
            raise RuntimeError(f"job {job_id}: {len(delays)} of {options.chunks} chunks read")
        runs.append(delays)
    return runs


def summary(name: str, runs: list[list[float]]) -> str:
    first = [run[0] * 1000 for run in runs]
    every = sorted(delay * 1000 for run in runs for delay in run)
    p99 = every[min(len(every) - 1, int(len(every) * 0.99))]
    return (f"| {name} | {statistics.median(first):.2f} | {max(first):.2f} | "
            f"{statistics.median(every):.2f} | {p99:.2f} | {len(every):,} |")


def measure(options: argparse.Namespace, url: str, workdir: Path) -> list[str]:
    port = free_port()
    start(url, workdir, "consumer", "--import", "benchmarks.streaming:chunks",
          "--queues", "stream")
    start(url, workdir, "server", "--server_port", str(port))
    q = MLQ(NAMESPACE, redis_url=url)
    base = f"http://127.0.0.1:{port}"
    _wait_ready(q, base)
    rows = [summary("library: MLQ.stream", follow(q, lambda t, i: delays_from_library(q, i),
                                                  "", options)),
            summary("HTTP: GET /jobs/<id>/stream", follow(q, delays_over_http, base, options))]
    q.close()
    first = max(float(row.split("|")[2]) for row in rows)
    return [f"2 CPU cores, {time.strftime('%Y-%m-%d')}, {options.jobs} jobs of "
            f"{options.chunks} chunks, {options.gap:.0f} ms apart:", "",
            "| reader | first chunk, median ms | first chunk, worst ms | every chunk, p50 ms "
            "| every chunk, p99 ms | chunks |", "|---|---:|---:|---:|---:|---:|", *rows, "",
            f"First chunk under {GOAL_FIRST_MS:.0f} ms: "
            f"{'met' if first < GOAL_FIRST_MS else '**not met**'} (median, slower reader: "
            f"{first:.2f} ms)."]


def _wait_ready(q: MLQ, base: str, timeout: float = 60.0) -> None:
    # processes starting up give no event to await: poll them
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/healthz", timeout=2).ok and q.workers():
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the worker or the server did not start")


SECTION = """## Streamed output

`python benchmarks/streaming.py`: how soon a chunk a generator listener yields
reaches a reader following the job, through the library (`MLQ.stream`) and over
HTTP (`GET /jobs/<id>/stream`, server-sent events from a `controller server`
process). Each chunk carries the time it was yielded; its delay is the time it
arrived minus that (one machine, one clock).

{figures}

A chunk is appended to the job's Redis Stream with a notice on the job's chunk
channel, in one round trip; readers listen through their process's one shared
subscription and read the stream from where they are on each notice.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs per reader")
    parser.add_argument("--chunks", type=int, default=50, help="chunks per job")
    parser.add_argument("--gap", type=float, default=5.0, help="ms between chunks")
    parser.add_argument("--docs", default=str(REPO_DIR / "docs"),
                        help="folder of the benchmarks.md to update ('' for none)")
    options = parser.parse_args()
    lines = measure_on_private_redis(
        "streaming", lambda url, workdir: measure(options, url, workdir))
    write_section(options.docs, "streaming", SECTION.format(figures="\n".join(lines)))

if __name__ == "__main__":
    main()
