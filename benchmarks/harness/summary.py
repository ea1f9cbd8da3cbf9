"""From the raw per-repeat results to medians, ranges, ratios and the speed goals."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from .systems import REFERENCE, System


@dataclass(frozen=True)
class Column:
    key: str
    scenario: str
    field: str
    title: str
    higher_is_better: bool
    digits: int  # decimals shown


COLUMNS: tuple[Column, ...] = (
    Column("enqueue", "enqueue", "rate", "enqueue jobs/s (1 call each)", True, 0),
    Column("bulk", "bulk", "rate", "bulk enqueue jobs/s", True, 0),
    Column("drain1", "drain1", "rate", "drain 1 worker jobs/s", True, 0),
    Column("drain2", "drain2", "rate", "drain 2 workers jobs/s", True, 0),
    Column("p50", "latency", "p50_ms", "latency p50 ms", False, 2),
    Column("p99", "latency", "p99_ms", "latency p99 ms", False, 2),
    Column("cmds", "drain1", "commands_per_job", "Redis cmds/job", False, 1),
    Column("cmdsrt", "latency", "commands_per_round_trip", "Redis cmds per post+wait", False, 1),
    Column("cpu", "drain1", "worker_cpu_us", "worker CPU µs/job", False, 0),
    Column("rcpu", "drain1", "redis_cpu_us", "Redis CPU µs/job", False, 0),
)
BY_KEY = {c.key: c for c in COLUMNS}

#: The speed goals: MLQ against the best peer of each column (cmds/job: absolute).
GOALS: tuple[tuple[str, float, str, str | None], ...] = (
    # column, target ratio, wording, the peer the goal names (its table's best)
    ("enqueue", 1.5, "≥ 1.5× the best peer", "huey"),
    ("bulk", 2.0, "≥ 2× the best peer's bulk", "rq"),
    ("drain1", 2.0, "≥ 2× the best peer", None),
    ("drain2", 2.0, "≥ 2× the best peer", None),
    ("p50", 0.8, "≤ 0.8× the best peer", "huey"),
    ("p99", 0.8, "≤ 0.8× the best peer", "huey"),
)
MAX_COMMANDS_PER_JOB = 10.0
#: a post and a wait for its outcome, the worker's part included
MAX_COMMANDS_PER_ROUND_TRIP = 20.0


@dataclass
class Stat:
    median: float
    low: float
    high: float
    n: int


def spread(values: list[float]) -> dict[str, float]:
    """Median, low, high and count of one measurement's samples (as the report shows them)."""
    return {"median": statistics.median(values), "low": min(values), "high": max(values),
            "n": len(values)}


def values(runs: list[dict[str, Any]], column: Column) -> list[float]:
    found = []
    for run in runs:
        value = run.get(column.scenario, {}).get(column.field)
        if isinstance(value, (int, float)):
            found.append(float(value))
    return found


def stat(runs: list[dict[str, Any]], column: Column) -> Stat | None:
    found = values(runs, column)
    if not found:
        return None
    return Stat(statistics.median(found), min(found), max(found), len(found))


def table(systems: list[System], results: dict[str, list[dict[str, Any]]]
          ) -> dict[str, dict[str, Stat | None]]:
    return {s.key: {c.key: stat(results.get(s.key, []), c) for c in COLUMNS} for s in systems}


def ratio(mlq: Stat | None, peer: Stat | None) -> float | None:
    """MLQ's median over the peer's (for 'lower is better' columns, < 1 is MLQ ahead)."""
    if mlq is None or peer is None or peer.median == 0:
        return None
    return mlq.median / peer.median


def best_peer(stats: dict[str, dict[str, Stat | None]], column: Column
              ) -> tuple[str, Stat] | None:
    candidates: list[tuple[str, Stat]] = []
    for key, row in stats.items():
        found = row[column.key]
        if key != REFERENCE and found is not None:
            candidates.append((key, found))
    if not candidates:
        return None
    pick = max if column.higher_is_better else min
    return pick(candidates, key=lambda kv: kv[1].median)


def goals(stats: dict[str, dict[str, Stat | None]]) -> list[dict[str, Any]]:
    """One row per goal: what was asked, the ratio measured, and whether it holds."""
    rows = []
    mlq = stats.get(REFERENCE, {})
    def holds(measured: float | None, column: Column, target: float) -> bool | None:
        if measured is None:
            return None
        return measured >= target if column.higher_is_better else measured <= target

    for key, target, wording, named in GOALS:
        column = BY_KEY[key]
        best = best_peer(stats, column)
        measured = ratio(mlq.get(key), best[1]) if best else None
        named_stat = stats.get(named, {}).get(key) if named else None
        named_ratio = ratio(mlq.get(key), named_stat) if named_stat else None
        rows.append({"goal": f"{column.title}: {wording}", "peer": best[0] if best else None,
                     "ratio": measured, "met": holds(measured, column, target),
                     "named": named if named_ratio is not None else None,
                     "named_ratio": named_ratio,
                     "named_met": holds(named_ratio, column, target)})
    for key, limit, wording in (("cmds", MAX_COMMANDS_PER_JOB, "Redis commands per job"),
                                ("cmdsrt", MAX_COMMANDS_PER_ROUND_TRIP,
                                 "Redis commands per post and its wait")):
        found = mlq.get(key)
        rows.append({"goal": f"{wording} ≤ {limit:.0f}", "peer": None,
                     "ratio": found.median if found else None,
                     "met": None if found is None else found.median <= limit,
                     "named": None, "named_ratio": None, "named_met": None})
    return rows


def errors(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every scenario that failed, once per system and message."""
    seen: list[str] = []
    for key, runs in results.items():
        for run in runs:
            entries = [("driver", run)] if "error" in run else [
                (name, part) for name, part in run.items()
                if isinstance(part, dict) and "error" in part]
            for name, part in entries:
                line = f"{key} {name}: {part['error'].strip().splitlines()[-1]}"
                if line not in seen:
                    seen.append(line)
    return seen
