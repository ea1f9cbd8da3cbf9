"""Big results kept in a key of their own: the library hands them back whole, and the
key lives and dies with its record (expiry, dead letters, clear_all, fenced finishes)."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest

from mlq import MLQ, JobNotFound, defaults
from mlq.dispatch import dispatcher
from mlq.record import STORED_RESULT
from mlq.serialization import ApartResult, unpack
from mlq.worker import Worker
from tests.cli.conftest import run_controller
from tests.conftest import wait_until

SIZE = 2 * defaults.STORED_APART + 12345
BLOB = random.Random(7).randbytes(SIZE)
TEXT = "é" * (SIZE // 2)  # two UTF-8 bytes a character


def big(msg: Any, *args: Any) -> Any:
    return {"bytes": BLOB, "text": TEXT, "pair": ("short", BLOB)}.get(msg, msg)


def _run(q: MLQ, msg: Any, worker_id: str = "w") -> str:
    job_id = q.post(msg, functions=["big"])
    assert Worker(q, worker_id, local_listeners={"big": big}).step()
    return job_id


def test_big_results_are_kept_apart_and_read_back_whole(q: MLQ) -> None:
    ids = {msg: _run(q, msg) for msg in ("bytes", "text", "pair", "small")}
    for msg, value in (("bytes", BLOB), ("text", TEXT), ("pair", BLOB), ("small", "small")):
        record = q.get_job(ids[msg])
        assert record["status"] == "completed" and record["result"] == value
        assert STORED_RESULT not in record
        assert q.wait(ids[msg], timeout=5)["result"] == value
        assert q.block_until_result(ids[msg], timeout=5) == value
        assert q.get_job(ids[msg], fields=("result",))["result"] == value
    assert q.get_job(ids["pair"])["short_result"] == "short"
    # in Redis: a nil result and a marker in the record, the bytes in their own key
    raw = q.client.hgetall(q.keys.job(ids["text"]))
    assert unpack(raw[b"result"]) is None
    assert unpack(raw[STORED_RESULT.encode()]) == {"size": len(TEXT.encode()), "type": "str"}
    assert q.client.get(q.keys.result(ids["text"])) == TEXT.encode()
    assert not q.client.exists(q.keys.result(ids["small"]))


def test_a_waiter_woken_by_the_finish_gets_the_whole_result(q: MLQ) -> None:
    job_id = q.post("bytes", functions=["big"])
    got: dict[str, Any] = {}
    waiting = threading.Thread(target=lambda: got.update(q.wait(job_id, timeout=10)))
    waiting.start()
    # the finish hands a small record to a listener: wait until the waiter is one
    wait_until(lambda: dispatcher(q.client, q.keys).listeners() == 1, 10, "the waiter to listen",
               interval=0.01)
    assert Worker(q, "w", local_listeners={"big": big}).step()
    waiting.join(10)
    assert got["result"] == BLOB


def test_a_submitted_function_returns_its_big_value(q: MLQ) -> None:
    job = q.submit(lambda n: b"x" * n, SIZE)
    assert Worker(q, "w").step()
    assert job.result(timeout=5) == b"x" * SIZE


def test_the_result_key_expires_with_its_record(redis_url: str, namespace: str) -> None:
    q = MLQ(namespace, redis_url=redis_url, result_ttl=60)
    try:
        job_id = _run(q, "bytes")
        record_ttl = q.client.pttl(q.keys.job(job_id))
        result_ttl = q.client.pttl(q.keys.result(job_id))
        assert 0 < record_ttl <= 60_000 and record_ttl < result_ttl <= 61_000
    finally:
        q.clear_all()


def test_clear_all_deletes_result_keys(q: MLQ) -> None:
    job_id = _run(q, "bytes")
    assert q.clear_all() > 0
    assert not q.client.exists(q.keys.result(job_id))
    with pytest.raises(JobNotFound):
        q.get_job(job_id)


def test_a_fenced_late_finish_writes_no_result_key(q: MLQ) -> None:
    job_id = q.post("m")
    first = Worker(q, "w1", clock=lambda: 1000.0).take(0)
    assert first and first[0]["attempt"] == 1
    # the first attempt is taken back (its worker looked dead) and runs again elsewhere
    assert q.recover_job(job_id, "w1", max_retries=5, now=1001.0, reason="test") == 1
    late = ["result", ApartResult(b"late" * SIZE, "bytes")]
    assert q.scripts.finish(job_id, "w1", 1, "completed", 1002.0, late) == 0
    assert not q.client.exists(q.keys.result(job_id))
    second = Worker(q, "w2", clock=lambda: 1003.0).take(0)
    assert second and second[0]["attempt"] == 2
    current = ["result", ApartResult(BLOB, "bytes")]
    assert q.scripts.finish(job_id, "w2", 2, "completed", 1004.0, current) == 1
    assert q.scripts.finish(job_id, "w1", 1, "completed", 1005.0, late) == 0
    assert q.get_job(job_id)["result"] == BLOB


def test_dead_letters_requeued_or_purged_leave_no_result_key(q: MLQ) -> None:
    ids = [q.post("m") for _ in range(2)]
    worker = Worker(q, "w", clock=lambda: 1000.0)
    for job_id in ids:
        worker.take(0)
        assert q.scripts.finish(job_id, "w", 1, "failed", 1001.0, []) == 1
        # as if an attempt had left a big result behind: the record's deleters own it
        q.client.set(q.keys.result(job_id), b"stale")
        q.client.hset(q.keys.job(job_id), STORED_RESULT, b"\x80")
    assert q.requeue_dead(ids[0]) == 1 and q.purge_dead(ids[1]) == 1
    assert not q.client.exists(q.keys.result(ids[0]), q.keys.result(ids[1]))
    assert q.get_job(ids[0])["result"] is None


def test_the_cli_writes_a_big_result_whole(q: MLQ, redis_url: str, tmp_path: Path) -> None:
    job_id = _run(q, "bytes")
    target = tmp_path / "out.bin"
    done = run_controller("result", job_id, "-o", str(target), "--redis_url", redis_url,
                          "--namespace", q.namespace)
    assert done.rc == 0, done.err
    assert target.read_bytes() == BLOB

