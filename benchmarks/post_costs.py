#!/usr/bin/env python
"""What one `MLQ.post` costs, taken apart, against a bare redis-py LPUSH.

    python benchmarks/post_costs.py [--calls 3000] [--rounds 5]

On a private Redis, times one call at a time (µs per call, median over rounds
that alternate between the cases, so a burst of other load moves one round):

- a redis-py LPUSH of 64 bytes: all a Huey enqueue sends;
- a redis-py EVALSHA of an empty script, and the same through MLQ's shared
  round trips (mlq/roundtrips.py): the round trip a post cannot go below;
- MLQ's post script with its arguments built beforehand, whole and stopped at
  its first line: what the script's own work adds in Redis;
- `MLQ.post`, and its record building alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent)]

from mlq.embedded import EmbeddedServer  # noqa: E402
from mlq.posting import checked_post  # noqa: E402
from mlq.queue import MLQ  # noqa: E402

from harness.floor import time_rounds  # noqa: E402


def cases(q: MLQ) -> dict[str, Callable[[], Any]]:
    client, scripts = q.client, q.scripts
    empty = client.register_script("return 1")
    post = scripts._scripts["post"]
    stopped = client.register_script("do return 0 end\n" + post.script)
    fields = checked_post(q, {"a": 1}).fields
    tokens = iter(range(10 ** 9))

    def post_script(script: Any) -> Callable[[], Any]:
        def call() -> Any:
            keys, args = scripts.post_call("default", fields, token=f"post-costs-{next(tokens)}")
            return scripts.round_trips.evalsha(script, len(keys), *keys, *args)
        return call

    return {
        "redis-py LPUSH (Huey's enqueue)": lambda: client.lpush("post-costs", b"x" * 64),
        "redis-py EVALSHA, empty script": lambda: empty(),
        "shared round trip, empty script": lambda: scripts.round_trips.evalsha(empty, 0),
        "post script, stopped at line 1": post_script(stopped),
        "post script, whole": post_script(post),
        "MLQ.post": lambda: q.post({"a": 1}),
        "MLQ.post's checks and record building alone": lambda: checked_post(q, {"a": 1}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per case and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with EmbeddedServer() as server:
        timed = time_rounds(cases(MLQ("post-costs", redis_url=server.url)),
                            args.calls, args.rounds)
    rounds = {name: [s * 1e6 for s in seconds] for name, seconds in timed.items()}
    width = max(len(name) for name in rounds)
    for name, values in rounds.items():
        print(f"{name:{width}}  {statistics.median(values):7.1f} µs  "
              f"(min {min(values):.1f}, max {max(values):.1f})")
    lpush = statistics.median(rounds["redis-py LPUSH (Huey's enqueue)"])
    print(f"\n1.5x a bare LPUSH's rate leaves {lpush / 1.5:.0f} µs per post.")


if __name__ == "__main__":
    main()
