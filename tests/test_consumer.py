"""In-process consuming (create_listener): outcomes, failures, callbacks, registry."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import cloudpickle
import jsonpickle

from mlq import MLQ, JobFailed


def test_outcomes_and_progress(q: MLQ) -> None:
    seen: list[dict[str, Any]] = []

    def multiply(msg: dict[str, int], *args: Any) -> tuple[str, bytes]:
        ctx = args[0]
        seen.append(dict(ctx["full_message"]))
        ctx["update_progress"](50)
        return "big", b"\x00" * 10

    q.create_listener(multiply)
    record = q.wait(q.post({"n": 2}), timeout=10)
    assert record["status"] == "completed" and record["progress"] == 100
    assert record["result"] == b"\x00" * 10 and record["short_result"] == "big"
    assert record["worker"] is None and record["error"] is None
    assert record["processing_started"] <= record["processing_finished"]
    assert seen[0]["status"] == "started" and seen[0]["progress"] == 0 and seen[0]["worker"]


def test_fifo_order(q: MLQ) -> None:
    order: list[int] = []

    def record_order(msg: int, *args: Any) -> None:
        order.append(msg)

    ids = [q.post(i) for i in range(50)]
    q.create_listener(record_order)
    q.wait(ids[-1], timeout=20)
    assert order == list(range(50))


def test_large_binary_result(q: MLQ) -> None:
    payload = bytes(range(256)) * (20 * 1024 * 1024 // 256)

    def big(msg: Any, *args: Any) -> bytes:
        return bytes(range(256)) * (20 * 1024 * 1024 // 256)

    q.create_listener(big)
    record = q.wait(q.post("go"), timeout=30)
    assert record["result"] == payload and record["short_result"] is None


def test_exception_goes_to_dead_letters_with_traceback(q: MLQ, callback_server: Any) -> None:
    def broken(msg: Any, *args: Any) -> None:
        raise ValueError("cannot handle " + str(msg))

    q.create_listener(broken)
    job_id = q.post("this", callback=callback_server.url)
    record = q.wait(job_id, timeout=10)
    assert record["status"] == "failed" and record["progress"] == -1
    assert record["result"] == "cannot handle this"
    assert "Traceback" in record["error"] and "ValueError: cannot handle this" in record["error"]
    assert q.get_progress(job_id) == "[failed]"
    assert [r["id"] for r in q.dead_letters()] == [job_id]
    (hit,) = callback_server.wait_for(1)
    assert hit["query"]["success"] == ["0"] and hit["query"]["job_id"] == [job_id]


def test_dead_letters_requeue_and_purge(q: MLQ) -> None:
    attempts: list[int] = []

    def flaky(msg: int, *args: Any) -> str:
        attempts.append(msg)
        if len(attempts) <= 2:
            raise RuntimeError("not yet")
        return "fine"

    q.create_listener(flaky)
    first, second = q.post(1), q.post(2)
    q.wait(first, 10)
    q.wait(second, 10)
    assert [r["id"] for r in q.dead_letters()] == [first, second]
    assert q.requeue_dead(first) == 1
    record = q.wait(first, 10)
    assert record["status"] == "completed" and record["retries"] == 0 and record["error"] is None
    assert q.purge_dead() == 1 and q.dead_letters() == []
    for call in (q.requeue_dead, q.purge_dead):
        try:
            call(first)
        except KeyError:
            pass
        else:
            raise AssertionError("a job that is not dead must raise JobNotFound")


def test_callback_carries_result(q: MLQ, callback_server: Any) -> None:
    def classify(msg: Any, *args: Any) -> tuple[str, bytes]:
        return "a widget", b"image"

    q.create_listener(classify)
    job_id = q.post("pic", callback=callback_server.url + "?app=1")
    (hit,) = callback_server.wait_for(1)
    assert hit["query"] == {"app": ["1"], "success": ["1"], "job_id": [job_id],
                            "short_result": ["a widget"]}


def test_callback_that_hangs_does_not_slow_the_next_job(q: MLQ, callback_server: Any) -> None:
    q.callbacks.timeout = 1.0
    callback_server.delay = 3.0

    def quick(msg: Any, *args: Any) -> str:
        return "ok"

    q.create_listener(quick)
    first = q.post(1, callback=callback_server.url)
    q.wait(first, 10)
    started = time.monotonic()
    q.wait(q.post(2), 10)
    assert time.monotonic() - started < 1.0  # no wait for the hung callback
    assert len(callback_server.wait_for(2, timeout=10)) >= 2  # retried after its timeout


def test_callback_to_a_closed_port_is_retried_three_times(q: MLQ) -> None:
    from mlq.embedded import free_port
    q.callbacks.backoff = (0.05, 0.05)
    delivered = q.callbacks.deliver(f"http://127.0.0.1:{free_port()}/cb?success=1")
    assert delivered is False


def test_functions_pick_listeners_in_the_jobs_order(q: MLQ) -> None:
    def add_one(msg: Any, *args: Any) -> int:
        return (msg if isinstance(msg, int) else 0) + 1

    def times_ten(msg: Any, *args: Any) -> int:
        return msg * 10

    q.create_listener(add_one)
    q.create_listener(times_ten)
    assert q.wait(q.post(4), 10)["result"] == 40  # all run, the last one's value wins
    assert q.wait(q.post(4, functions=["add_one"]), 10)["result"] == 5
    missing = q.wait(q.post(4, functions=["add_one", "nope"]), 10)
    assert missing["status"] == "failed" and missing["error"] == "no listener named 'nope'"


def test_async_listener_is_awaited(q: MLQ) -> None:
    async def later(msg: int, *args: Any) -> int:
        await asyncio.sleep(0.01)
        return msg + 1

    q.create_listener(later)
    assert q.wait(q.post(1), 10)["result"] == 2


def test_listener_can_post_store_and_block(redis_url: str, namespace: str) -> None:
    q = MLQ(namespace, redis_url=redis_url, concurrency=2)
    try:
        def parent(msg: Any, *args: Any) -> Any:
            ctx = args[0]
            if msg != "parent":
                return None
            key = ctx["store_data"]("shared")
            child = ctx["post"]({"key": key}, functions=["child"])
            return ctx["block_until_result"](child, timeout=10)

        def child(msg: dict[str, str], *args: Any) -> str:
            return args[0]["fetch_data"](msg["key"]).decode() + "!"

        q.create_listener(parent)
        q.create_listener(child)
        assert q.wait(q.post("parent", functions=["parent"]), 20)["result"] == "shared!"
    finally:
        q.shutdown(10)
        q.clear_all()


def test_block_until_result_raises_for_a_failed_job(q: MLQ) -> None:
    def broken(msg: Any, *args: Any) -> None:
        raise KeyError("x")

    q.create_listener(broken)
    job_id = q.post(1)
    try:
        q.block_until_result(job_id, timeout=10)
    except JobFailed as exc:
        assert "KeyError" in exc.record["error"]
    else:
        raise AssertionError("JobFailed expected")


def test_registry_reaches_running_consumers(redis_url: str, namespace: str, q: MLQ) -> None:
    q.create_listener()  # consuming with no listener yet
    producer = MLQ(namespace, redis_url=redis_url)

    def shout(msg: str, *args: Any) -> str:
        return msg.upper()

    envelope = json.loads(jsonpickle.encode(cloudpickle.dumps(shout)))
    assert producer.register_listener(envelope) == "shout"
    assert producer.listener_names() == ["shout"]
    assert q.wait(producer.post("hi"), 10)["result"] == "HI"

    def shout(msg: str, *args: Any) -> str:  # noqa: F811 (a new version under the same name)
        return msg.upper() + "!"

    producer.register_listener(shout)
    assert q.wait(producer.post("hi"), 10)["result"] == "HI!"
    assert producer.remove_listener("shout") is True
    assert producer.remove_listener("shout") is False
    assert q.wait(producer.post("hi"), 10)["result"] is None


def test_shutdown_finishes_the_running_job(q: MLQ) -> None:
    started = threading.Event()

    def slow(msg: Any, *args: Any) -> str:
        started.set()
        time.sleep(0.5)  # a job that takes a while: the stop comes while it runs
        return "finished"

    q.create_listener(slow)
    job_id = q.post(1)
    second = q.post(2)
    assert started.wait(10)
    q.shutdown(10)
    assert q.get_job(job_id)["status"] == "completed"
    assert q.get_job(second)["status"] == "queued"  # not taken after the stop


def test_time_limit_in_process(q: MLQ) -> None:
    def stuck(msg: Any, *args: Any) -> str:
        time.sleep(1.5)  # runs well past its 0.3 s time limit
        return "too late"

    q.create_listener(stuck)
    record = q.wait(q.post(1, timeout=0.3), 10)
    assert record["status"] == "failed" and record["error"] == "time limit 0.3 s exceeded"
    time.sleep(1.5)  # a window, not a wait: by its end the stuck listener has returned
    assert q.get_job(record["id"])["status"] == "failed"  # the late finish changed nothing
