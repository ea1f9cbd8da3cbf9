"""One Redis round trip per call, for scale: what no enqueue made of a round
trip can beat on this machine, measured in the same run as the systems."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import redis

from .summary import spread

CALLS = 1000
ROUNDS = 5  # alternating, median kept: one burst of someone else's load moves one round


def time_rounds(cases: dict[str, Callable[[], Any]], calls: int = CALLS,
                rounds: int = ROUNDS) -> dict[str, list[float]]:
    """Seconds per call of each case, one list entry per round; the cases take
    turns within each round, after one untimed call each (connections, script loads)."""
    for call in cases.values():
        call()
    timed: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, call in cases.items():
            started = time.perf_counter()
            for _ in range(calls):
                call()
            timed[name].append((time.perf_counter() - started) / calls)
    return timed


def measure(url: str) -> dict[str, float]:
    """Calls/s of a redis-py LPUSH of a small payload and of an EVALSHA of a
    script that does nothing, one per call (median of the rounds)."""
    client = redis.Redis.from_url(url)
    try:
        empty = client.register_script("return 1")
        timed = time_rounds({
            "redis-py LPUSH": lambda: client.lpush("bench-floor", b"x" * 64),
            "redis-py EVALSHA, empty script": lambda: empty(),
        })
        client.delete("bench-floor")
    finally:
        client.close()
    return {name: 1 / statistics.median(seconds) for name, seconds in timed.items()}


def summarize(passes: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each case's spread over the passes."""
    return {name: spread([p[name] for p in passes]) for name in (passes[0] if passes else {})}
