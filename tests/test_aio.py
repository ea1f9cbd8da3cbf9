"""The asyncio client (mlq.aio.AsyncMLQ) under pytest-asyncio, against a real
server of this file's own: the same answers and errors as MLQ, waits pushed through
one shared subscription, streams that resume where they stopped."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio

from mlq import MLQ, InvalidMessage, JobNotFound
from mlq.aio import AsyncMLQ
from mlq.defaults import STORED_APART
from mlq.embedded import EmbeddedServer
from mlq.serialization import pack
from mlq.worker import Worker

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of this file alone: test_many_waits_share_one_subscription counts the
    PSUBSCRIBEs the whole server receives, so clients that tests of other files left in
    this process (an xdist worker runs many files) must not be connected to it."""
    with EmbeddedServer(port=None, data_dir=tmp_path_factory.mktemp("redis-aio")) as server:
        yield server.url


@pytest_asyncio.fixture
async def aq(redis_url: str, namespace: str, q: MLQ) -> AsyncIterator[AsyncMLQ]:
    """An AsyncMLQ on the namespace of `q` (whose fixture clears it afterwards)."""
    async with AsyncMLQ(namespace, redis_url=redis_url) as client:
        yield client


def tokens(msg: int, context: dict[str, Any]) -> Iterator[str]:
    for n in range(msg):
        yield f"token {n}"


async def until(predicate: Any, timeout: float, what: str) -> None:
    """Poll `predicate` (there is no event to await) until true, within `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)  # the pause between two polls


async def test_post_get_job_and_wait_answer_as_mlq_does(aq: AsyncMLQ, q: MLQ) -> None:
    job_id = await aq.post({"n": 2}, functions=["double"], priority=3, timeout=30)
    assert job_id == "1" and await aq.get_job(job_id) == q.get_job(job_id)
    assert (await aq.get_job(int(job_id)))["msg"] == {"n": 2}
    assert await aq.get_job(job_id, fields=["status"]) == {"id": "1", "status": "queued"}
    release = threading.Event()

    def double(msg: Any, context: dict[str, Any]) -> int:
        release.wait(10)
        return msg["n"] * 2

    worker = Worker(q, "w", local_listeners={"double": double})
    working = asyncio.create_task(asyncio.to_thread(worker.step, 1))
    waiting = asyncio.create_task(aq.wait(job_id, 10))
    await until(lambda: job_id in aq.events.waiters, 5, "the wait to register")
    started = time.monotonic()
    release.set()
    record = await waiting
    # pushed: well before the wait's periodic re-read (every 5 s)
    assert time.monotonic() - started < 2
    assert await working
    assert record["status"] == "completed" and record["result"] == 4
    assert record == q.get_job(job_id) == q.wait(job_id, 1)


async def test_a_big_result_kept_apart_comes_back_whole(aq: AsyncMLQ, q: MLQ) -> None:
    big = b"\x00x" * STORED_APART
    worker = Worker(q, "w", local_listeners={"big": lambda msg, context: big})
    job_id = await aq.post("m")
    waiting = asyncio.create_task(aq.wait(job_id, 10))
    await until(lambda: job_id in aq.events.waiters, 5, "the wait to register")
    assert await asyncio.to_thread(worker.step, 1)
    assert (await waiting)["result"] == big
    assert (await aq.get_job(job_id))["result"] == big


async def test_errors_are_mlqs_own(aq: AsyncMLQ, q: MLQ) -> None:
    for call in (aq.get_job("999"), aq.get_job("no id"), aq.wait("999", 1), aq.cancel("999")):
        with pytest.raises(JobNotFound):
            await call
    with pytest.raises(JobNotFound):
        [entry async for entry in aq.stream("abc")]
    with pytest.raises(InvalidMessage, match="msgpack"):
        await aq.post(object())
    with pytest.raises(InvalidMessage, match="priority"):
        await aq.post("m", priority=12)
    with pytest.raises(InvalidMessage, match="depends_on: no job 999"):
        await aq.post("m", depends_on=["999"])
    with pytest.raises(InvalidMessage):
        await aq.post_many(["fine", object()])
    with pytest.raises(TypeError):
        await aq.post("m", no_such_option=1)
    assert await aq.job_count() == 0 and q.stats()["posted"] == 0  # none was posted
    assert await aq.post("m") == "1"


async def test_wait_gives_up_after_its_timeout(aq: AsyncMLQ) -> None:
    job_id = await aq.post("nobody takes it")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"job {job_id} not finished within 0.3 s"):
        await aq.wait(job_id, 0.3)
    assert 0.3 <= time.monotonic() - started < 2
    assert not aq.events.waiters  # the waiter went with it


async def test_an_outcome_its_record_does_not_bear_out_does_not_end_a_wait(
        aq: AsyncMLQ, q: MLQ) -> None:
    # as an earlier run's outcome comes when it was still on its way as the wait
    # began: without a record (nobody waited for that run)
    job_id = await aq.post("second run")
    waiting = asyncio.create_task(aq.wait(job_id, 10))
    await until(lambda: job_id in aq.events.waiters, 5, "the wait to register")
    q.client.publish(q.keys.job_channel(job_id), pack([job_id, "failed", -1]))
    done, _ = await asyncio.wait([waiting], timeout=0.3)
    assert not done, "the wait ended on an outcome its job's record did not show"
    worker = Worker(q, "w", local_listeners={"echo": lambda msg, context: msg})
    assert await asyncio.to_thread(worker.step, 1)
    record = await waiting
    assert (record["status"], record["result"]) == ("completed", "second run")


async def test_many_waits_share_one_subscription(aq: AsyncMLQ, q: MLQ) -> None:
    ids = await aq.post_many(range(20))
    before = q.client.info("commandstats")
    waits = [asyncio.create_task(aq.wait(job_id, 10)) for job_id in ids]
    await until(lambda: len(aq.events.waiters) == 20, 5, "20 waits to register")
    worker = Worker(q, "w", local_listeners={"square": lambda msg, context: msg * msg})
    while await asyncio.to_thread(worker.step, 0):
        pass
    assert [record["result"] for record in await asyncio.gather(*waits)] == \
        [n * n for n in range(20)]
    after = q.client.info("commandstats")

    def calls(command: str) -> int:
        return after.get(f"cmdstat_{command}", {}).get("calls", 0) - \
            before.get(f"cmdstat_{command}", {}).get("calls", 0)
    assert calls("psubscribe") <= 1 and calls("subscribe") == 0 and calls("unsubscribe") == 0


async def test_a_stream_resumed_after_some_entries_gives_the_rest_once(
        aq: AsyncMLQ, q: MLQ) -> None:
    job_id = await aq.post(300)
    worker = Worker(q, "w", local_listeners={"tokens": tokens})
    working = asyncio.create_task(asyncio.to_thread(worker.step, 1))
    first = []
    async for entry in aq.stream(job_id):
        first.append(entry)
        if len(first) == 120:
            break  # the reader goes away, and comes back with the last id it saw
    rest = [entry async for entry in aq.stream(job_id, after=first[-1][0])]
    assert await working
    chunks = [chunk for _, chunk in first + rest]
    assert chunks == [f"token {n}" for n in range(300)]
    ids = [entry_id for entry_id, _ in first + rest]
    assert len(set(ids)) == 300 and ids == [entry_id for entry_id, _ in q.stream(job_id)]
    assert [entry async for entry in aq.stream(job_id, after=ids[-1])] == []


async def test_a_job_that_streamed_nothing_ends_its_stream(aq: AsyncMLQ, q: MLQ) -> None:
    job_id = await aq.post("m")
    assert Worker(q, "w", local_listeners={"plain": lambda msg, context: msg}).step(1)
    assert [entry async for entry in aq.stream(job_id)] == []


async def test_cancel_of_a_queued_job(aq: AsyncMLQ, q: MLQ) -> None:
    first, second = await aq.post("a"), await aq.post("b", owner="ann")
    assert await aq.job_count() == 2
    assert await aq.cancel(first) is True and await aq.cancel(int(second)) is True
    assert await aq.job_count() == 0 == q.job_count()
    assert (await aq.wait(first, 1))["status"] == "cancelled"  # ended: at once
    assert await aq.cancel(first) is False  # already ended
    assert Worker(q, "w", local_listeners={"f": lambda msg, context: msg}).step(0) is False


async def test_post_many_in_chunks_with_a_fan_in_and_job_count(aq: AsyncMLQ, q: MLQ) -> None:
    ids = await aq.post_many(["a", "b", "c", "d", "e"], chunk_size=2, queue="gpu",
                             then={"msg": "sum"})
    assert ids == ["1", "2", "3", "4", "5", "6"]
    assert [(await aq.get_job(i))["msg"] for i in ids] == ["a", "b", "c", "d", "e", "sum"]
    assert (await aq.get_job("6"))["status"] == "deferred"  # until the five completed
    assert await aq.job_count("gpu") == 5 == q.job_count("gpu")
    assert await aq.job_count() == 0
    assert await aq.post("again", key="once") == await aq.post("again", key="once")


async def test_a_client_handed_in_stays_open(redis_url: str, namespace: str, q: MLQ) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    async with AsyncMLQ(namespace, client=client) as handed:
        assert await handed.post("m") == "1"
    assert await client.ping()
    await client.aclose()
