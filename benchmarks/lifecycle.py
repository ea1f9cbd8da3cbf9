#!/usr/bin/env python
"""Delayed jobs: what a large scheduled set costs a drain, and how fast a burst of
jobs that come due together starts.

    python benchmarks/lifecycle.py                  # updates its section of docs/benchmarks.md
    python benchmarks/lifecycle.py --repeats 1 --docs ''

1. Drain: 20,000 no-op jobs posted with `post_many`, then one worker process drains
   them, measured exactly as `benchmarks/run.py` measures "drain 1 worker" (its
   driver, `peers/drive.py`, and its MLQ worker, `peers/mlq_bench.py`). Once with an
   empty scheduled set, once with 100,000 jobs scheduled an hour ahead, which every
   take looks at (`move_due`) and none moves; interleaved, the median of the repeats.
2. Burst: one worker process runs and is idle; 10,000 jobs posted with
   `post_many(at=T)`, T a few seconds ahead. From T: when the last job started
   and completed (`processing_started` and `processing_finished` of the records),
   and, polled from here, when the scheduled set was empty (all promoted).

Everything runs on one private server (`mlq.embedded.EmbeddedServer`, loopback, a
free port, AOF off), started and stopped by this script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
PEERS_DIR = REPO_DIR / "benchmarks" / "peers"
sys.path[:0] = [str(REPO_DIR), str(PEERS_DIR)]  # mlq from this checkout; run.py's peers

from benchmarks.harness.standalone import measure_on_private_redis, write_section  # noqa: E402
from benchmarks.harness.systems import BY_KEY  # noqa: E402
from benchmarks.harness.venvs import driver_env  # noqa: E402
from common import DONE_DIR_ENV, DoneCounter, Workers  # noqa: E402
from drive import Driver  # noqa: E402
from mlq_bench import NAMESPACE, Bench  # noqa: E402

from mlq import MLQ  # noqa: E402

GOAL_SLOWDOWN = 0.05  # the drain with the not-due set: at most 5% slower
GOAL_STARTED_S = 2.0  # the burst: every job started within 2 s of its due time
POLL = 0.002  # seconds between looks at the scheduled set during a burst
FIELDS = ["status", "processing_started", "processing_finished"]


# -- 1. drain with and without a large scheduled set ---------------------------
def schedule_far(q: MLQ, count: int) -> None:
    """`count` jobs due an hour from now: in the scheduled set for the whole drain."""
    q.post_many(range(count), at=time.time() + 3600, chunk_size=1000)


def drain_rates(driver: Driver, q: MLQ, scheduled: int, repeats: int) -> dict[int, list[float]]:
    """Steady drain jobs/s (run.py's measure) per size of the scheduled set; the two
    alternate, first one then the other first, so drift hits both alike."""
    rates: dict[int, list[float]] = {0: [], scheduled: []}
    for repeat in range(repeats):
        for count in (list(rates) if repeat % 2 == 0 else list(rates)[::-1]):
            driver.resp.command("FLUSHALL")
            if count:
                schedule_far(q, count)
            result = driver.drain(1)
            left = q.client.zcard(q.keys.scheduled)
            if left != count:
                raise RuntimeError(f"{left} jobs left in the scheduled set, expected {count}")
            rates[count].append(result["rate"])
            print(f"  drain with {count:,} scheduled: {result['rate']:,.0f} jobs/s "
                  f"(with start-up {result['rate_with_startup']:,.0f})", flush=True)
    return rates


# -- 2. a burst of jobs that come due together ----------------------------------
def watch_burst(q: MLQ, counter: DoneCounter, total: int, due: float) -> dict[str, float]:
    """Poll from `due` on: when the scheduled set emptied, when every job was done."""
    time.sleep(max(due - time.time(), 0))
    seen: dict[str, float] = {}
    deadline = due + 120
    while time.time() < deadline:
        now = time.time()
        if "promoted" not in seen and q.client.zcard(q.keys.scheduled) == 0:
            seen["promoted"] = now - due
        if counter.count()[0] >= total:
            seen["done_seen"] = now - due
            return seen
        time.sleep(POLL)
    raise TimeoutError(f"burst not drained 120 s after its due time: {counter.count()[0]}/{total}")


def burst_timings(q: MLQ, ids: list[str], due: float) -> dict[str, float]:
    """From the records: first and last start, last finish (s after `due`), takes."""
    records = [q.get_job(job_id, fields=FIELDS) for job_id in ids]
    bad = [r for r in records if r["status"] != "completed"]
    if bad:
        raise RuntimeError(f"{len(bad)} burst jobs not completed, e.g. {bad[0]}")
    started = [r["processing_started"] for r in records]
    return {"first_started": min(started) - due, "last_started": max(started) - due,
            "last_completed": max(r["processing_finished"] for r in records) - due,
            "takes": len(set(started))}  # the jobs of one take share its clock


def burst_once(url: str, env: dict[str, str], log: str, jobs: int, lead: float) -> dict[str, float]:
    """One burst of `jobs` due `lead` s after posting, one idle worker process."""
    q = MLQ(NAMESPACE, redis_url=url)
    q.client.flushall()
    counter = DoneCounter(env[DONE_DIR_ENV])
    workers = Workers(Bench(url).worker_commands(1), env, log)
    try:
        q.wait(q.post("warm-up"), timeout=60)  # the worker is up; now it idles
        time.sleep(1.0)
        due = time.time() + lead
        ids = q.post_many(range(jobs), at=due, chunk_size=1000)
        if time.time() >= due:
            raise RuntimeError("posting the burst took longer than its lead time")
        result = watch_burst(q, counter, jobs + 1, due)  # + the warm-up job
    finally:
        workers.stop()
    result.update(burst_timings(q, ids, due))
    q.close()
    return result


def bursts(url: str, env: dict[str, str], workdir: Path, jobs: int, lead: float,
           repeats: int) -> list[dict[str, float]]:
    runs = []
    for repeat in range(repeats):
        run = burst_once(url, env, str(workdir / f"burst-{repeat}.log"), jobs, lead)
        print("  burst: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in run.items()), flush=True)
        runs.append(run)
    return runs


# -- report ----------------------------------------------------------------------
def figures(options: argparse.Namespace, rates: dict[int, list[float]],
            runs: list[dict[str, float]]) -> list[str]:
    empty, full = (statistics.median(rates[k]) for k in (0, options.scheduled))
    ratio = full / empty
    met = "met" if ratio >= 1 - GOAL_SLOWDOWN else "**not met**"
    lines = [f"{os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}, "
             f"median of {options.repeats} interleaved repeat(s):", "",
             f"Drain of {options.jobs:,} no-op jobs by one worker process (steady jobs/s, "
             "as run.py's \"drain 1 worker\"):", ""]
    for count, values in rates.items():
        lines.append(f"- {count:,} jobs scheduled, not due: median {statistics.median(values):,.0f} "
                     f"jobs/s (runs: {', '.join(f'{v:,.0f}' for v in values)})")
    lines += [f"- with / without: {ratio:.3f}x (goal: at least {1 - GOAL_SLOWDOWN:.2f}x): {met}", "",
              f"{options.burst:,} jobs due at the same moment T, one idle worker process "
              "(seconds after T):", "",
              "| | median | runs |", "|---|---:|---:|"]
    rows = [("first job started", "first_started"), ("scheduled set empty (polled)", "promoted"),
            ("last job started", "last_started"), ("last job completed", "last_completed"),
            ("takes that started them", "takes")]
    for title, key in rows:
        values = [run[key] for run in runs]
        shown = "{:,.0f}" if key == "takes" else "{:.3f}"
        lines.append(f"| {title} | {shown.format(statistics.median(values))} | "
                     f"{', '.join(shown.format(v) for v in values)} |")
    last = statistics.median(run["last_started"] for run in runs)
    lines += ["", f"All started within {GOAL_STARTED_S:.0f} s of T: "
              f"{'met' if last <= GOAL_STARTED_S else '**not met**'} ({last:.3f} s)."]
    return lines


SECTION = """## Delayed jobs

`python benchmarks/lifecycle.py`: what a large set of scheduled jobs costs a drain,
and how fast a burst of jobs that come due together starts. Every take moves up
to 1,000 due jobs from the scheduled set to their queues (`move_due`), so a set
of jobs not yet due is looked at by every take; a burst is started by the takes
of the one worker that is there.

{figures}

The drain is measured as in the table above (`peers/drive.py`, one MLQ worker
process, jobs/s from 5% done to the last job); the scheduled jobs are posted with
`post_many(at=now + 3600)` before the {jobs:,} queued ones. In the burst, the worker
ran one warm-up job and then idled; "scheduled set empty" is when a poll from the
benchmark (every {poll_ms:.0f} ms) first found the set empty, the other times come
from each job's `processing_started` and `processing_finished`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
    parser.add_argument("--scheduled", type=int, default=100_000, help="not-due jobs")
    parser.add_argument("--burst", type=int, default=10_000, help="jobs due together")
    parser.add_argument("--lead", type=float, default=3.0, help="seconds from post to due")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--docs", default=str(REPO_DIR / "docs"),
                        help="folder of the benchmarks.md to update ('' for none)")
    options = parser.parse_args()
    os.environ["PYTHONPATH"] = driver_env(BY_KEY["mlq"], {})["PYTHONPATH"]  # workers' imports
    lines = measure_on_private_redis(
        "lifecycle", lambda url, workdir: measure(options, url, workdir))
    write_section(options.docs, "lifecycle", SECTION.format(
        figures="\n".join(lines), poll_ms=POLL * 1000, jobs=options.jobs))

def measure(options: argparse.Namespace, url: str, workdir: Path) -> list[str]:
    config = {"module": "mlq_bench", "redis_url": url, "jobs": options.jobs,
              "workdir": str(workdir), "drain_timeout": 300.0, "startup_timeout": 60.0}
    driver = Driver(config)
    q = MLQ(NAMESPACE, redis_url=url)
    print(f"1. drain of {options.jobs:,} jobs, with 0 and {options.scheduled:,} scheduled",
          flush=True)
    rates = drain_rates(driver, q, options.scheduled, options.repeats)
    print(f"2. burst of {options.burst:,} jobs due {options.lead} s after posting", flush=True)
    runs = bursts(url, driver.env, workdir, options.burst, options.lead, options.repeats)
    q.close()
    driver.peer.close()
    return figures(options, rates, runs)


if __name__ == "__main__":
    main()
