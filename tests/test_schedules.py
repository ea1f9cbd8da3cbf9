"""Periodic (cron) jobs: defining them, and firing each slot exactly once."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any

import pytest

from mlq import MLQ
from mlq.errors import InvalidMessage, InvalidName
from mlq.schedules import Schedules

UTC = timezone.utc


def _at(*parts: int) -> float:
    """Epoch seconds of a UTC wall-clock time."""
    return datetime(*parts, tzinfo=UTC).timestamp()


def test_add_lists_the_next_run_in_the_schedules_timezone(q: MLQ) -> None:
    schedules = Schedules(q)
    winter = _at(2024, 1, 15, 12, 0)
    added = schedules.add("report", "0 8 * * *", {"kind": "daily"}, timezone="Europe/Berlin",
                          queue="reports", functions="make_report", priority=3, timeout=60,
                          now=winter)
    [listed] = schedules.list()
    assert listed == added
    assert listed["next_run"] == _at(2024, 1, 16, 7, 0)  # 08:00 in Berlin is 07:00 UTC (CET)
    assert listed["msg"] == {"kind": "daily"} and listed["queue"] == "reports"
    assert listed["functions"] == ["make_report"] and listed["priority"] == 3
    assert listed["timeout"] == 60 and listed["timezone"] == "Europe/Berlin"
    assert listed["last_run"] is None and listed["last_job"] is None
    # in summer the same local time is an hour earlier in UTC (CEST)
    summer = schedules.add("report", "0 8 * * *", "x", timezone="Europe/Berlin",
                           now=_at(2024, 7, 15, 12, 0))
    assert summer["next_run"] == _at(2024, 7, 16, 6, 0)


def test_re_adding_a_name_replaces_it_and_remove_deletes_it(q: MLQ) -> None:
    schedules = Schedules(q)
    now = _at(2024, 1, 15, 12, 0, 30)
    schedules.add("tick", "* * * * *", "old", now=now)
    schedules.add("tock", "0 * * * *", "other", now=now)
    schedules.add("tick", "*/5 * * * *", "new", queue="q2", now=now)
    listed = schedules.list()
    assert [s["name"] for s in listed] == ["tick", "tock"]
    assert listed[0]["msg"] == "new" and listed[0]["queue"] == "q2"
    assert listed[0]["next_run"] == _at(2024, 1, 15, 12, 5)
    assert schedules.remove("tick") is True
    assert schedules.remove("tick") is False
    assert [s["name"] for s in schedules.list()] == ["tock"]
    assert schedules.fire_due(now=_at(2024, 1, 15, 12, 5)) == []  # tick is gone


@pytest.mark.parametrize("args, options, error", [
    (("s", "61 * * * *", "m"), {}, InvalidMessage),
    (("s", "every minute", "m"), {}, InvalidMessage),
    (("s", None, "m"), {}, InvalidMessage),
    (("s", "* * * * *", "m"), {"timezone": "Mars/Olympus_Mons"}, InvalidMessage),
    (("s", "* * * * *", "m"), {"timezone": "../etc/passwd"}, InvalidMessage),
    (("bad name", "* * * * *", "m"), {}, InvalidName),
    (("a:b", "* * * * *", "m"), {}, InvalidName),
    (("s", "* * * * *", "m"), {"queue": "no/slashes"}, InvalidName),
    (("s", "* * * * *", "m"), {"functions": ["ok", "not ok"]}, InvalidName),
    (("s", "* * * * *", "m"), {"priority": 10}, InvalidMessage),
    (("s", "* * * * *", object()), {}, InvalidMessage),
])
def test_invalid_definitions_store_nothing(q: MLQ, args: tuple[Any, ...],
                                           options: dict[str, Any],
                                           error: type[Exception]) -> None:
    schedules = Schedules(q)
    with pytest.raises(error):
        schedules.add(*args, **options)
    assert schedules.list() == []
    assert not q.client.exists(q.keys.schedules, q.keys.schedule_times)


def test_unparseable_cron_error_names_the_expression(q: MLQ) -> None:
    with pytest.raises(InvalidMessage, match="61 \\* \\* \\* \\*"):
        Schedules(q).add("s", "61 * * * *", "m")


def test_a_message_over_the_size_limit_is_refused(redis_url: str, namespace: str) -> None:
    with MLQ(namespace, redis_url=redis_url, max_message_size=100) as small:
        with pytest.raises(InvalidMessage, match="exceeds"):
            Schedules(small).add("big", "* * * * *", "x" * 200)
        assert Schedules(small).list() == []


def test_fire_due_posts_one_job_per_slot(q: MLQ) -> None:
    schedules = Schedules(q)
    schedules.add("hourly", "0 * * * *", {"n": 1}, queue="batch", functions=["train"],
                  now=_at(2024, 1, 15, 12, 10))
    assert schedules.fire_due(now=_at(2024, 1, 15, 12, 59, 59)) == []
    [job_id] = schedules.fire_due(now=_at(2024, 1, 15, 13, 0))
    job = q.get_job(job_id)
    assert job["msg"] == {"n": 1} and job["queue"] == "batch"
    assert job["functions"] == ["train"]
    assert schedules.fire_due(now=_at(2024, 1, 15, 13, 0)) == []
    assert schedules.fire_due(now=_at(2024, 1, 15, 13, 30)) == []
    [listed] = schedules.list()
    assert listed["last_run"] == _at(2024, 1, 15, 13, 0) and listed["last_job"] == job_id
    assert listed["next_run"] == _at(2024, 1, 15, 14, 0)
    assert q.stats()["posted"] == 1


def test_concurrent_firers_in_separate_clients_post_one_job(q: MLQ, redis_url: str,
                                                            namespace: str) -> None:
    Schedules(q).add("nightly", "0 0 * * *", "run", now=_at(2024, 1, 15, 12, 0))
    due = _at(2024, 1, 16, 0, 0, 5)
    clients = [MLQ(namespace, redis_url=redis_url) for _ in range(3)]
    start = threading.Barrier(len(clients))
    fired: list[list[str]] = []
    errors: list[BaseException] = []

    def fire(client: MLQ) -> None:
        try:
            start.wait(5)
            fired.append(Schedules(client).fire_due(now=due))
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=fire, args=(client,)) for client in clients]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for client in clients:
            client.close()
    assert not errors
    ids = {job_id for result in fired for job_id in result}
    assert len(ids) == 1
    assert q.stats()["posted"] == 1
    [listed] = Schedules(q).list()
    assert listed["last_job"] in ids and listed["next_run"] == _at(2024, 1, 17, 0, 0)


def test_missed_slots_fire_once_then_resume_after_now(q: MLQ) -> None:
    schedules = Schedules(q)
    schedules.add("minutely", "* * * * *", "ping", now=_at(2024, 1, 15, 12, 0))
    later = _at(2024, 1, 15, 13, 0, 30)  # an hour of slots passed with nothing firing
    assert len(schedules.fire_due(now=later)) == 1
    assert q.stats()["posted"] == 1
    [listed] = schedules.list()
    assert listed["next_run"] == _at(2024, 1, 15, 13, 1)
    assert schedules.fire_due(now=later) == []


def test_a_schedule_removed_while_firing_stays_removed(q: MLQ, monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    schedules = Schedules(q)
    schedules.add("once", "* * * * *", "m", now=_at(2024, 1, 15, 12, 0))
    post = q.post

    def post_then_remove(*args: Any, **kwargs: Any) -> str:
        job_id = post(*args, **kwargs)
        schedules.remove("once")  # another process removes it between post and advance
        return job_id

    monkeypatch.setattr(q, "post", post_then_remove)
    assert len(schedules.fire_due(now=_at(2024, 1, 15, 12, 1))) == 1
    assert schedules.list() == []
    assert not q.client.exists(q.keys.schedules, q.keys.schedule_times)


def test_a_broken_definition_is_skipped_with_a_warning(q: MLQ,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    schedules = Schedules(q)
    schedules.add("good", "* * * * *", "m", now=_at(2024, 1, 15, 12, 0))
    q.client.hset(q.keys.schedules, "broken", b"\xc1")  # not msgpack
    q.client.zadd(q.keys.schedule_times, {"broken": _at(2024, 1, 15, 12, 1)})
    with caplog.at_level(logging.WARNING, logger="mlq"):
        fired = schedules.fire_due(now=_at(2024, 1, 15, 12, 1))
    assert len(fired) == 1 and q.get_job(fired[0])["msg"] == "m"
    assert any("broken" in record.getMessage() for record in caplog.records)
