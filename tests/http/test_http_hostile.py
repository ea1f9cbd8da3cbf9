"""Hostile input against the real server: a clear 4xx JSON error, nothing written
to Redis, and the server still serves a normal job afterwards."""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any

import cloudpickle
import jsonpickle
import pytest
import redis

from mlq import MLQ

from .conftest import JSON, SMALL_BODY, ServerProcess


def double(msg: Any, *args: Any) -> Any:
    return msg * 2


LISTENERS = [double]


class _RaisesOnLoad:
    def __reduce__(self) -> Any:
        return (_explode, ())


def _explode() -> None:
    raise RuntimeError("this pickle raises while unpickling")


def _envelope(payload: bytes) -> bytes:
    return json.dumps({"py/b64": base64.b64encode(payload).decode()}).encode()


def _deep(levels: int) -> bytes:
    return ('{"msg": ' + "[" * levels + "]" * levels + "}").encode()


HOSTILE: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/jobs", {"data": b"{not json"}),
    ("POST", "/jobs", {"data": b"[1, 2, 3]"}),
    ("POST", "/jobs", {"data": b"42"}),
    ("POST", "/jobs", {"data": b"null"}),
    ("POST", "/jobs", {"data": b'{"message": "no msg key"}'}),
    ("POST", "/jobs", {"data": b"x" * (SMALL_BODY + 10)}),
    ("POST", "/jobs", {"data": _deep(1000)}),
    ("POST", "/jobs", {"data": _deep(65)}),
    ("POST", "/jobs", {"data": b'{"msg": 1, "queue": "default:p9"}'}),
    ("POST", "/jobs", {"data": b'{"msg": 1, "owner": "b:c"}'}),
    ("POST", "/jobs", {"data": b'{"msg": 1, "functions": ["a b"]}'}),
    ("GET", "/jobs/count?queue=a:b", {}),
    ("POST", "/jobs", {"data": _deep(600)}),
    ("POST", "/jobs", {"data": b'{"msg": "\xff\xfe\xfa"}'}),
    ("POST", "/jobs", {"data": b'{"msg": 1, "callback": "file:///etc/passwd"}'}),
    ("POST", "/jobs", {"data": b'{"msg": 1, "timeout": -5}'}),
    ("POST", "/jobs", {"data": b'{"msg": 1, "priority": 99}'}),
    ("PUT", "/jobs", {"data": b'{"msg": 1}'}),
    ("DELETE", "/jobs/1", {}),
    ("GET", "/jobs/../../etc/passwd", {}),
    ("GET", "/jobs/-1", {}),
    ("GET", "/jobs/" + "1" * 30, {}),
    ("GET", "/jobs/1/result.%2e%2e%2fetc%2fpasswd", {}),
    ("GET", "/jobs/1/result/../../../etc/passwd", {}),
    ("POST", "/consumer", {"data": b"garbage", "headers": JSON}),
    ("POST", "/consumer", {"data": _envelope(cloudpickle.dumps(len)),
                           "headers": {"Content-Type": "text/plain"}}),
    ("POST", "/consumer", {"data": _envelope(b"not a pickle"), "headers": JSON}),
    ("POST", "/consumer", {"data": _envelope(pickle.dumps(_RaisesOnLoad())), "headers": JSON}),
    ("POST", "/consumer", {"data": _envelope(pickle.dumps(42)), "headers": JSON}),
    ("POST", "/consumer", {"data": b'{"py/reduce": [{"py/function": "os.system"}, ["true"]]}', "headers": JSON}),
    ("DELETE", "/consumer", {"data": b"\xff\xfe", "headers": JSON}),
    ("POST", "/deadletter/abc/requeue", {}),
    ("DELETE", "/deadletter/" + "9" * 30, {}),
]


def _namespace_state(client: redis.Redis, namespace: str) -> dict[bytes, Any]:
    """Every key of the namespace with its value, except the workers' own housekeeping
    (heartbeats, the worker set, the sweep lock a live worker takes every 0.5 s, and
    the idle lists a worker renews with each blocking wait)."""
    state = {}
    for key in client.scan_iter(match=f"mlq:{{{namespace}}}:*".encode()):
        if b":heartbeat:" in key or b":idlers:" in key or b":idle_flag:" in key \
                or key.endswith((b":workers", b":sweep_lock", b":idle_queues")):
            continue
        state[key] = client.dump(key)
    return state


@pytest.mark.parametrize(("method", "path", "kwargs"), HOSTILE,
                         ids=[f"{m} {p[:40]} {i}" for i, (m, p, _) in enumerate(HOSTILE)])
def test_hostile_request_is_refused_cleanly(server: ServerProcess, worker: MLQ, method: str,
                                           path: str, kwargs: dict[str, Any]) -> None:
    client = redis.Redis.from_url(server.redis_url)
    before = _namespace_state(client, server.namespace)
    response = server.request(method, path, **kwargs)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.json()["error"]
    assert _namespace_state(client, server.namespace) == before, "a rejected request wrote"
    job_id = server.post_job(21)
    assert worker.wait(job_id, timeout=20)["result"] == 42
    assert server.get(f"/jobs/{job_id}/result").json() == 42


@pytest.mark.parametrize("header", ["bytes=abc", "bytes=10-5", "bytes=-", "items=0-1",
                                    "bytes=0-1,,,,", "bytes=99999999-"])
def test_malformed_range_headers(server: ServerProcess, worker: MLQ, header: str) -> None:
    job_id = server.post_job("abc")
    worker.wait(job_id, timeout=20)
    response = server.get(f"/jobs/{job_id}/result", headers={"Range": header})
    assert response.status_code in (200, 206, 416), response.status_code
    if response.status_code == 416:
        assert response.json()["error"]


def test_uploaded_function_that_raises_fails_only_its_job(server: ServerProcess,
                                                          worker: MLQ) -> None:
    def raises_when_called(msg: Any, *args: Any) -> None:
        raise ValueError("raised on purpose")

    body = jsonpickle.encode(cloudpickle.dumps(raises_when_called))
    assert server.post("/consumer", data=body, headers=JSON).text == "True"
    try:
        job_id = server.post_job(1, functions=["raises_when_called"])
        record = worker.wait(job_id, timeout=20)
        assert record["status"] == "failed" and "raised on purpose" in record["error"]
        assert server.get(f"/jobs/{job_id}/result").status_code == 422
        assert worker.wait(server.post_job(4, functions=["double"]), 20)["result"] == 8
    finally:
        server.request("DELETE", "/consumer", data=body, headers=JSON)



def test_nesting_up_to_the_limit_is_accepted(server: ServerProcess, worker: MLQ) -> None:
    response = server.post("/jobs", data=_deep(64))
    assert response.status_code == 200
    refused = server.post("/jobs", data=_deep(65))
    assert refused.status_code == 400 and "--max_depth" in refused.json()["error"]


def test_no_stored_record_makes_a_route_fail(server: ServerProcess, worker: MLQ) -> None:
    # a library user may post what HTTP refuses: the routes must still answer it
    deep: Any = "bottom"
    for _ in range(500):
        deep = [deep]
    job_id = worker.post(deep, functions=["no_such_listener"])
    assert worker.wait(job_id, timeout=20)["status"] == "failed"
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/result", f"/ui/jobs/{job_id}",
                 "/deadletter", "/ui/deadletters", "/ui/jobs"):
        response = server.get(path)
        assert response.status_code < 500, (path, response.status_code, response.text[:200])
    shown = server.get(f"/jobs/{job_id}").json()["msg"]
    for _ in range(99):
        shown = shown[0]
    assert shown == "[nested deeper than 100 levels]"
    server.delete(f"/deadletter/{job_id}")


@pytest.mark.parametrize("target", ["/ui%0aX", "/ui%0d%0aSet-Cookie:x=1", "/%09/evil.example",
                                    "/ui%20x", "//evil.example", "https://evil.example/"])
def test_login_next_with_control_characters_goes_to_the_dashboard(server: ServerProcess,
                                                                 target: str) -> None:
    response = server.get(f"/ui/login?next={target}", allow_redirects=False)
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == "/ui"
