#!/usr/bin/env python
"""A queued job's place in line at 1,000,000 queued jobs: µs per lookup.

    python benchmarks/position.py                  # updates its section of docs/benchmarks.md
    python benchmarks/position.py --jobs 100000 --docs ''

One queue holds `--jobs` jobs, all posted with `post_many` (as users post them):
10% at priority 9, 10% at priority 4, 60% at the default priority, and 20% shared
by 4 owners (5% each, in their own lists). 1,000 jobs are then cancelled from the
middle of the default lane, so the lookups also count removals. 8 workers have
heartbeats and the run-time histogram holds runs, so that every lookup also
computes an ETA. Each lookup is timed `--lookups` times, one after the other, on
one connection:

- `position_and_eta`: the step alone (one EVALSHA; the record already read);
- `get_job(fields=["position", "eta_s"])`: the record's place fields, then the step.

Everything runs on one private server (`mlq.embedded.EmbeddedServer`, loopback, a
free port, AOF off), started and stopped by this script.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_DIR)]  # mlq from this checkout

from benchmarks.harness.report import replace_section  # noqa: E402
from benchmarks.harness.server import private_redis  # noqa: E402

from mlq import MLQ  # noqa: E402
from mlq.heartbeat import beat  # noqa: E402
from mlq.job import bucket_field  # noqa: E402
from mlq.position import PLACE_FIELDS, position_and_eta  # noqa: E402

QUEUE = "bench"
OWNERS = ("ann", "bob", "cat", "dan")
CHUNK = 2_000  # jobs per post_many step (its Lua unpacks 2 values per job, at most ~8,000)
CANCELLED = 1_000


def fill(q: MLQ, jobs: int) -> dict[str, list[str]]:
    """Post the jobs; the ids of each lane, oldest (nearest the head) first."""
    shares = {"p9": (0.1, {"priority": 9}), "p4": (0.1, {"priority": 4}),
              "p0": (0.6, {})}
    shares.update({owner: (0.2 / len(OWNERS), {"owner": owner}) for owner in OWNERS})
    lanes: dict[str, list[str]] = {}
    for name, (share, options) in shares.items():
        count = int(jobs * share)
        lanes[name] = q.post_many(range(count), queue=QUEUE, chunk_size=CHUNK, **options)
    middle = len(lanes["p0"]) // 2
    for job_id in lanes["p0"][middle - CANCELLED:middle]:
        q.cancel(job_id)
    del lanes["p0"][middle - CANCELLED:middle]
    return lanes


def timed(lookups: int, lookup: Callable[[], Any]) -> tuple[float, Any]:
    """(median µs of `lookups` calls, the last answer)."""
    times, answer = [], None
    for _ in range(lookups):
        started = time.perf_counter()
        answer = lookup()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6, answer


def measure(q: MLQ, lanes: dict[str, list[str]], lookups: int) -> list[str]:
    cases = [("default lane, head", lanes["p0"][0]),
             ("default lane, middle (behind the cancelled)", lanes["p0"][len(lanes["p0"]) // 2]),
             ("default lane, tail", lanes["p0"][-1]),
             ("priority 9 lane, tail", lanes["p9"][-1]),
             ("priority 4 lane, middle", lanes["p4"][len(lanes["p4"]) // 2]),
             ("owner cat, middle (4 owners)", lanes["cat"][len(lanes["cat"]) // 2]),
             ("owner dan, tail (4 owners)", lanes["dan"][-1])]
    rows = ["| job | position | eta_s | position_and_eta µs | get_job(position, eta_s) µs |",
            "|---|---:|---:|---:|---:|"]
    for label, job_id in cases:
        record = q.get_job(job_id, fields=PLACE_FIELDS)
        step_us, (position, eta_s) = timed(lookups, lambda: position_and_eta(q, job_id, record))
        read_us, _ = timed(lookups, lambda: q.get_job(job_id, fields=["position", "eta_s"]))
        rows.append(f"| {label} | {position:,} | {eta_s:,.0f} | {step_us:.0f} | {read_us:.0f} |")
        print(rows[-1], flush=True)
    return rows


SECTION = """## Position in line

`python benchmarks/position.py`: how long reading a queued job's `position` and
`eta_s` takes with {jobs:,} jobs posted to one queue ({when}, 2 CPU cores): 10% at
priority 9, 10% at priority 4, 60% at the default priority, 20% shared by 4 owners,
and {cancelled:,} jobs cancelled from the middle of the default lane. Median of
{lookups:,} lookups each, one connection, loopback; 8 live workers.

{table}

The step reads a handful of counters and lengths (position.lua): no list is
walked, so a lookup costs the same at the head and at the tail of a million-job
lane. `get_job(fields=[...])` adds the read of the record's place fields (a
second round trip). The PING of one round trip on this machine: {ping:.0f} µs.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs queued")
    parser.add_argument("--lookups", type=int, default=2_000, help="timed lookups per job")
    parser.add_argument("--docs", default=str(REPO_DIR / "docs"),
                        help="folder of the benchmarks.md to update ('' for none)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlq-position-") as folder:
        with private_redis(Path(folder) / "redis") as server:
            q = MLQ("position", redis_url=server.url)
            started = time.perf_counter()
            lanes = fill(q, options.jobs)
            print(f"posted {sum(map(len, lanes.values())):,} jobs in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            beat(q.client, q.keys, {f"w{n}": {} for n in range(8)}, timeout=3600)
            q.client.hset(q.keys.stats, mapping={bucket_field(1.0): 1000, "runtime_sum": 800.0})
            rows = measure(q, lanes, options.lookups)
            ping_us, _ = timed(options.lookups, q.client.ping)
            q.close()
    text = SECTION.format(jobs=options.jobs, when=time.strftime("%Y-%m-%d"),
                          cancelled=CANCELLED, lookups=options.lookups,
                          table="\n".join(rows), ping=ping_us)
    print("\n" + text)
    if options.docs:
        page = Path(options.docs) / "benchmarks.md"
        page.write_text(replace_section(page.read_text(), "position", text))
        print(f"written to {page}")


if __name__ == "__main__":
    main()
