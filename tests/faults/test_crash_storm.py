"""Crash storm: worker processes and whole consumer commands SIGKILLed while 2,000 jobs run.

Two `controller consumer --concurrency 2` commands and a `controller reaper`
share a private Redis. Every 2 s a random worker child is SIGKILLed; once, a
consumer's supervisor alone is SIGKILLed (its children see the pipe close and
stop by themselves; what they held is the reaper's once their heartbeats
expire), and once a whole consumer command (its process group: supervisor and
children at the same instant, as when a machine dies). Both are restarted.

Pass: every job completed, none lost, none dead-lettered; each extra
execution happened on a process that was killed (at-least-once, and no
duplicate without a cause).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from mlq import MLQ
from mlq.embedded import EmbeddedServer
from mlq.heartbeat import workers
from mlq.record import record_from_hash
from tests.faults.conftest import Command, Commands, pid_alive, wait_until

JOBS = 2000
KILL_EVERY = 2.0
HEARTBEAT = ("--heartbeat_interval", "0.5", "--heartbeat_timeout", "3")
#: Once this share of the jobs is done, a consumer is killed (the run is only
#: seconds long, so progress, not the clock, places these two kills).
SUPERVISOR_AT, GROUP_AT = 0.2, 0.5


def _consumer(commands: Commands, name: str, url: str, namespace: str) -> Command:
    return commands.start(name, "consumer", "--redis_url", url, "--namespace", namespace,
                          "--concurrency", "2", "--import", "tests.faults.listeners:record",
                          *HEARTBEAT)


def _children(q: MLQ, consumers: dict[str, Command]) -> list[dict[str, Any]]:
    """Heartbeat records of live worker children of the consumers now running."""
    by_pid = {c.pid: c for c in consumers.values() if c.running()}
    found = []
    for record in workers(q.client, q.keys):
        owner = by_pid.get(record.get("supervisor"))  # type: ignore[arg-type]
        if record["alive"] and owner is not None and owner.owns(record["pid"]) \
                and record["pid"] != owner.pid:
            found.append(record)
    return found


def _executions(log: Path) -> dict[str, list[int]]:
    runs: dict[str, list[int]] = defaultdict(list)
    for line in log.read_text().splitlines():
        job_id, pid = line.split()
        runs[job_id].append(int(pid))
    return runs


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_crash_storm(own_redis: EmbeddedServer, commands: Commands, tmp_path: Path) -> None:
    url, namespace = own_redis.url, "storm"
    q = MLQ(namespace, redis_url=url)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    log = tmp_path / "executions.log"
    log.touch()
    commands.start("reaper", "reaper", "--redis_url", url, "--namespace", namespace,
                   "--reaper_interval", "0.5", "--reaper_timeout", "120",
                   "--heartbeat_timeout", "3")
    consumers = {"a": _consumer(commands, "consumer-a", url, namespace),
                 "b": _consumer(commands, "consumer-b", url, namespace)}
    try:
        wait_until(lambda: len(_children(q, consumers)) == 4, 60, "4 worker processes")
    except AssertionError:
        raise AssertionError(commands.outputs()) from None
    ids = q.post_many([{"log": str(log), "sleep": round(rng.uniform(0.005, 0.030), 4)}
                       for _ in range(JOBS)])
    started = time.monotonic()
    killed: set[int] = set()
    orphans: list[int] = []  # children of the supervisor killed alone
    kills: Counter[str] = Counter()
    group_size = 0
    next_kill = started + KILL_EVERY
    deadline = started + 100

    while True:
        now_stats = q.stats()
        done = now_stats["completed"] + now_stats["failed"]
        if done >= JOBS:
            break
        assert time.monotonic() < deadline, (
            f"not done in time: {now_stats}\n{commands.outputs()}")
        if not kills["supervisor alone"] and done >= SUPERVISOR_AT * JOBS:
            victim = consumers["a"]
            orphans = [r["pid"] for r in _children(q, {"a": victim})]
            victim.kill_leader()
            killed.add(victim.pid)
            kills["supervisor alone"] += 1
            consumers["a"] = _consumer(commands, "consumer-a2", url, namespace)
        elif not kills["whole consumer command"] and done >= GROUP_AT * JOBS:
            victim = consumers["b"]
            pids = victim.kill_group()
            group_size = len(pids)
            killed.update(pids)
            kills["whole consumer command"] += 1
            consumers["b"] = _consumer(commands, "consumer-b2", url, namespace)
        elif time.monotonic() >= next_kill:
            next_kill += KILL_EVERY
            children = _children(q, consumers)
            busy = [r for r in children if r.get("job")] or children
            if busy:
                chosen = rng.choice(busy)
                pid = chosen["pid"]
                owner = next(c for c in consumers.values() if c.pid == chosen["supervisor"])
                if owner.owns(pid):  # still ours: never signal a pid we did not start
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                    kills["worker child"] += 1
        else:
            time.sleep(0.05)  # pacing the loop between two looks at the storm
    elapsed = time.monotonic() - started

    # -- verdict --------------------------------------------------------------------
    pipe = q.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(q.keys.job(job_id))
    records = {job_id: record_from_hash(raw) for job_id, raw in zip(ids, pipe.execute())}
    not_completed = {i: r["status"] for i, r in records.items() if r["status"] != "completed"}
    assert not not_completed, f"jobs not completed: {not_completed}\n{commands.outputs()}"
    assert q.dead_letters() == []
    stats = q.stats()
    assert stats["completed"] == JOBS and stats["failed"] == 0, stats
    assert stats["waiting"] == 0 and stats["processing"] == 0, stats

    runs = _executions(log)
    assert set(runs) == set(ids), "a completed job left no execution line"
    duplicates = 0
    untraced = {}
    for job_id, pids in runs.items():
        if len(pids) == 1:
            continue
        duplicates += len(pids) - 1
        others = list(pids)
        others.remove(records[job_id]["result"]["pid"])  # the execution that counted
        if any(pid not in killed for pid in others):
            untraced[job_id] = (pids, records[job_id]["result"]["pid"])
    assert not untraced, f"duplicates on processes never killed: {untraced} (seed {seed})"
    # the orphaned children stopped by themselves once their supervisor was gone
    wait_until(lambda: not any(pid_alive(p) for p in orphans), 10,
               "the orphaned children to exit")
    assert kills["supervisor alone"] == 1 and kills["whole consumer command"] == 1, kills

    # the restarted commands, and the reaper, stop cleanly
    reaper = commands.started[0]
    for command in [*consumers.values(), reaper]:
        assert command.terminate() == 0, command.output()
    by_reaper = reaper.log_path.read_text().count("stopped heartbeating")
    total = sum(kills.values())
    print(f"\ncrash storm: {JOBS} jobs in {elapsed:.1f} s, {total} kills "
          f"({kills['worker child']} worker children, 1 supervisor alone leaving "
          f"{len(orphans)} children, 1 whole consumer command of {group_size} processes), "
          f"{duplicates} duplicates, {stats['requeued']} requeued ({by_reaper} by the reaper), 0 lost, 0 dead (seed {seed})")


@pytest.mark.timeout(60)
def test_orphaned_child_finishes_its_job_and_stops_cleanly(
        own_redis: EmbeddedServer, commands: Commands, tmp_path: Path) -> None:
    q = MLQ("orphan", redis_url=own_redis.url)
    consumer = _consumer(commands, "consumer", own_redis.url, "orphan")
    job_id = q.post({"log": str(tmp_path / "executions.log"), "sleep": 1.5})
    wait_until(lambda: q.get_job(job_id)["status"] == "started", 60,
               f"the job to start\n{consumer.output()}")
    child = next(r["pid"] for r in _children(q, {"c": consumer}))
    consumer.kill_leader()  # the supervisor alone, in the middle of the job
    assert q.wait(job_id, timeout=10)["status"] == "completed"
    wait_until(lambda: not pid_alive(child), 10, "the orphaned child to exit")
    assert "Traceback" not in consumer.log_path.read_text(), consumer.output()
