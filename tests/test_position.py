"""A queued job's place in line and ETA (mlq/position.py): through the library, the
HTTP record route and `controller post --wait`, on the real server the suite runs."""

from __future__ import annotations

from typing import Any

import pytest

from mlq import MLQ
from mlq.heartbeat import beat
from mlq.keys import LUA_LANE_BUILDERS
from mlq.position import call, eta, in_line_text
from mlq.reaper import Reaper
from mlq.worker import Worker

from .cli.conftest import Running, base_env
from .http.conftest import ServerProcess

pytestmark = pytest.mark.timeout(60)


def positions(q: MLQ, ids: list[str]) -> list[int | None]:
    return [q.get_job(job_id)["position"] for job_id in ids]


def test_position_counts_the_jobs_ahead_in_its_lane_and_after_takes(q: MLQ) -> None:
    ids = [q.post(n) for n in range(4)] + q.post_many(list(range(3)))
    assert positions(q, ids) == list(range(7))
    worker = Worker(q, "w1")
    assert [r["id"] for r in worker.take(0, count=2)] == ids[:2]  # type: ignore[union-attr]
    assert positions(q, ids) == [None, None, 0, 1, 2, 3, 4]
    assert q.get_job(ids[0], fields=["position", "eta_s"]) == {
        "id": ids[0], "position": None, "eta_s": None}


def test_higher_priority_lanes_are_ahead(q: MLQ) -> None:
    low = [q.post("low") for _ in range(3)]
    mid = [q.post("mid", priority=2) for _ in range(2)]
    top = q.post("top", priority=9)
    assert positions(q, [top, *mid, *low]) == [0, 1, 2, 3, 4, 5]
    assert q.get_job(low[0], fields=["position"]) == {"id": low[0], "position": 3}


def test_a_cancel_from_the_middle_moves_only_the_jobs_behind_it(q: MLQ) -> None:
    ids = [q.post(n) for n in range(6)]
    assert q.cancel(ids[2])
    assert positions(q, ids) == [0, 1, None, 2, 3, 4]
    assert q.cancel(ids[0])  # the head: the removals below it are dropped
    assert positions(q, ids) == [None, 0, None, 1, 2, 3]
    later = q.post("later")
    assert q.cancel(ids[4])
    assert positions(q, [*ids, later]) == [None, 0, None, 1, None, 2, 3]


def test_an_expired_job_leaves_the_line(q: MLQ) -> None:
    soon = q.post("soon", expires=0.5)
    behind = q.post("behind")
    clock = [q.get_job(soon)["timestamp"] + 10]
    Worker(q, "w1", clock=lambda: clock[0]).take(0, count=0)  # the take expires it
    assert q.get_job(soon)["status"] == "expired"
    assert positions(q, [soon, behind]) == [None, 0]


def test_a_job_taken_back_to_the_head_is_next(q: MLQ) -> None:
    first = q.post("first")
    behind = [q.post(n) for n in range(3)]
    Worker(q, "w1", clock=lambda: 100.0).take(0)
    Reaper(q, job_timeout=10, max_retries=5).reap_once(now=1000.0)  # its worker died
    assert q.get_job(first)["status"] == "queued"
    assert positions(q, [first, *behind]) == [0, 1, 2, 3]


def test_owners_take_turns_after_the_plain_lanes(q: MLQ) -> None:
    plain = [q.post("plain") for _ in range(2)]
    ann = [q.post("a", owner="ann") for _ in range(3)]
    bob = [q.post("b", owner="bob") for _ in range(2)]
    # the ring: ann, bob; one job each per turn (fair workers), once the plain lane is empty
    assert positions(q, plain + ann + bob) == [0, 1, 2, 4, 6, 3, 5]
    Worker(q, "w1", fair=True).take(0, count=3)  # both plain jobs, then ann's first
    assert positions(q, ann + bob) == [None, 1, 3, 0, 2]


def test_eta_is_none_without_runs_then_follows_the_run_times_and_workers(q: MLQ) -> None:
    assert q.get_job(q.post("x"), fields=["eta_s"])["eta_s"] is None
    q.clear_all()
    clock = [1000.0]

    def two_seconds(msg: Any, *args: Any) -> Any:
        clock[0] += 2.0
        return msg

    worker = Worker(q, "w1", clock=lambda: clock[0], local_listeners={"slow": two_seconds})
    for n in range(3):
        q.post(n, functions=["slow"])
    while worker.step():
        pass
    waiting = [q.post(n, functions=["slow"]) for n in range(4)]
    assert q.get_job(waiting[3])["eta_s"] is None  # no live worker
    beat(q.client, q.keys, {"w1": {}, "w2": {}}, timeout=30)
    assert [q.get_job(i)["eta_s"] for i in waiting] == [1.0, 2.0, 3.0, 4.0]  # (n + 1) * 2 s / 2
    other = q.post("other")  # no runs of its listeners: the mean of every run, 2 s too
    assert q.get_job(other, fields=["position", "eta_s"])["eta_s"] == 5.0


def test_eta_uses_the_run_times_of_the_jobs_own_function_and_queue(q: MLQ) -> None:
    clock = [1000.0]

    def taking(seconds: float) -> Any:
        def run(msg: Any, *args: Any) -> Any:
            clock[0] += seconds
            return msg
        return run

    worker = Worker(q, "w1", clock=lambda: clock[0],
                    local_listeners={"slow": taking(3.0), "fast": taking(1.0)})
    for name in ("slow", "slow", "fast", "fast"):
        q.post(name, functions=[name])
    while worker.step():
        pass
    beat(q.client, q.keys, {"w1": {}}, timeout=30)
    slow, fast = q.post("s", functions=["slow"]), q.post("f", functions=["fast"])
    # the mean of all four runs is 2 s; each function's own is what counts
    assert q.get_job(slow)["eta_s"] == 3.0  # first in line: one slow run
    assert q.get_job(fast)["eta_s"] == 2.0  # second: two of its own, fast, runs


def test_eta_counts_only_the_workers_that_take_from_the_jobs_queue(q: MLQ) -> None:
    clock = [1000.0]

    def two_seconds(msg: Any, *args: Any) -> Any:
        clock[0] += 2.0
        return msg

    worker = Worker(q, "w1", clock=lambda: clock[0], local_listeners={"slow": two_seconds})
    q.post(0, functions=["slow"])
    assert worker.step()
    waiting = q.post(1, functions=["slow"])
    gpu = {"queues": ["gpu"], "functions": [], "imported": [], "concurrency": 1}
    cpu = {**gpu, "queues": ["gpu", "default"]}
    beat(q.client, q.keys, {"g1": gpu, "g2": gpu, "g3": gpu}, timeout=30)
    assert q.get_job(waiting)["eta_s"] is None  # nobody takes from its queue
    beat(q.client, q.keys, {"c1": cpu}, timeout=30)
    assert q.get_job(waiting)["eta_s"] == 2.0  # one worker for it, not four


def test_the_pure_parts() -> None:
    assert eta(3, 2, 10, 20.0) == 4.0
    assert eta(0, 1, 10, 20.0, own_runs=2, own_seconds=10.0) == 5.0
    assert eta(3, 0, 10, 20.0) is None and eta(3, 2, 0, 0.0) is None
    assert in_line_text(3, 40.2) == "#4 in line, ~40 s"
    assert in_line_text(0, None) == "#1 in line"
    assert in_line_text(9, 600.0) == "#10 in line, ~10 min"
    assert in_line_text(None, 3.0) is None
    assert call(MLQ("x").keys, "1", {"status": "started"}) is None


def test_the_lane_key_builders_name_the_same_keys_as_keys_py(q: MLQ) -> None:
    k = q.keys
    lanes = [(k.queue("gpu"), ("gpu", 0, None)), (k.queue("gpu", 3), ("gpu", 3, "ann")),
             (k.owned("gpu", "ann"), ("gpu", 0, "ann"))]
    script = LUA_LANE_BUILDERS + "return {joined_key(ARGV[1]), removed_key(ARGV[1])}"
    for lane, place in lanes:
        answer = [b.decode() for b in q.client.eval(script, 0, lane)]
        assert answer == [k.lane_joined(*place), k.lane_removed(*place)]


def test_the_record_route_shows_position_and_eta(q: MLQ, redis_url: str) -> None:
    ids = [q.post(n, queue="http") for n in range(2)]
    server = ServerProcess(namespace=q.namespace, redis_url=redis_url).start()
    try:
        records = [server.get(f"/jobs/{job_id}").json() for job_id in ids]
    finally:
        server.stop()
    assert [(r["position"], r["eta_s"]) for r in records] == [(0, None), (1, None)]
    assert "lane_seq" not in records[0]


def test_post_wait_shows_the_place_in_line(q: MLQ, redis_url: str) -> None:
    ahead = [q.post(n) for n in range(3)]
    waiting = Running(("post", "mine", "--wait", "--redis_url", redis_url,
                       "--namespace", q.namespace), base_env(COLUMNS="120"))
    try:
        line = waiting.wait_for("in line", timeout=30)
        assert "queued, #4 in line" in line
        for job_id in ahead:
            q.cancel(job_id)
        waiting.wait_for("#1 in line", timeout=30)
        job_id = waiting.lines[0].strip()
        assert q.cancel(job_id)
        assert waiting.process.wait(30) == 1  # ended cancelled
    finally:
        waiting.close()
