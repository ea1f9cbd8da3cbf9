"""Batching listeners: one call for many jobs, each job keeping its own outcome."""

from __future__ import annotations

from typing import Any

from mlq import MLQ, listener


def test_batches_fill_and_each_job_keeps_its_outcome(q: MLQ, callback_server: Any) -> None:
    calls: list[list[Any]] = []

    @listener(batch_size=8, batch_wait=0.2)
    def infer(msgs: list[Any], *args: Any) -> list[Any]:
        calls.append(list(msgs))
        ctx = args[0]
        assert len(ctx["jobs"]) == len(msgs) == len(ctx["full_messages"])
        outcomes: list[Any] = []
        for msg, job in zip(msgs, ctx["jobs"]):
            job["update_progress"](50)
            outcomes.append(ValueError(f"bad {msg}") if msg == 13 else ("ok", msg * 2))
        return outcomes

    ids = q.post_many(list(range(20)), callback=callback_server.url)
    q.create_listener(infer)
    records = [q.wait(i, 20) for i in ids]
    assert sum(len(c) for c in calls) == 20 and max(len(c) for c in calls) == 8
    assert len(calls) <= 4  # batched, not one call per job
    for n, record in enumerate(records):
        if n == 13:
            assert record["status"] == "failed" and "ValueError: bad 13" in record["error"]
        else:
            assert record["status"] == "completed" and record["result"] == n * 2
            assert record["short_result"] == "ok"
    hits = callback_server.wait_for(20)
    assert sorted(h["query"]["success"][0] for h in hits).count("0") == 1


def test_batch_wait_gathers_jobs_posted_a_moment_apart(q: MLQ) -> None:
    sizes: list[int] = []

    def embed(msgs: list[int], *args: Any) -> list[int]:
        sizes.append(len(msgs))
        return [m + 1 for m in msgs]

    q.create_listener(embed, batch_size=4, batch_wait=1.0)
    first = q.post(1)
    ids = [first] + [q.post(n) for n in range(3)]
    assert [q.wait(i, 10)["result"] for i in ids] == [2, 1, 2, 3]
    assert sizes == [4]


def test_a_batch_listener_that_raises_or_miscounts_fails_its_batch(q: MLQ) -> None:
    @listener(batch_size=4)
    def broken(msgs: list[Any], *args: Any) -> list[Any]:
        if msgs[0] == "raise":
            raise RuntimeError("model crashed")
        return ["only one"]

    q.create_listener(broken)
    raised = q.wait(q.post("raise"), 10)
    assert raised["status"] == "failed" and "model crashed" in raised["error"]
    ids = q.post_many(["a", "b"])
    failures = [q.wait(i, 10) for i in ids]
    assert all(r["status"] == "failed" for r in failures)
    assert all("must return a list of" in r["error"] for r in failures)
