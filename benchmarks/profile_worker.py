#!/usr/bin/env python
"""Where an MLQ worker process spends its time per no-op job, sampled with py-spy.

    python benchmarks/profile_worker.py [--jobs 20000] [--cpu-only] [--top 25]

Fills a private Redis with no-op jobs, starts the same supervisor the drain
benchmark runs (one spawned child), records it with `py-spy --subprocesses`
while it drains (--nonblocking: the worker is never paused), and prints the
functions of the worker loop by inclusive and by self share of its samples.
Samples where the thread waits (for Redis replies, mostly) count too, unless
--cpu-only: a latency-bound loop spends its time there.
py-spy goes into benchmarks/.venvs/tools on first use.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent), str(BENCH_DIR / "peers")]

from common import DONE_DIR_ENV, DoneCounter  # noqa: E402
from mlq.queue import MLQ  # noqa: E402

from harness import procs, server, venvs  # noqa: E402
from harness.systems import BY_KEY  # noqa: E402

_PROCESS = re.compile(r'^((?:process \d+:"[^"]*";)+)(.*)$')


def summarize(raw: Path, top: int, focus: str, exclude: str = "") -> str:
    """Inclusive and self shares per function, over the stacks of the worker loop
    (those holding `focus`, none holding `exclude`) of the process with most of them."""
    per_process: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        match = _PROCESS.match(stack)
        chain, rest = (match.group(1), match.group(2)) if match else ("", stack)
        process = chain.rstrip(";").rsplit('";', 1)[-1][:60]
        frames = rest.split(";")
        if any(focus in frame for frame in frames) and not (
                exclude and any(exclude in frame for frame in frames)):
            per_process[process].append((frames, int(count)))
    if not per_process:
        return f"no samples inside {focus!r}"
    process, stacks = max(per_process.items(), key=lambda kv: sum(c for _, c in kv[1]))
    total = sum(weight for _, weight in stacks)
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for frames, weight in stacks:
        for frame in set(frames):
            inclusive[frame] += weight
        own[frames[-1]] += weight
    lines = [f"{process}...: {total} samples inside {focus}"]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"\n{title}:")
        lines += [f"  {n / total:6.1%}  {frame}" for frame, n in counter.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--cpu-only", action="store_true",
                        help="leave out samples where the thread waits (default: count them, "
                             "since a latency-bound loop spends its time there)")
    parser.add_argument("--focus", default="Worker.run (", help="only stacks holding this frame")
    parser.add_argument("--exclude", default="blpop", help="leave out stacks holding this frame "
                        "(default: the blocking take, i.e. the idle worker once the queue is empty)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    args = parser.parse_args()
    procs.mark_this_process()
    pyspy = venvs.ensure("tools", ("py-spy",)).parent / "py-spy"
    workdir = Path(tempfile.mkdtemp(prefix="mlq-profile-"))
    try:
        with server.private_redis(workdir / "redis") as redis_server:
            mlq = MLQ("bench", redis_url=redis_server.url)
            for start in range(0, args.jobs, 5000):
                mlq.post_many(range(start, min(start + 5000, args.jobs)))
            counter = DoneCounter(str(workdir / "done"))
            env = venvs.driver_env(BY_KEY["mlq"], {DONE_DIR_ENV: counter.folder})
            raw = workdir / "profile.txt"
            with open(workdir / "workers.log", "ab") as log:
                spy = procs.Group(
                    [str(pyspy), "record", "--subprocesses", "-r", str(args.rate), "-f", "raw",
                     "-o", str(raw), "--nonblocking", *([] if args.cpu_only else ["--idle"]), "--",
                     sys.executable, str(BENCH_DIR / "peers" / "mlq_bench.py"),
                     redis_server.url, "1"], env, log, cwd=str(BENCH_DIR / "peers"))
                started = time.monotonic()
                while counter.count()[0] < args.jobs and time.monotonic() - started < 300:
                    time.sleep(0.05)
                elapsed = time.monotonic() - started
                # stop the supervisor (py-spy's child): py-spy then writes its file and exits
                for pid in procs_children(spy.proc.pid):
                    os.kill(pid, signal.SIGTERM)
                spy.wait(30)
                spy.stop()
        print(f"{counter.count()[0]} jobs in {elapsed:.1f} s (start-up and py-spy's "
              f"sampling included)\n")
        print(summarize(raw, args.top, args.focus, args.exclude))
    finally:
        procs.stop_all()


def procs_children(pid: int) -> list[int]:
    """Direct children of `pid` (the supervisor under py-spy)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    text = handle.read()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry))
    return found


if __name__ == "__main__":
    main()
