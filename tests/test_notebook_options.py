"""Notebook jobs routed and shown like any job: MLQ.options, and the record of a
submitted call (its name, its arguments and its result as text)."""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle
import pytest
from click.testing import CliRunner

from controller.app import create_app
from controller.cli import cli
from mlq import MLQ
from mlq.notebook import SHORT_CHARS
from mlq.worker import Worker


def where(x: int, queue: str = "cpu", priority: int = 0) -> tuple[int, str, int]:
    """Keywords named like job options: they are the function's own."""
    return x, queue, priority


def _refuse_to_load() -> None:
    raise AssertionError("the server unpickled a submitted call")


class Unloadable:
    """A callable whose pickle raises when loaded: what a server that unpickled
    submitted calls would trip over."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _refuse_to_load, ()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_options_route_a_submitted_call_and_keywords_still_reach_it(q: MLQ) -> None:
    gpu = q.options(queue="gpu", priority=5, owner="alice", timeout=600)
    job = gpu.submit(where, 2, queue="own", priority=9)
    record = q.get_job(job.id)
    assert (record["queue"], record["priority"], record["owner"], record["timeout"]) == (
        "gpu", 5, "alice", 600)
    assert not Worker(q, "w-default").step()  # serves "default": the call is not its
    assert q.get_job(job.id)["status"] == "queued"
    assert Worker(q, "w-gpu", queues=["gpu"]).step()
    assert job.result(timeout=5) == (2, "own", 9)

    plain = q.submit(where, 3, queue="gpu")  # without options, every keyword is fn's
    assert q.get_job(plain.id)["queue"] == "default"
    assert Worker(q, "w-default").step()
    assert plain.result(timeout=5) == (3, "gpu", 0)


def test_a_bad_option_name_is_a_type_error_and_posts_nothing(q: MLQ) -> None:
    with pytest.raises(TypeError, match="'quueue'"):
        q.options(quueue="gpu", priority=5)
    with pytest.raises(TypeError, match="'retry'"):
        q.options(queue="gpu").options(retry=3)
    with pytest.raises(TypeError, match="each names one job"):
        q.options(key="k").map(where, [1, 2])
    assert q.list_jobs()[0] == 0


def test_map_and_post_with_options(q: MLQ, redis_url: str) -> None:
    gpu_worker = MLQ(q.namespace, redis_url=redis_url, queues=("gpu",))
    gpu_worker.create_listener()
    try:
        gpu = q.options(queue="gpu", owner="bob", retries=2)
        assert gpu.map(where, [1, 2, 3], timeout=10) == [(1, "cpu", 0), (2, "cpu", 0),
                                                          (3, "cpu", 0)]
        total, records = q.list_jobs(queue="gpu")
        assert total == 3
        assert {(r["owner"], r["retry"]["retries"], r["call_name"]) for r in records} == {
            ("bob", 2, f"{__name__}.where")}
        assert sorted(r["call_args"] for r in records) == ["1", "2", "3"]
    finally:
        gpu_worker.shutdown(timeout=10)
    # post: the handle's options, the call's own keywords winning
    record = q.get_job(q.options(queue="gpu", priority=5).post("m", priority=7, owner="ann"))
    assert (record["queue"], record["priority"], record["owner"]) == ("gpu", 7, "ann")
    ids = q.options(queue="batch", priority=2).post_many(["a", "b"])
    assert {(q.get_job(i)["queue"], q.get_job(i)["priority"]) for i in ids} == {("batch", 2)}


def test_the_record_names_the_call_and_the_worker_writes_its_result_text(q: MLQ) -> None:
    def summary(n: int, text: str, lr: float = 1.0) -> dict[str, Any]:
        return {"n": n, "values": list(range(1000))}

    job = q.submit(summary, 2, "x" * 5000, lr=0.1)
    record = q.get_job(job.id)
    assert record["call_name"] == f"{__name__}.test_the_record_names_the_call_and_the_" \
                                  "worker_writes_its_result_text.<locals>.summary"
    assert record["call_args"].startswith("2, 'xxx") and record["call_args"].endswith("lr=0.1")
    assert len(record["call_args"]) <= SHORT_CHARS
    assert Worker(q, "w").step()
    done = q.get_job(job.id)
    assert done["short_result"].startswith("{'n': 2, 'values': [0, 1, 2")
    assert len(done["short_result"]) <= SHORT_CHARS
    assert job.result(timeout=5)["values"][-1] == 999  # the whole value still comes back


def test_dashboard_status_and_record_show_a_call_without_unpickling_it(
        q: MLQ, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pending = q.submit(Unloadable(), 7, name="<b>x</b>")
    done = q.submit(where, 4)
    assert Worker(q, "w").step()  # runs the first call in line: `pending` fails, unloadable
    assert Worker(q, "w").step()
    assert q.get_job(done.id)["short_result"] == "(4, 'cpu', 0)"

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the server unpickled something")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(cloudpickle, "loads", refuse)
    client = create_app(q).test_client()
    page = client.get(f"/ui/jobs/{pending.id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f"{__name__}.Unloadable" in text
    assert "7, name=&#39;&lt;b&gt;x&lt;/b&gt;&#39;" in text  # escaped, as Jinja does
    assert "every registered listener" not in text
    page = client.get(f"/ui/jobs/{done.id}").get_data(as_text=True)
    assert f"{__name__}.where(4)" in page and "(4, &#39;cpu&#39;, 0)" in page

    record = client.get(f"/jobs/{done.id}").get_json()
    assert (record["call_name"], record["call_args"], record["short_result"]) == (
        f"{__name__}.where", "4", "(4, 'cpu', 0)")
    printed = CliRunner().invoke(cli, ["status", done.id, "--redis_url", redis_url,
                                       "--namespace", q.namespace])
    assert printed.exit_code == 0, printed.output
    assert f'"call_name": "{__name__}.where"' in printed.output
    assert '"call_args": "4"' in printed.output
