"""Runs the scenarios of one system, inside that system's virtual environment.

Usage (the harness calls it): python drive.py CONFIG.json
CONFIG names the peer module (`rq_bench`, ...), the Redis URL, the job counts and
the scenarios; the results go, as JSON, to the file CONFIG names in "out".
Every scenario starts from an empty Redis (FLUSHALL), so none sees another's keys.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from common import (
    DONE_DIR_ENV,
    REDIS_URL_ENV,
    DoneCounter,
    RedisSnapshot,
    Resp,
    Workers,
    cpu_seconds,
    percentile,
    process_tree,
)
from peer import Peer

#: Round trips before the timed ones: the first waits for the worker to boot.
WARMUP_ROUND_TRIPS = 20
#: The steady-state window of a drain opens once this share of the jobs is done
#: (and every worker process has run a job): start-up, 0.3-2 s depending on the
#: system, would otherwise swamp the throughput of a few thousand no-op jobs.
WINDOW_OPENS_AT = 0.05
POLL = 0.005  # seconds between reads of the done files (a scandir: ~20 µs)


@dataclass
class Mark:
    at: float
    done: int
    redis: RedisSnapshot
    cpu: float


class Driver:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.url: str = config["redis_url"]
        self.jobs: int = config["jobs"]
        self.workdir: str = config["workdir"]
        self.resp = Resp(self.url)
        os.environ[REDIS_URL_ENV] = self.url  # peers that configure at import time read it
        module = importlib.import_module(config["module"])
        self.module = module
        self.peer: Peer = module.Bench(self.url)
        self.env = dict(os.environ, **{REDIS_URL_ENV: self.url,
                                       DONE_DIR_ENV: os.path.join(self.workdir, "done")})

    # -- scenarios ----------------------------------------------------------
    def enqueue(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.peer.enqueue(self.jobs)
        return {"rate": self.jobs / (time.perf_counter() - started)}

    def bulk(self) -> dict[str, Any]:
        if not self.peer.bulk_api:
            return {"rate": None, "note": "no bulk enqueue API"}
        started = time.perf_counter()
        self.peer.bulk(self.jobs)
        return {"rate": self.jobs / (time.perf_counter() - started), "api": self.peer.bulk_api}

    def drain(self, workers: int) -> dict[str, Any]:
        n = self.jobs
        filled = time.perf_counter()
        self.peer.fill(n)
        fill_s = time.perf_counter() - filled
        counter = DoneCounter(self.env[DONE_DIR_ENV])
        started = time.perf_counter()
        origin = Mark(started, 0, RedisSnapshot.take(self.resp), 0.0)
        procs = Workers(self.peer.worker_commands(workers), self.env,
                        os.path.join(self.workdir, f"workers-drain{workers}.log"))
        first: Mark | None = None
        first_done_at: float | None = None
        try:
            while True:
                done, active = counter.count()
                now = time.perf_counter()
                if done and first_done_at is None:
                    first_done_at = now
                if first is None and done >= n * WINDOW_OPENS_AT and active >= workers and done < n:
                    first = self._mark(now, done, procs)
                if done >= n:
                    last = self._mark(now, done, procs)
                    break
                self._check(procs, now - started, f"{done}/{n} jobs done")
                time.sleep(POLL)
        finally:
            procs.stop()
        window = first or origin  # a drain too quick to open the window counts from the start
        jobs = last.done - window.done
        seconds = last.at - window.at
        return {
            "rate": jobs / seconds,
            "rate_with_startup": n / (last.at - started),
            "startup_s": (first_done_at or last.at) - started,
            "window": "steady" if first else "from start",
            "window_jobs": jobs,
            "commands_per_job": (last.redis.commands - window.redis.commands) / jobs,
            "scripts_per_job": (last.redis.scripts - window.redis.scripts) / jobs,
            "worker_cpu_us": (last.cpu - window.cpu) / jobs * 1e6,
            "redis_cpu_us": (last.redis.cpu - window.redis.cpu) / jobs * 1e6,
            "fill_s": fill_s,
        }

    def latency(self) -> dict[str, Any]:
        procs = Workers(self.peer.worker_commands(1), self.env,
                        os.path.join(self.workdir, "workers-latency.log"))
        try:
            self.peer.round_trips(WARMUP_ROUND_TRIPS, timeout=self.config["startup_timeout"])
            before = RedisSnapshot.take(self.resp)
            samples = self.peer.round_trips(self.config["round_trips"], timeout=10.0)
            after = RedisSnapshot.take(self.resp)
            if procs.any_exited():
                raise RuntimeError("the worker exited during the latency run")
        finally:
            procs.stop()
        return {"p50_ms": percentile(samples, 50) * 1e3, "p99_ms": percentile(samples, 99) * 1e3,
                "mean_ms": sum(samples) / len(samples) * 1e3, "round_trips": len(samples),
                # the whole system's: the poster's and the worker's, idle polling included
                "commands_per_round_trip": (after.commands - before.commands) / len(samples)}

    # -- helpers --------------------------------------------------------------
    def _mark(self, now: float, done: int, procs: Workers) -> Mark:
        return Mark(now, done, RedisSnapshot.take(self.resp), cpu_seconds(process_tree(procs.pids)))

    def _check(self, procs: Workers, elapsed: float, progress: str) -> None:
        if elapsed > self.config["drain_timeout"]:
            raise TimeoutError(f"drain not finished after {elapsed:.0f} s: {progress}")
        if procs.any_exited():
            raise RuntimeError(f"a worker process exited: {progress}")

    def run(self) -> dict[str, Any]:
        scenarios: dict[str, Callable[[], dict[str, Any]]] = {
            "enqueue": self.enqueue, "bulk": self.bulk,
            "drain1": lambda: self.drain(1), "drain2": lambda: self.drain(2),
            "latency": self.latency,
        }
        results: dict[str, Any] = {"versions": self.module.versions()}
        for name in self.config["scenarios"]:
            self.resp.command("FLUSHALL")
            try:
                results[name] = scenarios[name]()
            except Exception:  # one failing scenario must not hide the others
                results[name] = {"error": traceback.format_exc(limit=3)}
        self.resp.command("FLUSHALL")
        self.peer.close()
        return results


def main() -> None:
    with open(sys.argv[1]) as handle:
        config = json.load(handle)
    os.makedirs(config["workdir"], exist_ok=True)
    results = Driver(config).run()
    with open(config["out"], "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main()
