"""The MLQ facade against a real server: posting, records, data, clearing."""

from __future__ import annotations

import time

import pytest
import redis

from mlq import MLQ, InvalidMessage, JobNotFound, MLQError
from mlq.record import new_fields
from tests.conftest import wait_until


def test_ids_are_a_counter_from_one(q: MLQ) -> None:
    assert [q.post(i) for i in range(3)] == ["1", "2", "3"]
    assert q.job_count() == 3


def test_rejected_post_takes_no_id(q: MLQ) -> None:
    with pytest.raises(InvalidMessage) as info:
        q.post({"bad": object()})
    assert isinstance(info.value, ValueError) and isinstance(info.value, MLQError)
    for bad_option in ({"timeout": -1}, {"timeout": "x"}, {"callback": 5}, {"functions": [1]}):
        with pytest.raises(InvalidMessage):
            q.post("m", **bad_option)
    assert q.post("ok") == "1"


def test_record_has_every_field(q: MLQ) -> None:
    before = time.time()
    job_id = q.post({"my_data": 1}, callback="http://x/cb", functions=["f"], timeout=30)
    record = q.get_job(job_id)
    for key in ("id", "timestamp", "worker", "processing_started", "processing_finished",
                "progress", "short_result", "result", "callback", "retries", "functions",
                "msg", "status", "error"):
        assert key in record
    assert record["id"] == job_id and record["status"] == "queued"
    assert record["msg"] == {"my_data": 1} and record["functions"] == ["f"]
    assert record["callback"] == "http://x/cb" and record["timeout"] == 30
    assert record["retries"] == 0 and record["progress"] is None and record["worker"] is None
    assert before <= record["timestamp"] <= time.time()
    assert q.get_result(job_id) == record
    assert q.get_progress(job_id) == "[queued; not started]"


@pytest.mark.parametrize("msg", [
    {"a": [1, 2.5, None, True]}, [1, "x"], "text", 42, 4.25, False, None, b"\x00\xffbytes",
])
def test_messages_round_trip_with_their_types(q: MLQ, msg: object) -> None:
    assert q.get_job(q.post(msg))["msg"] == msg


@pytest.mark.parametrize("bad_id", ["999", "abc", "-1", "../../etc/passwd", "1" * 30, ""])
def test_unknown_ids(q: MLQ, bad_id: str) -> None:
    with pytest.raises(JobNotFound) as info:
        q.get_job(bad_id)
    assert isinstance(info.value, KeyError)
    with pytest.raises(JobNotFound):
        q.get_progress(bad_id)


def test_store_and_fetch_data(q: MLQ) -> None:
    key = q.store_data(b"\x00binary")
    assert len(key) == 32 and q.fetch_data(key) == b"\x00binary"
    assert q.store_data("text", key="mine") == "mine"
    assert q.fetch_data("mine") == b"text"
    assert q.fetch_data("missing") is None
    q.store_data("short-lived", key="brief", expiry=0.05)
    wait_until(lambda: q.fetch_data("brief") is None, 10, "the short-lived data to expire")


def test_clear_all_touches_only_its_namespace(redis_url: str, namespace: str, q: MLQ) -> None:
    other = MLQ(namespace + "_other", redis_url=redis_url)
    other.post("keep me")
    q.post("a")
    q.store_data("x", key="k")
    assert q.clear_all() > 0
    assert q.job_count() == 0 and q.fetch_data("k") is None
    assert q.post("again") == "1"  # the counter starts over
    assert other.get_job("1")["msg"] == "keep me"
    other.clear_all()


def test_wait_times_out(q: MLQ) -> None:
    job_id = q.post("never taken")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        q.wait(job_id, timeout=0.3)
    assert time.monotonic() - started < 2


def test_unreachable_redis_raises_connection_error() -> None:
    from mlq.embedded import free_port
    mlq = MLQ("x", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(redis.ConnectionError):
        mlq.post("m")


def test_post_many_keeps_order_and_checks_first(q: MLQ) -> None:
    assert q.post_many([{"n": i} for i in range(1200)]) == [str(i) for i in range(1, 1201)]
    assert q.job_count() == 1200
    assert q.get_job("1200")["msg"] == {"n": 1199}
    with pytest.raises(InvalidMessage):
        q.post_many(["fine", object()])
    assert q.job_count() == 1200 and q.post("next") == "1201"


def test_list_jobs_pages_newest_first_by_status_and_queue(q: MLQ) -> None:
    from mlq.worker import Worker
    ids = [q.post(n) for n in range(5)] + [q.post(n, queue="gpu") for n in range(3)]
    worker = Worker(q, "w", queues=("gpu",))
    taken = worker.take(0, count=2)
    total, page = q.list_jobs(limit=3)
    assert total == 8 and [r["id"] for r in page] == ids[::-1][:3]
    assert "result" not in page[0]
    total, page = q.list_jobs(offset=3, limit=3)
    assert [r["id"] for r in page] == ids[::-1][3:6]
    assert q.list_jobs(status="started")[0] == 2
    total, page = q.list_jobs(status="queued", queue="gpu")
    assert total == 1 and page[0]["id"] == ids[7]
    assert q.list_jobs(status="queued", queue="default")[0] == 5
    q.scripts.finish(taken[0]["id"], "w", 1, "failed", 0.0, [])
    assert [r["id"] for r in q.list_jobs(status="failed")[1]] == [taken[0]["id"]]
    q.purge_dead()
    assert q.list_jobs()[0] == 7 and q.list_jobs(status="failed")[0] == 0
    with pytest.raises(InvalidMessage):
        q.list_jobs(status="bogus")
    assert not [k for k in q.client.scan_iter(match=q.keys.prefix + "index:tmp:*")]


def test_registry_info(q: MLQ) -> None:
    def f(msg: object, *args: object) -> None:
        return None

    before = time.time()
    q.register_listener(f)
    (info,) = q.registry.info()
    assert info["name"] == "f" and info["size"] > 0 and before <= info["registered"] <= time.time()


def test_a_post_sent_twice_makes_one_job(q: MLQ) -> None:
    fields = new_fields("m", None, None, None, "default", max_message_size=q.max_message_size)
    first = q.scripts.post("default", fields, token="fixed-token")
    assert q.scripts.post("default", fields, token="fixed-token") == first
    assert q.job_count() == 1  # one job, whatever the retries
    # the retry took no id: the next post gets the one after the first
    assert int(q.post("next")) == int(first) + 1 and q.stats()["posted"] == 2
