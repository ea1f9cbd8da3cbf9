"""The lifecycle commands through real subprocesses (docs/lifecycle.md, docs/cli.md):
post's lifecycle flags, cancel, cron and queue."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from mlq.errors import JobNotFound
from mlq.queue import MLQ

from ..conftest import wait_until
from .conftest import Result

pytestmark = pytest.mark.timeout(60)

Cli = Callable[..., Result]


# -- listeners run by the in-process consumer of a test -----------------------------------
def echo(msg: Any, context: dict[str, Any]) -> Any:
    return msg


def until_cancelled(msg: Any, context: dict[str, Any]) -> str:
    """Runs until its job is cancelled (bounded, so a broken cancel cannot hang a test)."""
    deadline = time.monotonic() + 30
    while not context["cancelled"]() and time.monotonic() < deadline:
        time.sleep(0.02)  # the pause between two looks at the flag
    return "stopped"


def closing(mlq: MLQ) -> Iterator[MLQ]:
    """Yield `mlq`, then stop its in-process workers and close it: an MLQ left to the
    garbage collector may have a socket finalized before the connection that would
    close it, a ResourceWarning that fails the session."""
    yield mlq
    mlq.shutdown(timeout=10)
    # the registry follower leaves within a second of the stop; closing the client
    # under it would only make it log a lost connection
    wait_until(lambda: not any(thread.name == "mlq-registry" and thread.is_alive()
                               for thread in threading.enumerate()),
               10, "the registry follower to leave")
    mlq.close()


@pytest.fixture
def queue(redis_url: str, namespace: str) -> Iterator[MLQ]:
    """This test's namespace (as tests/cli/conftest.py's fixture, closed at the end)."""
    yield from closing(MLQ(namespace, redis_url=redis_url))


@pytest.fixture
def gpu_first(redis_url: str, namespace: str) -> Iterator[MLQ]:
    """An MLQ whose in-process workers prefer queue gpu to default."""
    yield from closing(MLQ(namespace, redis_url=redis_url, queues=("gpu", "default")))


def posted_id(done: Result) -> str:
    assert done.rc == 0, (done.out, done.err)
    return done.out.strip()


def status_of(cli: Cli, job_id: str) -> str:
    return json.loads(cli("status", job_id).out)["status"]


# -- post ---------------------------------------------------------------------------------
def test_post_delay_is_scheduled_until_then(cli: Cli, queue: MLQ) -> None:
    before = time.time()
    job_id = posted_id(cli("post", "later", "--delay", "3600"))
    assert status_of(cli, job_id) == "scheduled"
    due = queue.get_job(job_id)["next_attempt_at"]
    assert before + 3600 <= due <= time.time() + 3600
    assert queue.job_count("default") == 0


def test_post_at_takes_iso_8601_and_epoch_seconds(cli: Cli, queue: MLQ) -> None:
    # a year ahead: far enough not to come due, near enough for MLQ's bound
    when = datetime.fromtimestamp(int(time.time()) + 365 * 86400, timezone.utc)
    iso = posted_id(cli("post", "x", "--at", when.strftime("%Y-%m-%dT%H:%M:%SZ")))
    expected = when.timestamp()
    assert queue.get_job(iso)["status"] == "scheduled"
    assert queue.get_job(iso)["next_attempt_at"] == expected
    epoch = posted_id(cli("post", "x", "--at", str(int(expected))))
    assert queue.get_job(epoch)["next_attempt_at"] == expected


def test_post_at_an_unreadable_time_exits_2_and_posts_nothing(cli: Cli, queue: MLQ) -> None:
    for bad in ("next tuesday", "2026-13-45T99:00:00Z", "nan"):
        line = cli("post", "x", "--at", bad).assert_one_line_error()
        assert "--at" in line and ("not a time" in line or "finite" in line), line
    assert queue.stats()["posted"] == 0
    with pytest.raises(JobNotFound):
        queue.get_job(1)


def test_post_key_twice_gives_the_same_id(cli: Cli, queue: MLQ) -> None:
    first = cli("post", "resize", "--key", "resize:42")
    job_id = posted_id(first)
    assert "duplicate" not in first.err
    again = cli("post", "resize", "--key", "resize:42", "--key_ttl", "60")
    assert posted_id(again) == job_id
    assert "duplicate" in again.err and job_id in again.err
    assert queue.stats()["posted"] == 1
    assert posted_id(cli("post", "resize", "--key", "resize:43")) != job_id


def test_post_retry_expiry_and_dependency_flags_reach_the_record(cli: Cli, queue: MLQ) -> None:
    first = posted_id(cli("post", "a"))
    second = posted_id(cli("post", "b"))
    job_id = posted_id(cli("post", "c", "--retries", "3", "--backoff", "2",
                           "--backoff-max", "10", "--retry_on", "ValueError",
                           "--retry_on", "requests.exceptions.ConnectionError",
                           "--expires", "60", "--depends_on", first,
                           "--depends-on", second))
    record = queue.get_job(job_id)
    assert record["retry"] == {"retries": 3, "backoff": 2.0, "backoff_max": 10.0,
                               "retry_on": ["ValueError", "requests.exceptions.ConnectionError"]}
    assert time.time() < record["expires_at"] <= time.time() + 60
    assert record["depends_on"] == [first, second]
    assert record["status"] == "deferred"


@pytest.mark.parametrize("args, says", [
    (("--retries", "101"), "'--retries': 101 is not in the range"),
    (("--delay", "-1"), "'--delay': -1.0 is not in the range"),
    (("--delay", "inf"), "delay must be a finite number"),
    (("--expires", "0"), "'--expires': 0.0 is not in the range"),
    (("--key_ttl", "5"), "key_ttl needs a key"),
    (("--key", ""), "key must be a non-empty string"),
    (("--depends_on", "999"), "depends_on: no job 999"),
    (("--depends_on", "abc"), "depends_on: 'abc' is not a job id"),
    (("--delay", "5", "--at", "2030-01-01"), "give delay or at, not both"),
    (("--at", "2999-01-01"), "at most ten years ahead"),
])
def test_bad_lifecycle_flags_exit_2_and_post_nothing(cli: Cli, queue: MLQ,
                                                     args: tuple[str, ...], says: str) -> None:
    assert says in cli("post", "x", *args).assert_one_line_error()
    assert queue.stats()["posted"] == 0


# -- cancel -------------------------------------------------------------------------------
def test_cancel_a_queued_job(cli: Cli, queue: MLQ) -> None:
    job_id = queue.post("never run")
    done = cli("cancel", job_id)
    assert (done.rc, done.out) == (0, f"{job_id}\n"), done.err
    assert status_of(cli, job_id) == "cancelled"
    assert queue.job_count("default") == 0
    again = cli("cancel", job_id)
    assert again.assert_one_line_error(rc=1) == "Error: nothing cancelled"
    assert f"job {job_id} had already ended (cancelled)" in again.err


def test_cancel_an_unknown_id_exits_1(cli: Cli, queue: MLQ) -> None:
    for unknown in ("999", "abc"):
        done = cli("cancel", unknown)
        assert done.rc == 1 and done.out == ""
        assert unknown in done.err and "Traceback" not in done.err


def test_cancel_several_reports_each_and_succeeds_if_one_was_cancelled(cli: Cli,
                                                                        queue: MLQ) -> None:
    waiting = queue.post("a")
    ended = queue.post("b")
    queue.cancel(ended)
    done = cli("cancel", waiting, "999", ended)
    assert (done.rc, done.out) == (0, f"{waiting}\n")
    assert "999" in done.err and f"job {ended} had already ended" in done.err
    assert queue.get_job(waiting)["status"] == "cancelled"


def test_cancel_a_queue_cancels_its_waiting_jobs_only(cli: Cli, queue: MLQ) -> None:
    gpu = [queue.post(n, queue="gpu") for n in range(2)]
    gpu.append(queue.post("later", queue="gpu", delay=3600))
    other = queue.post("stays")
    done = cli("cancel", "--queue", "gpu")
    assert done.rc == 0, done.err
    assert sorted(done.out.split()) == sorted(gpu)
    assert {queue.get_job(i)["status"] for i in gpu} == {"cancelled"}
    assert queue.get_job(other)["status"] == "queued"
    assert "no waiting or running job" in cli("cancel", "--queue", "gpu").assert_one_line_error(1)


def test_cancel_a_running_job_asks_it_to_stop(cli: Cli, gpu_first: MLQ) -> None:
    queue = gpu_first
    queue.create_listener(until_cancelled)
    job_id = queue.post("loop")
    wait_until(lambda: queue.get_job(job_id)["status"] == "started", 20, "the job to start")
    done = cli("cancel", job_id)
    assert (done.rc, done.out) == (0, f"{job_id}\n"), done.err
    assert queue.wait(job_id, timeout=20)["status"] == "cancelled"


@pytest.mark.parametrize("args, says", [
    ((), "give job ids or --queue NAME"),
    (("1", "--queue", "gpu"), "give job ids or --queue NAME"),
    (("--queue", "no/such"), "queue 'no/such' is not a valid name"),
])
def test_cancel_usage_errors_exit_2(cli: Cli, queue: MLQ, args: tuple[str, ...],
                                    says: str) -> None:
    job_id = queue.post("x", queue="gpu")
    assert says in cli("cancel", *args).assert_one_line_error()
    assert queue.get_job(job_id)["status"] == "queued"


# -- cron ---------------------------------------------------------------------------------
def test_cron_add_list_remove(cli: Cli, queue: MLQ) -> None:
    added = cli("cron", "add", "nightly", "0 2 * * *", '{"report": "daily"}', "--queue", "cpu",
                "--timezone", "Europe/Berlin", "--functions", "a,b", "--priority", "3",
                "--timeout", "30")
    assert added.rc == 0, added.err
    assert added.out.startswith("nightly: next run ") and "T02:00:00+0" in added.out
    assert cli("cron", "add", "ping", "*/5 * * * *", "ping").rc == 0
    (entry,) = [e for e in queue.schedules() if e["name"] == "nightly"]
    assert entry["msg"] == {"report": "daily"} and entry["functions"] == ["a", "b"]
    assert (entry["queue"], entry["priority"], entry["timeout"]) == ("cpu", 3, 30)
    assert [e["msg"] for e in queue.schedules() if e["name"] == "ping"] == ["ping"]

    lines = cli("cron", "list").out.splitlines()
    assert lines[0].split() == ["NAME", "CRON", "TIMEZONE", "QUEUE", "NEXT", "RUN", "LAST", "JOB"]
    assert lines[1].startswith("nightly") and "0 2 * * *" in lines[1]
    assert "Europe/Berlin" in lines[1] and "cpu" in lines[1] and lines[1].endswith("-")
    assert lines[2].split()[:1] == ["ping"] and "UTC" in lines[2]
    listed = json.loads(cli("cron", "list", "--json").out)
    assert [e["name"] for e in listed] == ["nightly", "ping"]
    assert listed[0]["next_run"] == entry["next_run"]

    assert cli("cron", "remove", "nightly").out == "removed nightly\n"
    assert [e["name"] for e in queue.schedules()] == ["ping"]
    assert "no schedule 'nightly'" in cli("cron", "remove", "nightly").assert_one_line_error(1)


@pytest.mark.parametrize("args, says", [
    (("bad", "61 * * * *", "x"), "CRON"),
    (("bad", "every day", "x"), "CRON"),
    (("bad", "* * * * *", "x", "--timezone", "Mars/Olympus"), "timezone"),
    (("bad name", "* * * * *", "x"), "schedule"),
    (("bad", "* * * * *", "x", "--priority", "10"), "priority"),
])
def test_cron_add_refuses_bad_input_with_exit_2(cli: Cli, queue: MLQ, args: tuple[str, ...],
                                                says: str) -> None:
    assert says in cli("cron", "add", *args).assert_one_line_error()
    assert queue.schedules() == []


# -- queue --------------------------------------------------------------------------------
def test_queue_pause_list_resume(cli: Cli, gpu_first: MLQ) -> None:
    assert cli("queue", "pause", "gpu").out == "paused gpu\n"
    held = gpu_first.post("held", queue="gpu")
    free = gpu_first.post("free")
    listed = {row["name"]: row for row in json.loads(cli("queue", "list", "--json").out)}
    assert listed["gpu"] == {"name": "gpu", "waiting": 1, "paused": True}
    assert listed["default"] == {"name": "default", "waiting": 1, "paused": False}
    table = cli("queue", "list").out.splitlines()
    assert table[0].split() == ["NAME", "WAITING", "PAUSED"]
    assert ["gpu", "1", "yes"] in [line.split() for line in table]

    # one worker that prefers gpu: it takes the default job while gpu's waits
    gpu_first.create_listener(echo, concurrency=1)
    assert gpu_first.wait(free, timeout=20)["status"] == "completed"
    assert gpu_first.get_job(held)["status"] == "queued"
    assert cli("queue", "resume", "gpu").out == "resumed gpu\n"
    assert gpu_first.wait(held, timeout=20)["status"] == "completed"
    assert gpu_first.paused() == []
    assert "was not paused" in cli("queue", "resume", "gpu").err


def test_queue_list_shows_a_paused_queue_without_jobs(cli: Cli, queue: MLQ) -> None:
    cli("queue", "pause", "idle")
    rows = json.loads(cli("queue", "list", "--json").out)
    assert {"name": "idle", "waiting": 0, "paused": True} in rows


@pytest.mark.parametrize("args, says", [
    (("pause", "no/such"), "queue 'no/such' is not a valid name"),
    (("resume", "x y"), "queue 'x y' is not a valid name"),
    (("pause",), "Missing argument 'NAME'"),
])
def test_queue_bad_names_exit_2(cli: Cli, queue: MLQ, args: tuple[str, ...], says: str) -> None:
    assert says in cli("queue", *args).assert_one_line_error()
    assert queue.paused() == []
