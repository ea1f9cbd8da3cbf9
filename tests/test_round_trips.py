"""Posts from many threads share round trips; each caller still gets its own
job, its own error, and a working connection after Redis forgets or drops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis

from mlq import MLQ
from mlq.embedded import EmbeddedServer
from mlq.worker import Worker
from tests.conftest import wait_until

# counts what the whole session server received: in the group of such files, which an
# xdist worker runs before any other file has left clients on its server (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("counts-server-commands")

THREADS = 8
POSTS_EACH = 60


def _post_from_threads(q: MLQ) -> dict[str, tuple[int, int]]:
    posted: dict[str, tuple[int, int]] = {}
    start = threading.Barrier(THREADS)

    def post_all(thread: int) -> None:
        start.wait()
        for n in range(POSTS_EACH):
            posted[q.post({"thread": thread, "n": n})] = (thread, n)

    threads = [threading.Thread(target=post_all, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return posted


def test_concurrent_posts_each_get_their_own_job_in_fewer_round_trips(q: MLQ) -> None:
    reads_before = q.client.info("stats")["total_reads_processed"]
    posted = _post_from_threads(q)
    reads = q.client.info("stats")["total_reads_processed"] - reads_before

    assert len(posted) == THREADS * POSTS_EACH  # no id handed out twice
    assert sorted(int(i) for i in posted) == list(range(1, THREADS * POSTS_EACH + 1))
    for job_id, (thread, n) in posted.items():
        assert q.get_job(job_id)["msg"] == {"thread": thread, "n": n}
    assert q.job_count() == THREADS * POSTS_EACH
    # Redis read the posts in fewer socket reads than there were posts: calls
    # made while a round trip was out went together in the next one
    assert reads < THREADS * POSTS_EACH


def test_a_post_after_redis_forgot_its_scripts_still_goes_through(q: MLQ) -> None:
    first = q.post("before")
    q.client.script_flush()
    second = q.post("after")
    assert int(second) == int(first) + 1
    assert q.get_job(second)["msg"] == "after"


def test_a_post_whose_connection_was_dropped_is_sent_again_once(q: MLQ) -> None:
    q.post("opens the connection")
    killed = q.client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    job_id = q.post("after the cut")
    assert q.get_job(job_id)["msg"] == "after the cut"
    assert q.job_count() == 2  # the re-sent post made no second job


def test_an_error_reply_reaches_its_caller_and_the_next_post_works(q: MLQ) -> None:
    q.client.set(q.keys.queue("broken"), "not a list")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        q.post("refused", queue="broken")
    job_id = q.post("fine")
    assert q.get_job(job_id)["msg"] == "fine"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_posts_on_a_connection_of_its_own(q: MLQ) -> None:
    parent_first = q.post("parent")
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only when its post landed
        try:
            child_id = q.post("child")
            ok = q.get_job(child_id)["msg"] == "child"
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent_next = q.post("parent again")
    assert int(parent_next) == int(parent_first) + 2
    assert q.get_job(parent_next)["msg"] == "parent again"


def test_a_running_worker_does_not_ask_redis_for_its_scripts_before_each_step(q: MLQ) -> None:
    """Recording a job and taking the next is one round trip, not two: no SCRIPT
    EXISTS goes before it (what INFO commandstats shows an operator)."""
    worker = Worker(q, "w1", local_listeners={"echo": lambda msg, ctx: msg})
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop, 0.5))
    runner.start()
    try:
        q.wait(q.post("warm-up"), 10)
        before = _calls(q, "script|exists")
        for n in range(20):
            assert q.wait(q.post(n), 10)["result"] == n
        assert _calls(q, "script|exists") == before
    finally:
        stop.set()
        runner.join(10)


def test_a_post_and_its_wait_are_two_script_calls(tmp_path: Path) -> None:
    """The post; the worker's finish of the job with the take of its next, one script
    (finish_take.lua); and nothing from the wait, for a job its own client posted:
    18 Redis commands at most in all. (A server of its own: the counts are the
    whole server's.)"""
    with EmbeddedServer(port=None, data_dir=tmp_path) as server:
        q = MLQ("calls", redis_url=server.url)
        worker = Worker(q, "w1", local_listeners={"echo": lambda msg, ctx: msg})
        stop = threading.Event()
        # blocking long: no take runs out of time while the round trips below are made
        runner = threading.Thread(target=worker.run, args=(stop, 30))
        runner.start()
        try:
            # it waits as idle before the first post: no post leaves it a wake token
            # to take on later, in the middle of the round trips counted
            wait_until(lambda: q.client.zcard(q.keys.idle("default")) == 1, 10,
                       "the worker to wait as idle", interval=0.005)
            for warm_up in range(2):  # the shared subscription is up, the posts marked
                q.wait(q.post(warm_up), 10)
            # another worker sweeps meanwhile: this one's sweeps would add their commands
            q.client.set(q.keys.sweep_lock, "another worker", px=60_000)
            before, commands_before = _calls(q, "evalsha"), _all_calls(q)
            for n in range(20):
                assert q.wait(q.post(n), 10)["result"] == n
            assert _calls(q, "evalsha") - before == 2 * 20
            # every command counted, those the scripts ran included (INFO commandstats),
            # these INFOs too (0.1 per round trip): what benchmarks/run.py counts
            assert (_all_calls(q) - commands_before) / 20 <= 18.1
        finally:
            stop.set()
            q.client.lpush(q.keys.wake("default"), 1)  # ends its wait at once
            runner.join(10)
            q.close()


def _all_calls(q: MLQ) -> int:
    return sum(int(stat["calls"]) for stat in q.client.info("commandstats").values())


def _calls(q: MLQ, command: str) -> int:
    return int(q.client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_each_job_runs_once_when_redis_meets_the_finish_script_for_the_first_time(
        q: MLQ) -> None:
    """Scripts unknown to Redis are loaded ahead of their first call in the same
    round trip, so a finish and the take after it still run in that order (the
    take would otherwise hand back the job the finish had not yet recorded)."""
    q.client.script_flush()
    runs: list[int] = []
    worker = Worker(q, "w1", local_listeners={"count": lambda msg, ctx: runs.append(msg)})
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop, 0.5))
    runner.start()
    try:
        for n in range(5):
            q.wait(q.post(n), 10)
    finally:
        stop.set()
        runner.join(10)
    assert runs == [0, 1, 2, 3, 4]


_GREENLETS = r"""
from gevent import monkey
monkey.patch_all()
import json, sys
import gevent, redis
from mlq import MLQ

url, namespace = sys.argv[1], sys.argv[2]
q = MLQ(namespace, redis_url=url)
admin = redis.Redis.from_url(url)
q.post("warm-up")  # the connection is open and the script loaded
outcome = {}

# Redis holds every write for a while; the first post is on the wire meanwhile.
admin.client_pause(400, all=False)
leader = gevent.spawn(q.post, "sent first")
gevent.sleep(0.05)
killed_waiting = gevent.spawn(q.post, "never sent")
gevent.sleep(0.02)
waiting = gevent.spawn(q.post, "waits its turn")
gevent.sleep(0.02)
killed_waiting.kill()  # a caller waiting for its turn is interrupted
outcome["after a waiting caller was killed"] = [leader.get(timeout=5), waiting.get(timeout=5)]

admin.client_pause(400, all=False)
doomed = gevent.spawn(q.post, "interrupted on the wire")
gevent.sleep(0.05)
after = gevent.spawn(q.post, "after the interrupted one")
gevent.sleep(0.02)
doomed.kill()  # the caller whose round trip is out is interrupted
outcome["after the sending caller was killed"] = [after.get(timeout=5)]
print(json.dumps(outcome))
"""


def test_an_interrupted_greenlet_stalls_no_other_post(redis_url: str, namespace: str) -> None:
    """Under gevent (the HTTP server), a caller killed while it waits for its turn
    or while its round trip is out leaves the others to be sent, not waiting forever."""
    done = subprocess.run([sys.executable, "-c", _GREENLETS, redis_url, namespace],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    q = MLQ(namespace, redis_url=redis_url)
    first, second = outcome["after a waiting caller was killed"]
    assert [q.get_job(i)["msg"] for i in (first, second)] == ["sent first", "waits its turn"]
    (last,) = outcome["after the sending caller was killed"]
    assert q.get_job(last)["msg"] == "after the interrupted one"
    messages = [q.get_job(str(i))["msg"] for i in range(1, int(last) + 1)
                if q.client.exists(q.keys.job(str(i)))]
    assert "never sent" not in messages
