"""One Redis round trip per call, for scale: what no enqueue made of a round
trip can beat on this machine, measured in the same run as the systems."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import redis

CALLS = 2000


def measure(url: str, repeats: int) -> dict[str, dict[str, float]]:
    """Calls/s (median, low, high over `repeats`) of a redis-py LPUSH of a small
    payload and of an EVALSHA of a script that does nothing, one per call."""
    client = redis.Redis.from_url(url)
    try:
        empty = client.register_script("return 1")
        cases: dict[str, Callable[[], Any]] = {
            "redis-py LPUSH": lambda: client.lpush("bench-floor", b"x" * 64),
            "redis-py EVALSHA, empty script": lambda: empty(),
        }
        rates: dict[str, list[float]] = {name: [] for name in cases}
        for call in cases.values():
            call()  # connection and script load outside the timing
        for _ in range(repeats):
            for name, call in cases.items():
                started = time.perf_counter()
                for _ in range(CALLS):
                    call()
                rates[name].append(CALLS / (time.perf_counter() - started))
        client.delete("bench-floor")
    finally:
        client.close()
    return {name: {"median": statistics.median(values), "low": min(values),
                   "high": max(values), "n": len(values)} for name, values in rates.items()}
