"""Streamed output: a generator listener's chunks (or emit()'s) go to a capped
Redis Stream per job as they come; readers resume after the last entry they saw."""

from __future__ import annotations

import itertools
from typing import Any, AsyncIterator, Iterator

from mlq import MLQ
from mlq.worker import Worker


def tokens(msg: int, context: dict[str, Any]) -> Iterator[str]:
    for n in range(msg):
        yield f"token {n}"


def test_a_reader_that_stops_after_300_of_1000_chunks_resumes_with_the_other_700(
        q: MLQ) -> None:
    job_id = q.post(1000)
    q.create_listener(tokens)
    first = list(itertools.islice(q.stream(job_id), 300))  # then it goes away
    rest = list(q.job(job_id).stream(after=first[-1][0]))  # and comes back
    chunks = [chunk for _, chunk in first + rest]
    assert chunks == [f"token {n}" for n in range(1000)]
    ids = [entry for entry, _ in first + rest]
    assert len(set(ids)) == 1000 and ids == sorted(ids, key=lambda e: tuple(map(int, e.split("-"))))
    record = q.wait(job_id, 10)
    assert record["status"] == "completed" and record["result"] == chunks


def test_a_late_reader_gets_every_chunk_of_an_ended_job(q: MLQ) -> None:
    def mixed(msg: Any, context: dict[str, Any]) -> str:
        for chunk in ("text", b"\x00bytes", {"json": [1, 2]}):
            context["emit"](chunk)
        return "returned value wins"

    worker = Worker(q, "w", local_listeners={"mixed": mixed})
    job_id = q.post("m")
    assert worker.step(1)
    assert [c for _, c in q.stream(job_id)] == ["text", b"\x00bytes", {"json": [1, 2]}]
    assert q.get_job(job_id)["result"] == "returned value wins"


def test_an_async_generator_streams_too(q: MLQ) -> None:
    async def agen(msg: Any, context: dict[str, Any]) -> AsyncIterator[int]:
        for n in range(3):
            yield n

    job_id = q.post("m")
    q.create_listener(agen)  # its worker closes its event loop when it stops
    assert [c for _, c in q.stream(job_id)] == [0, 1, 2]
    assert q.wait(job_id, 10)["result"] == [0, 1, 2]


def test_a_submitted_generator_streams_its_yields(q: MLQ) -> None:
    def count_to(n: int) -> Iterator[str]:
        for i in range(n):
            yield f"step {i}"

    job = q.submit(count_to, 3)
    worker = Worker(q, "w")
    assert worker.step(1)
    assert [c for _, c in job.stream()] == ["step 0", "step 1", "step 2"]
    assert job.result(10) == ["step 0", "step 1", "step 2"]


def test_the_stream_is_capped_and_expires_with_the_result(redis_url: str, namespace: str) -> None:
    q = MLQ(namespace, redis_url=redis_url, result_ttl=60)
    q.stream_max = 100
    try:
        job_id = q.post(5000)
        assert Worker(q, "w", local_listeners={"tokens": tokens}).step(1)
        kept = [c for _, c in q.stream(job_id)]
        assert 100 <= len(kept) < 5000 and kept[-1] == "token 4999"  # the newest are kept
        assert 0 < q.client.pttl(q.keys.stream(job_id)) <= 61_000
        assert len(q.get_job(job_id)["result"]) == 5000
    finally:
        q.clear_all()
        q.close()


def test_a_job_that_streamed_nothing_ends_its_readers_at_once(q: MLQ) -> None:
    worker = Worker(q, "w", local_listeners={"plain": lambda msg, ctx: msg})
    job_id = q.post("m")
    assert worker.step(1)
    assert list(q.stream(job_id)) == []
