"""A post leaves its ids for the listing's indexes in the index log, and a finish
its completed ids in its tally entry (index_log.lua, metrics.lua): whatever reads
the indexes sees every job posted and ended, and the log never grows long."""

from __future__ import annotations

from mlq import MLQ
from mlq.posting import checked_post
from mlq.worker import Worker


def _echo_worker(q: MLQ, queues: tuple[str, ...] = ("default",)) -> Worker:
    return Worker(q, "w", queues=queues, local_listeners={"echo": lambda msg, ctx: msg})


def _fail(msg: str, ctx: object) -> None:
    raise ValueError(msg)


def test_a_listing_right_after_posts_and_finishes_shows_every_job(q: MLQ) -> None:
    ids = [q.post(n) for n in range(3)] + [q.post("gpu job", queue="gpu")]
    assert q.queue_names() == ["default", "gpu"]
    worker = _echo_worker(q)
    assert worker.step(0)
    total, page = q.list_jobs()
    assert total == 4 and [r["id"] for r in page] == ids[::-1]
    assert q.list_jobs(queue="gpu")[0] == 1
    total, page = q.list_jobs(status="completed")
    assert total == 1 and page[0]["id"] == ids[0]


def test_the_index_log_stays_short_when_nothing_reads_it(q: MLQ) -> None:
    for n in range(1100):  # no worker sweeps: the posts themselves write the indexes
        q.post(n)
    assert q.client.llen(q.keys.index_log) < 1024
    assert q.client.zcard(q.keys.index_all) >= 1100 - 1024
    assert q.list_jobs()[0] == 1100 and q.client.llen(q.keys.index_log) == 0


def test_a_worker_sweep_writes_what_posts_and_finishes_left(q: MLQ) -> None:
    worker = _echo_worker(q)
    job_id = q.post("m")
    assert worker.step(0) and worker.sweep()
    assert q.client.llen(q.keys.index_log) == 0 and q.client.llen(q.keys.tally) == 0
    assert q.client.zscore(q.keys.index_status("completed"), job_id) == int(job_id)


def test_a_dead_letter_purged_before_any_listing_leaves_no_trace_in_it(q: MLQ) -> None:
    kept, doomed = q.post("kept"), q.post("doomed", queue="gpu")
    worker = Worker(q, "w", queues=("gpu",), local_listeners={"fail": _fail})
    assert worker.step(0)
    assert q.get_job(doomed)["status"] == "failed"
    assert q.purge_dead() == 1
    total, page = q.list_jobs()
    assert total == 1 and [r["id"] for r in page] == [kept]
    assert q.list_jobs(queue="gpu")[0] == 0


def test_a_post_sent_again_finds_its_job_before_and_after_its_index_was_written(
        q: MLQ) -> None:
    """What the shared round trips send again once a post's reply was lost (post.lua:
    'again <token>'); its token waits in the index log, then in the tokens' hash."""
    sha = q.scripts._scripts["post"].sha

    def send(sent: str) -> str:
        keys, args = q.scripts.post_call("default", checked_post(q, "m").fields, sent=sent)
        return str(q.client.evalsha(sha, len(keys), *keys, *args))

    first = send("first t1")
    assert send("again t1") == first  # found in the index log
    q.list_jobs()  # writes the index: the token moves to the hash of the five minutes
    assert q.client.llen(q.keys.index_log) == 0
    assert send("again t1") == first
    second = send("again t2")  # its first send never ran: a new job
    assert int(second) == int(first) + 1
    assert q.list_jobs()[0] == 2 and int(q.client.get(q.keys.counter)) == 2
