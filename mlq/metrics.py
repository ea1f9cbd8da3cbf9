"""Counters and histograms by queue, function and error kind, for /metrics.

They live in Redis (the namespace's metrics hash, Keys.metrics), so that every
server process answers a scrape with the same numbers. The finish step
(finish.lua, with lua/metrics.lua in front) appends what it counted to the
tally list (Keys.tally) in one command; every TALLY_FOLD_AT finishes, and before
any read of the counts (tally.lua), the waiting entries are added up, one
HINCRBY per distinct field. Its fields, '|' between the parts (no queue
or function name can hold one):

- ``completed|<queue>|<function>`` and ``failed|<queue>|<function>|<error_kind>``:
  jobs ended so by a finish;
- ``runtime|<queue>|<function>|<bound>`` and ``runtime_sum|<queue>|<function>``:
  the run-time histogram (one count per bucket, not cumulative);
- ``wait|<queue>|<bound>`` and ``wait_sum|<queue>``: seconds from a job's post
  to the start of each recorded attempt (a delay, a retry's backoff and earlier
  attempts included).

The function label is a submitted call's name, else the job's listeners joined
by ',', else '' (a job for every listener).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from .job import RUNTIME_BUCKETS, RUNTIME_FIELD_PREFIX, bound_label
from .keys import DEFAULT_QUEUE

#: Distinct function labels kept; past them new names are counted as OTHER, so a
#: namespace with generated names never gives Prometheus unbounded series.
FUNCTIONS_KEPT = 100
OTHER = "other"
#: Finish steps whose counts wait in the tally list before one of them adds them
#: all up: the counters cost a finish one command, not one per field it touches.
#: A worker's sweep adds them up twice a second (reaper.Sweep), so a finish does
#: it, holding Redis up for a while, only while a burst outpaces the sweeps.
TALLY_FOLD_AT = 512
#: Bounds (seconds) of the wait histogram: waits span the same range as run times.
WAIT_BUCKETS = RUNTIME_BUCKETS


def function_label(record: dict[str, Any]) -> str:
    """The function label a finish counts a job under (as lua/metrics.lua does, before
    the cap): a submitted call's name, else its listeners joined by ','."""
    return record.get("call_name") or ",".join(record.get("functions") or ())


def runtime_fields(queue: str, function: str) -> list[str]:
    """The fields of one queue's and function's run times: their sum, then one count
    per bucket (position.py's ETA reads them)."""
    labels = f"{queue}|{function}"
    return [f"runtime_sum|{labels}",
            *(f"runtime|{labels}|{bound_label(bound)}" for bound in RUNTIME_BUCKETS)]


def lua_prelude() -> str:
    """The constants lua/metrics.lua reads, spelled from the ones above."""
    bounds = ", ".join("math.huge" if b == float("inf") else repr(b) for b in WAIT_BUCKETS)
    labels = ", ".join(f"'{bound_label(b)}'" for b in WAIT_BUCKETS)
    return (f"local FUNCTIONS_KEPT, OTHER_FUNCTION = {FUNCTIONS_KEPT}, '{OTHER}'\n"
            f"local RUNTIME_PREFIX = '{RUNTIME_FIELD_PREFIX}'\n"
            f"local TALLY_FOLD_AT = {TALLY_FOLD_AT}\n"
            f"local WAIT_BOUNDS = {{{bounds}}}\nlocal WAIT_LABELS = {{{labels}}}\n")


@dataclass
class Histogram:
    """One labelled histogram read back: count per bucket bound, and the sum."""
    counts: dict[float, int] = field(default_factory=dict)
    total: float = 0.0

    def buckets(self, bounds: Iterable[float]) -> list[tuple[float, int]]:
        """(bound, count) for every bound, zero where nothing was counted."""
        return [(bound, self.counts.get(bound, 0)) for bound in bounds]


@dataclass
class Labelled:
    """The metrics hash, parsed."""
    completed: dict[tuple[str, str], int] = field(default_factory=dict)
    failed: dict[tuple[str, str, str], int] = field(default_factory=dict)
    runtime: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    wait: dict[str, Histogram] = field(default_factory=dict)


def parse(raw: dict[bytes, bytes]) -> Labelled:
    """Labelled from HGETALL of the metrics hash; a field it cannot read (of a kind
    a later version writes) is skipped rather than failing the scrape."""
    found = Labelled()
    for key, value in raw.items():
        try:
            _add(found, key.decode().split("|"), value)
        except (IndexError, ValueError):
            continue
    return found


def _add(found: Labelled, parts: list[str], value: bytes) -> None:
    kind, queue, rest = parts[0], parts[1], parts[2:]
    if kind == "completed":
        found.completed[(queue, "|".join(rest))] = int(value)
    elif kind == "failed":
        found.failed[(queue, "|".join(rest[:-1]), rest[-1])] = int(value)
    elif kind == "runtime":
        labels = (queue, "|".join(rest[:-1]))
        found.runtime.setdefault(labels, Histogram()).counts[float(rest[-1])] = int(value)
    elif kind == "runtime_sum":
        found.runtime.setdefault((queue, "|".join(rest)), Histogram()).total = float(value)
    elif kind == "wait":
        found.wait.setdefault(queue, Histogram()).counts[float(rest[0])] = int(value)
    elif kind == "wait_sum":
        found.wait.setdefault(queue, Histogram()).total = float(value)


def live_workers_by_queue(workers: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Live workers per queue they serve, from heartbeats (MLQ.workers()). A
    heartbeat without `queues` (a worker older than that field) counts as
    serving the default queue only: what such a worker took unless told otherwise."""
    counts: dict[str, int] = {}
    for worker in workers:
        if worker.get("alive"):
            for queue in worker.get("queues") or [DEFAULT_QUEUE]:
                counts[queue] = counts.get(queue, 0) + 1
    return counts


def unserved(waiting: dict[str, int], live: dict[str, int]) -> dict[str, int]:
    """1 for each queue with waiting jobs and no live worker serving it, else 0."""
    return {queue: int(count > 0 and not live.get(queue)) for queue, count in waiting.items()}
