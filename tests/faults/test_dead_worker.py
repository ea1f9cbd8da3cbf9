"""No job waits on a dead worker, with no reaper running: a post never hands its job
to a worker that is gone for good, and every live worker takes back the jobs of
workers that are gone (docs/RELIABILITY.md, "Dead workers")."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlq import MLQ
from mlq.embedded import EmbeddedServer
from tests.faults import listeners
from tests.faults.conftest import (
    ROOT,
    Commands,
    base_env,
    clients_from,
    group_pids,
    tcp_ports,
    wait_until,
)

#: A worker in a script of its own, as the README's worker pattern runs it.
SCRIPT = """
import asyncio, sys
from mlq.queue import MLQ
from tests.faults.listeners import record
mlq = MLQ(sys.argv[1], redis_url=sys.argv[2], heartbeat_interval=0.5, heartbeat_timeout=3)

async def main():
    mlq.create_listener(record)
    print("consuming", flush=True)

asyncio.run(main())
"""
HEARTBEAT_TIMEOUT = 3.0


@pytest.fixture
def namespace() -> str:
    return f"dw_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def survivor(own_redis: EmbeddedServer, namespace: str) -> Iterator[MLQ]:
    """Worker B: a live in-process consumer of the same namespace."""
    q = MLQ(namespace, redis_url=own_redis.url, heartbeat_interval=0.5,
            heartbeat_timeout=HEARTBEAT_TIMEOUT)
    yield q
    q.shutdown(timeout=10)


@pytest.fixture
def victim(own_redis: EmbeddedServer, namespace: str) -> Iterator[subprocess.Popen[str]]:
    """Worker A: the README's worker script, consuming in a process of its own."""
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, namespace, own_redis.url],
                               cwd=ROOT, env=base_env(PYTHONPATH=str(ROOT)),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    try:
        assert process.stdout.readline().strip() == "consuming"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def idle_listed(q: MLQ, count: int) -> bool:
    return q.client.zcard(q.keys.idle("default")) >= count


def record_at_once(msg: dict[str, Any], *args: Any) -> dict[str, Any]:
    """`record` without its sleep: worker B's run of the job held by the killed one."""
    return listeners.record({**msg, "sleep": 0}, *args)


record_at_once.__name__ = "record"


def log_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_job_posted_after_an_idle_worker_is_killed_runs_elsewhere(
        survivor: MLQ, victim: subprocess.Popen[str], tmp_path: Path) -> None:
    wait_until(lambda: idle_listed(survivor, 1), 10, "worker A waiting as idle")
    survivor.create_listener(listeners.record)  # worker B, idle a moment later
    wait_until(lambda: idle_listed(survivor, 2), 10, "both workers idle")
    ports = tcp_ports([victim.pid])
    assert clients_from(survivor.client, ports)  # its connections, seen from Redis
    victim.kill()  # SIGKILL: it never leaves the idle list
    victim.wait()
    # posted once Redis, too, knows the worker is gone: its connections closed
    wait_until(lambda: not clients_from(survivor.client, ports), 10,
               "Redis to drop the killed worker's connections")
    started = time.monotonic()
    job_id = survivor.post({"log": str(tmp_path / "runs"), "sleep": 0})
    record = survivor.wait(job_id, timeout=10)
    assert record["status"] == "completed"
    assert time.monotonic() - started < 3.0
    assert record["result"]["pid"] != victim.pid


def test_a_job_held_by_a_killed_worker_runs_again(
        survivor: MLQ, victim: subprocess.Popen[str], tmp_path: Path) -> None:
    log = tmp_path / "runs"
    wait_until(lambda: idle_listed(survivor, 1), 10, "worker A waiting as idle")
    job_id = survivor.post({"log": str(log), "sleep": 30})
    wait_until(lambda: len(log_lines(log)) == 2, 10, "worker A running the job")
    survivor.create_listener(record_at_once)  # worker B
    victim.kill()
    victim.wait()
    killed_at = time.monotonic()
    wait_until(lambda: len(log_lines(log)) >= 4, HEARTBEAT_TIMEOUT + 3,
               "the job running again on worker B")
    assert time.monotonic() - killed_at < HEARTBEAT_TIMEOUT + 3
    assert survivor.get_job(job_id)["attempt"] == 2


def test_a_job_posted_after_a_whole_consumer_is_killed_runs_elsewhere(
        own_redis: EmbeddedServer, namespace: str, survivor: MLQ, commands: Commands,
        tmp_path: Path) -> None:
    consumer = commands.start(
        "consumer", "consumer", "--import", "tests.faults.listeners:record",
        "--concurrency", "2", "--heartbeat_interval", "0.5",
        "--heartbeat_timeout", str(HEARTBEAT_TIMEOUT),
        "--redis_url", own_redis.url, "--namespace", namespace, env=base_env())
    wait_until(lambda: idle_listed(survivor, 2), 30, "the consumer's workers idle")
    survivor.create_listener(listeners.record)
    wait_until(lambda: idle_listed(survivor, 3), 10, "worker B idle too")
    ports = tcp_ports(group_pids(consumer.pgid))
    assert clients_from(survivor.client, ports)  # their connections, seen from Redis
    consumer.kill_group()  # supervisor and children at once, by SIGKILL
    # posted once Redis, too, knows the workers are gone: their connections closed
    wait_until(lambda: not clients_from(survivor.client, ports), 10,
               "Redis to drop the killed consumer's connections")
    started = time.monotonic()
    ids = [survivor.post({"log": str(tmp_path / "runs"), "sleep": 0}) for _ in range(3)]
    for job_id in ids:
        assert survivor.wait(job_id, timeout=10)["status"] == "completed"
    assert time.monotonic() - started < 3.0


def test_ctrl_c_while_asyncio_run_still_runs_ends_an_in_process_consumer(
        survivor: MLQ, own_redis: EmbeddedServer, namespace: str) -> None:
    # asyncio.run's own SIGINT handler turns Ctrl-C into a KeyboardInterrupt that ends
    # the main thread: the consumer's threads must stop too, or the process never exits
    still_running = SCRIPT.replace('print("consuming", flush=True)',
                                   'print("consuming", flush=True)\n    await asyncio.sleep(60)')
    process = subprocess.Popen([sys.executable, "-c", still_running, namespace, own_redis.url],
                               cwd=ROOT, env=base_env(PYTHONPATH=str(ROOT)),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "consuming"
        wait_until(lambda: idle_listed(survivor, 1), 10, "the worker waiting as idle")
        process.send_signal(signal.SIGINT)
        assert process.wait(10) != 0  # KeyboardInterrupt, as Ctrl-C ends any script
        assert survivor.client.zcard(survivor.keys.idle("default")) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_in_process_consumer_leaves_the_idle_lists_when_its_process_ends(
        survivor: MLQ, victim: subprocess.Popen[str], tmp_path: Path, signum: int) -> None:
    wait_until(lambda: idle_listed(survivor, 1), 10, "worker A waiting as idle")
    victim.send_signal(signum)
    victim.wait(10)
    assert survivor.client.zcard(survivor.keys.idle("default")) == 0
    job_id = survivor.post({"log": str(tmp_path / "runs"), "sleep": 0})
    assert survivor.get_job(job_id)["status"] == "queued"  # handed to nobody


def test_a_sigterm_to_the_whole_process_group_lets_running_jobs_finish(
        own_redis: EmbeddedServer, namespace: str, survivor: MLQ, commands: Commands,
        tmp_path: Path) -> None:
    # systemd's default, and some process managers': SIGTERM to every process at once
    consumer = commands.start(
        "consumer", "consumer", "--import", "tests.faults.listeners:record",
        "--concurrency", "2", "--redis_url", own_redis.url, "--namespace", namespace,
        env=base_env())
    wait_until(lambda: idle_listed(survivor, 2), 30, "the consumer's workers idle")
    log = tmp_path / "runs"
    job_id = survivor.post({"log": str(log), "sleep": 2})
    wait_until(lambda: len(log_lines(log)) == 2, 10, "the job running")
    os.killpg(consumer.pgid, signal.SIGTERM)
    assert consumer.process.wait(30) == 0
    record = survivor.get_job(job_id)
    assert (record["status"], record["attempt"], record["retries"]) == ("completed", 1, 0)
    assert len(log_lines(log)) == 2  # it ran once


def test_a_second_group_sigterm_puts_running_jobs_back(
        own_redis: EmbeddedServer, namespace: str, survivor: MLQ, commands: Commands,
        tmp_path: Path) -> None:
    consumer = commands.start(
        "consumer", "consumer", "--import", "tests.faults.listeners:record",
        "--redis_url", own_redis.url, "--namespace", namespace, env=base_env())
    wait_until(lambda: idle_listed(survivor, 1), 30, "the consumer's worker idle")
    log = tmp_path / "runs"
    job_id = survivor.post({"log": str(log), "sleep": 30})
    wait_until(lambda: len(log_lines(log)) == 2, 10, "the job running")
    os.killpg(consumer.pgid, signal.SIGTERM)
    # a pause, not a wait: the first signal must be handled before the second comes,
    # and handling it leaves no trace to watch for
    time.sleep(0.5)
    os.killpg(consumer.pgid, signal.SIGTERM)
    assert consumer.process.wait(30) == 0
    record = survivor.get_job(job_id)
    assert record["status"] == "queued" and record["retries"] == 1


def always_fails(msg: Any, *args: Any) -> None:
    raise RuntimeError("fails at once, every time")


def test_two_requeue_alls_at_once_requeue_each_dead_letter_at_most_once_each(survivor: MLQ) -> None:
    survivor.create_listener(always_fails)
    ids = survivor.post_many(list(range(200)))
    for job_id in ids:
        assert survivor.wait(job_id, timeout=20)["status"] == "failed"
    assert len(survivor.dead_letters()) == 200
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(survivor.requeue_dead()))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Each command requeues the set it claimed, each dead letter at most once, though
    # every re-run fails at once and lands in the dead letters again. Between them
    # they requeue every one; one that failed again before the second command
    # claimed its set is that command's to requeue too (once more in all).
    assert len(counts) == 2 and max(counts) <= 200 and sum(counts) >= 200, counts
    wait_until(lambda: len(survivor.dead_letters()) == 200, 20, "every job dead again")
    attempts = [survivor.get_job(i)["attempt"] for i in ids]
    assert min(attempts) >= 2 and sum(attempts) == 200 + sum(counts), (counts, attempts)


def test_a_requeue_all_that_died_midway_gives_its_claim_back(survivor: MLQ,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    survivor.create_listener(always_fails)
    ids = survivor.post_many(list(range(5)))
    for job_id in ids:
        survivor.wait(job_id, timeout=20)
    survivor.shutdown(timeout=10)
    # a command that claimed them and died before requeueing any
    survivor.scripts.claim_dead("dead-command", time.time() - 120, time.time() - 180)
    assert survivor.dead_letters() == []
    assert survivor.purge_dead() == 5  # the next command folds the abandoned claim back
    assert survivor.dead_letters() == []


def test_grace_period_puts_back_what_is_still_running(
        own_redis: EmbeddedServer, namespace: str, survivor: MLQ, commands: Commands,
        tmp_path: Path) -> None:
    consumer = commands.start(
        "consumer", "consumer", "--import", "tests.faults.listeners:record",
        "--concurrency", "2", "--grace_period", "1", "--redis_url", own_redis.url,
        "--namespace", namespace, env=base_env())
    wait_until(lambda: idle_listed(survivor, 2), 30, "the consumer's workers idle")
    log = tmp_path / "runs"
    short = survivor.post({"log": str(log), "sleep": 0.3})
    long = survivor.post({"log": str(log), "sleep": 30})
    wait_until(lambda: len(log_lines(log)) == 4, 10, "both jobs running")
    consumer.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert consumer.process.wait(30) == 0
    assert time.monotonic() - started < 10
    assert survivor.get_job(short)["status"] == "completed"  # finished within the grace
    record = survivor.get_job(long)
    assert record["status"] == "queued" and record["retries"] == 1  # put back after it
