"""`controller top --once`: one frame of the overview, through a real subprocess."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.display import short_ids
from controller.overview import RateMeter, describe_worker
from mlq import MLQ
from mlq.heartbeat import beat
from tests.cli.conftest import base_env, run_controller


def echo(msg: object, *args: object) -> object:
    if msg == "fail":
        raise RuntimeError("failing on purpose")
    return msg


@pytest.fixture
def busy(redis_url: str, namespace: str) -> Iterator[MLQ]:
    """A namespace with jobs in every state and one live worker."""
    q = MLQ(namespace, redis_url=redis_url, heartbeat_interval=0.2)
    q.create_listener(echo)
    for job_id in [q.post("a"), q.post("b"), q.post("fail")]:
        q.wait(job_id, 10)
    for n in range(3):
        q.post(n, queue="later")  # nobody takes these
    yield q
    q.shutdown(timeout=10)
    q.clear_all()


def test_top_once_prints_one_frame(busy: MLQ, redis_url: str, namespace: str) -> None:
    done = run_controller("top", "--once", "--interval", "0.2", "--redis_url", redis_url,
                          "--namespace", namespace, env=base_env(COLUMNS="140"))
    assert done.rc == 0, done.err
    lines = done.out.splitlines()
    assert namespace in lines[0] and "1 worker alive" in lines[0]
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in lines if line.count("│") >= 8}
    # columns: waiting, running, completed, failed, dead, jobs/s
    assert rows["default"][:5] == ["0", "0", "2", "1", "1"]
    assert rows["later"][:5] == ["3", "0", "0", "0", "0"]
    assert rows["all queues"][:5] == ["3", "0", "2", "1", "1"]
    assert "alive" in done.out and "DEAD" not in done.out
    assert "\x1b[" not in done.out  # not a terminal: no colour codes, no screen switching
    # the worker serves default; nobody takes from later, where three jobs wait
    assert "queue later: 3 waiting, no live worker serves it" in lines
    assert "queue default:" not in done.out
    worker_rows = [line for line in lines if line.count("│") >= 10 and "alive" in line]
    assert len(worker_rows) == 1 and "│ default " in worker_rows[0], done.out


def test_top_reports_an_unreachable_redis_in_one_line() -> None:
    done = run_controller("top", "--once", "--redis_url", "redis://127.0.0.1:1/0")
    assert "cannot reach Redis" in done.assert_one_line_error()


def test_rates_are_per_second_over_the_window() -> None:
    meter = RateMeter(window=10.0)
    assert meter.rate("") is None
    meter.add(100.0, {"": 0.0})
    meter.add(102.0, {"": 10.0, "gpu": 4.0})  # a queue first seen now started from 0
    assert meter.rate("") == 5.0 and meter.rate("gpu") == 2.0
    meter.add(120.0, {"": 10.0, "gpu": 4.0})  # quiet for longer than the window
    meter.add(121.0, {"": 10.0, "gpu": 1.0})  # purged records: no negative rate
    assert meter.rate("") == 0.0 and meter.rate("gpu") == 0.0


def test_a_dead_worker_still_shows_its_host_and_pid() -> None:
    alive = describe_worker({"id": "gpu1:400:s1-c1", "alive": True, "host": "gpu1", "pid": 401,
                             "supervisor": 400, "gpus": ["0"], "beat": 98.0}, now=100.0)
    dead = describe_worker({"id": "gpu1:400:s1-c2", "alive": False}, now=100.0)
    assert (alive["pid"], alive["age"], alive["gpus"]) == (401, 2.0, ["0"])
    assert (dead["host"], dead["pid"], dead["age"], dead["gpus"]) == ("gpu1", 400, None, [])


# -- fitting 80 columns ------------------------------------------------------------------
HOST = "gpu-node-0042.cluster.example.com"
#: Two supervisors on one host, three children each: ids that differ only near the end.
LONG_IDS = [f"{HOST}:{pid}:s81b5179{sup}-c{child}"
            for pid, sup in ((12345, 5), (12346, 6)) for child in (1, 2, 3)]


def test_short_ids_are_the_shortest_unique_suffix_or_prefix() -> None:
    shown = short_ids(LONG_IDS)
    assert shown[LONG_IDS[0]] == "…51795-c1"  # 8 characters: no other ends with them
    assert len(set(shown.values())) == len(LONG_IDS)
    for full, short in shown.items():
        matches = [other for other in LONG_IDS if _stands_for(short, other)]
        assert matches == [full], (short, matches)
    # nothing to tell apart: the first characters, as git's short hashes
    assert short_ids(["hostname:1:t0-aaaa", "other:2:t1-bbbb"]) == {
        "hostname:1:t0-aaaa": "…:t0-aaaa", "other:2:t1-bbbb": "…:t1-bbbb"}
    assert short_ids(["a-c1", "xa-c1"]) == {"a-c1": "a-c1", "xa-c1": "xa-c1"}


def _stands_for(short: str, full: str) -> bool:
    if short.startswith("…"):
        return full.endswith(short[1:])
    if short.endswith("…"):
        return full.startswith(short[:-1])
    return short == full


def test_top_fits_80_columns_with_long_worker_ids(redis_url: str, namespace: str) -> None:
    q = MLQ(namespace, redis_url=redis_url)
    beat(q.client, q.keys, {worker_id: {"host": HOST, "pid": 20000 + n,
                                        "supervisor": int(worker_id.split(":")[1]),
                                        "kind": "process", "gpus": [str(n)], "job": None}
                            for n, worker_id in enumerate(LONG_IDS)}, timeout=30)
    try:
        done = run_controller("top", "--once", "--interval", "0.2", "--redis_url", redis_url,
                              "--namespace", namespace, env=base_env(COLUMNS="80"))
    finally:
        q.clear_all()
    assert done.rc == 0, done.err
    lines = done.out.splitlines()
    assert max(len(line) for line in lines) <= 80, done.out
    cells = [line.split("│")[1].strip() for line in lines if "│" in line]
    shown = [cell for cell in cells if cell.startswith("…") or cell in LONG_IDS]
    assert len(shown) == len(LONG_IDS) == len(set(shown)), done.out
    for short in shown:  # each names one worker, whole on its line
        assert sum(_stands_for(short, full) for full in LONG_IDS) == 1, short
