"""/consumer (function upload in the original's wire format) and /deadletter."""

from __future__ import annotations

import base64
import json
import sys
import types
from typing import Any

import cloudpickle
import jsonpickle
import pytest

from mlq import MLQ

from .conftest import JSON, ServerProcess


def base(msg: Any, *args: Any) -> Any:
    """The module worker's own listener; jobs here always name the function they want."""
    if msg == "fail":
        raise RuntimeError("dead on purpose")
    return msg


LISTENERS = [base]


def _envelope(function: Any) -> str:
    return jsonpickle.encode(cloudpickle.dumps(function))


def test_uploaded_function_runs_on_the_workers(server: ServerProcess, worker: MLQ) -> None:
    def multiply(msg: Any, *args: Any) -> Any:  # local: cloudpickle sends it by value
        return msg["arg1"] * msg["arg2"]

    response = server.post("/consumer", data=_envelope(multiply), headers=JSON)
    assert (response.status_code, response.text) == (200, "True")
    assert "multiply" in server.get("/consumer").json()
    job_id = server.post_job({"arg1": 6, "arg2": 3}, functions=["multiply"])
    assert worker.wait(job_id, timeout=10)["result"] == 18
    assert server.get(f"/jobs/{job_id}/short_result").text == "18"

    response = server.delete("/consumer", data=_envelope(multiply), headers=JSON)
    assert (response.status_code, response.text) == (200, "True")
    assert "multiply" not in server.get("/consumer").json()
    assert server.delete("/consumer", data=_envelope(multiply), headers=JSON).text == "False"
    failed = server.post_job({"arg1": 1, "arg2": 1}, functions=["multiply"])
    assert worker.wait(failed, timeout=10)["error"] == "no listener named 'multiply'"


def test_delete_by_name(server: ServerProcess) -> None:
    def temporary(msg: Any, *args: Any) -> Any:
        return msg

    assert server.post("/consumer", data=_envelope(temporary), headers=JSON).text == "True"
    assert server.delete("/consumer?name=temporary").text == "True"
    assert server.delete("/consumer?name=temporary").text == "False"


def test_booby_trapped_jsonpickle_is_refused_and_never_decoded(server: ServerProcess,
                                                               tmp_path: Any) -> None:
    trap = tmp_path / "pwned"
    reduce = {"py/reduce": [{"py/function": "builtins.open"}, {"py/tuple": [str(trap), "w"]}]}
    payload = base64.b64encode(cloudpickle.dumps(len)).decode()
    for body in (reduce, {"py/b64": payload, **reduce}, {"py/b64": reduce},
                 [reduce], {"py/object": "builtins.open"}):
        for method in ("POST", "DELETE"):
            response = server.request(method, "/consumer", data=json.dumps(body), headers=JSON)
            assert response.status_code == 400, body
            assert response.json()["error"]
    assert not trap.exists()


@pytest.mark.parametrize("body", [b"", b"{", b'{"py/b64": "!!!"}', b'{"py/b64": 5}',
                                  b'{"py/b64": "' + base64.b64encode(b"not a pickle") + b'"}',
                                  b'{"py/b64": "' + base64.b64encode(cloudpickle.dumps(42)) + b'"}',
                                  b"[" * 5000])
def test_bad_uploads_are_400(server: ServerProcess, body: bytes) -> None:
    response = server.post("/consumer", data=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]


def test_function_by_reference_that_the_worker_cannot_import_fails_its_jobs_only(
        server: ServerProcess, worker: MLQ, monkeypatch: pytest.MonkeyPatch) -> None:
    # a module that exists only in this process: cloudpickle sends its functions by
    # reference; the server stores it without unpickling, the worker cannot load it
    module = types.ModuleType("mlq_only_in_the_test_process")

    def elsewhere(msg: Any, *args: Any) -> Any:
        return msg

    elsewhere.__module__ = module.__name__
    elsewhere.__qualname__ = "elsewhere"
    module.elsewhere = elsewhere  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    body = _envelope(elsewhere)
    monkeypatch.delitem(sys.modules, module.__name__)  # gone before any worker loads it
    response = server.post("/consumer", data=body, headers=JSON)
    assert (response.status_code, response.text) == (200, "True")
    try:
        job_id = server.post_job(1, functions=["elsewhere"])
        assert worker.wait(job_id, timeout=10)["error"] == "no listener named 'elsewhere'"
        assert worker.wait(server.post_job("still fine", functions=["base"]),
                           timeout=10)["result"] == "still fine"
    finally:
        server.delete("/consumer?name=elsewhere")


# -- dead letters ---------------------------------------------------------------------------
def _dead_job(server: ServerProcess, worker: MLQ) -> str:
    job_id = server.post_job("fail", functions=["base"])
    assert worker.wait(job_id, timeout=10)["status"] == "failed"
    return job_id


def test_deadletter_list_requeue_purge(server: ServerProcess, worker: MLQ) -> None:
    server.delete("/deadletter")
    first, second, third = (_dead_job(server, worker) for _ in range(3))
    listed = server.get("/deadletter").json()
    assert [r["id"] for r in listed] == [first, second, third]
    assert listed[0]["status"] == "failed" and "dead on purpose" in listed[0]["error"]

    response = server.post(f"/deadletter/{first}/requeue")
    assert (response.status_code, response.json()) == (200, {"requeued": 1})
    assert worker.wait(first, timeout=10)["status"] == "failed"  # ran again, failed again
    assert server.post(f"/deadletter/{second}/requeue", headers={}).json() == {"requeued": 1}
    worker.wait(second, timeout=10)

    assert server.delete(f"/deadletter/{third}").json() == {"purged": 1}
    assert server.get(f"/jobs/{third}").status_code == 404
    assert server.post("/deadletter/requeue").json() == {"requeued": 2}
    worker.wait(first, timeout=10)
    worker.wait(second, timeout=10)
    assert server.delete("/deadletter").json() == {"purged": 2}
    assert server.get("/deadletter").json() == []


@pytest.mark.parametrize("job_id", ["999999", "abc"])
def test_deadletter_of_a_job_that_is_not_dead_is_404(server: ServerProcess, job_id: str) -> None:
    assert server.post(f"/deadletter/{job_id}/requeue").status_code == 404
    response = server.delete(f"/deadletter/{job_id}")
    assert response.status_code == 404 and response.json()["error"]


def test_deadletter_of_a_live_job_is_404(server: ServerProcess) -> None:
    job_id = server.post_job("waiting", queue="held")
    assert server.post(f"/deadletter/{job_id}/requeue").status_code == 404
    assert server.delete(f"/deadletter/{job_id}").status_code == 404
    assert server.get(f"/jobs/{job_id}").json()["status"] == "queued"
