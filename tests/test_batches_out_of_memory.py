"""A batch that runs out of memory is run again in halves, down to single jobs:
only a job that does not fit alone fails (error_kind 'oom')."""

from __future__ import annotations

from typing import Any

import pytest

from mlq import MLQ, ListenerError, listener
from mlq.worker import Worker
from tests.conftest import wait_until


def _model(fits: int, calls: list[int], huge: Any = None) -> Any:
    """A fake model that raises MemoryError for more than `fits` items, or for any
    batch holding the message `huge` (a GPU's "CUDA out of memory" for that one)."""
    def infer(msgs: list[Any], context: dict[str, Any]) -> list[Any]:
        calls.append(len(msgs))
        assert [r["msg"] for r in context["full_messages"]] == msgs
        assert len(context["jobs"]) == len(msgs)
        if len(msgs) > fits:
            raise MemoryError(f"{len(msgs)} items do not fit")
        if huge in msgs:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [m * 2 for m in msgs]
    return infer


def _run_batch(q: MLQ, infer: Any, count: int) -> tuple[Worker, list[str]]:
    ids = q.post_many(range(count))
    worker = Worker(q, "w", local_listeners={"infer": infer})
    records = worker.take(0, count)
    worker.batches.run(records)
    return worker, ids


def test_a_batch_of_32_that_fits_only_8_completes_as_batches_of_8(q: MLQ) -> None:
    calls: list[int] = []
    worker, ids = _run_batch(q, listener(_model(8, calls), batch_size=32), 32)
    assert calls == [32, 16, 8, 8, 16, 8, 8]  # 4 batches of 8 ran
    records = [q.get_job(i) for i in ids]
    assert [r["status"] for r in records] == ["completed"] * 32
    assert [r["result"] for r in records] == [n * 2 for n in range(32)]
    assert worker.batches.fitted == 8


def test_only_the_job_that_does_not_fit_alone_fails_as_oom(q: MLQ) -> None:
    calls: list[int] = []
    worker, ids = _run_batch(q, listener(_model(64, calls, huge=5), batch_size=8), 8)
    records = [q.get_job(i) for i in ids]
    failed = [r for r in records if r["status"] == "failed"]
    assert [r["msg"] for r in failed] == [5] and failed[0]["error_kind"] == "oom"
    assert all(r["status"] == "completed" for r in records if r["msg"] != 5)


def test_auto_batches_start_from_the_largest_size_that_fitted(q: MLQ) -> None:
    calls: list[int] = []
    infer = listener(_model(8, calls), batch_size="auto")
    worker = Worker(q, "w", local_listeners={"infer": infer})
    assert worker.batches.settings()[0] == 32  # defaults.AUTO_BATCH before any OOM
    q.post_many(range(32))
    worker.batches.run(worker.take(0, 32))
    assert worker.batches.settings()[0] == 8
    calls.clear()
    q.post_many(range(8))
    assert worker.step(0) and calls == [8]  # no out-of-memory try at 32 again


def test_another_error_still_fails_the_whole_batch(q: MLQ) -> None:
    @listener(batch_size=4)
    def broken(msgs: list[Any], context: dict[str, Any]) -> list[Any]:
        raise ValueError("bad weights")

    _, ids = _run_batch(q, broken, 4)
    assert {q.get_job(i)["error_kind"] for i in ids} == {"error"}


def test_batch_size_must_be_a_positive_integer_or_auto() -> None:
    for bad in (0, -1, "big", True, 2.5):
        with pytest.raises(ListenerError):
            listener(lambda msgs, ctx: msgs, batch_size=bad)


def test_an_in_process_worker_reports_the_largest_batch_that_fitted(q: MLQ) -> None:
    calls: list[int] = []
    ids = q.post_many(range(32))
    q.create_listener(listener(_model(8, calls), batch_size=32, batch_wait=1.0))
    assert all(q.wait(i, 20)["status"] == "completed" for i in ids)
    wait_until(lambda: [w.get("batch_fitted") for w in q.workers()] == [8], 20,
               "the heartbeat to report batches of 8")
