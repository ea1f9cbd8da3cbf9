"""One Redis round trip per call, for scale: what no enqueue made of a round
trip can beat on this machine, measured in the same run as the systems."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import redis

CALLS = 1000
ROUNDS = 5  # alternating, median kept: one burst of someone else's load moves one round


def measure(url: str) -> dict[str, float]:
    """Calls/s of a redis-py LPUSH of a small payload and of an EVALSHA of a
    script that does nothing, one per call."""
    client = redis.Redis.from_url(url)
    try:
        empty = client.register_script("return 1")
        cases: dict[str, Callable[[], Any]] = {
            "redis-py LPUSH": lambda: client.lpush("bench-floor", b"x" * 64),
            "redis-py EVALSHA, empty script": lambda: empty(),
        }
        rounds: dict[str, list[float]] = {name: [] for name in cases}
        for call in cases.values():
            call()  # connection and script load outside the timing
        for _ in range(ROUNDS):
            for name, call in cases.items():
                started = time.perf_counter()
                for _ in range(CALLS):
                    call()
                rounds[name].append(CALLS / (time.perf_counter() - started))
        client.delete("bench-floor")
    finally:
        client.close()
    return {name: statistics.median(rates) for name, rates in rounds.items()}


def summarize(passes: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median, low and high of each case over the passes."""
    names = passes[0] if passes else {}
    return {name: {"median": statistics.median(p[name] for p in passes),
                   "low": min(p[name] for p in passes), "high": max(p[name] for p in passes),
                   "n": len(passes)} for name in names}
