"""A job's life over HTTP (docs/lifecycle.md): delays, retries, dedup keys, expiry,
cancel, periodic jobs, paused queues and dependencies, against a real gevent
server, a real Redis and an in-process worker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from mlq import MLQ
from tests.conftest import wait_until

from .conftest import TOKEN, ServerProcess

ADMIN = "admin-t0ken-for-the-lifecycle-tests"
#: The queues the module's worker takes from; "lc-held" is taken by no one.
QUEUES = ("default", "lc-pause", "lc-expire", "lc-cancel", "lc-dep")
#: Every message a listener ran, so a test can tell that a job never ran.
RUNS: list[Any] = []
#: Attempts per tag of the "flaky" jobs.
ATTEMPTS: dict[str, int] = {}
#: Set by a "patient" job once it runs: the test may cancel it.
PATIENT_STARTED = threading.Event()


def work(msg: Any, *args: Any) -> Any:
    RUNS.append(msg)
    kind = msg.get("kind") if isinstance(msg, dict) else None
    if kind == "flaky":
        attempt = ATTEMPTS[msg["tag"]] = ATTEMPTS.get(msg["tag"], 0) + 1
        if attempt <= 2:
            raise ConnectionError(f"attempt {attempt} fails on purpose")
        return f"attempt {attempt}"
    if kind == "patient":
        PATIENT_STARTED.set()
        wait_until(args[0]["cancelled"], 10, "the cancel")
        return "stopped early"
    return msg


@pytest.fixture(scope="module")
def lc_worker(redis_url: str, http_namespace: str) -> Iterator[MLQ]:
    """A consumer of QUEUES, running `work` on the servers' namespace."""
    q = MLQ(http_namespace, redis_url=redis_url, heartbeat_interval=0.2, queues=QUEUES,
            concurrency=4)
    q.clear_all()
    q.create_listener(work)
    yield q
    q.shutdown(timeout=10)
    q.clear_all()


@pytest.fixture(scope="module")
def scoped_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
                  http_namespace: str) -> Iterator[ServerProcess]:
    """A server with a user token and an admin token."""
    server = ServerProcess(namespace=http_namespace, redis_url=redis_url, token=TOKEN,
                           admin_token=ADMIN,
                           log_path=tmp_path_factory.mktemp("lifecycle") / "server.log")
    yield server.start()
    server.stop()


def tagged(**fields: Any) -> dict[str, Any]:
    """A message no other test posts, to look for in RUNS."""
    return {"tag": uuid.uuid4().hex, **fields}


def post_json(server: ServerProcess, body: dict[str, Any]) -> dict[str, Any]:
    response = server.post("/jobs", json=body, headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def status(server: ServerProcess, job_id: str) -> str:
    return server.get(f"/jobs/{job_id}").json()["status"]  # type: ignore[no-any-return]


def posted_total(server: ServerProcess) -> float:
    for line in server.get("/metrics").text.splitlines():
        if line.startswith("mlq_jobs_posted_total{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no mlq_jobs_posted_total in /metrics")


def set_paused(server: ServerProcess, queue: str, paused: bool) -> None:
    response = server.post(f"/queues/{queue}/{'pause' if paused else 'resume'}")
    assert response.status_code == 200, response.text
    assert response.json() == {"queue": queue, "paused": paused}


# -- post options ------------------------------------------------------------------
def test_a_delayed_post_is_scheduled_then_completes(server: ServerProcess,
                                                     lc_worker: MLQ) -> None:
    for option in ("delay", "at"):
        soon = datetime.fromtimestamp(time.time() + 1, timezone.utc).isoformat()
        options = {"delay": 1} if option == "delay" else {"at": soon.replace("+00:00", "Z")}
        job_id = server.post_job(tagged(), **options)
        record = server.get(f"/jobs/{job_id}").json()
        assert record["status"] == "scheduled", options
        assert record["next_attempt_at"] > time.time()
        assert server.get(f"/jobs/{job_id}/progress").text == "[scheduled]"
        done = lc_worker.wait(job_id, timeout=10)
        assert done["status"] == "completed"
        assert done["processing_started"] >= record["next_attempt_at"]


def test_a_job_with_two_retries_completes_on_its_third_attempt(server: ServerProcess,
                                                               lc_worker: MLQ) -> None:
    job_id = server.post_job(tagged(kind="flaky"), retries=2, backoff=0,
                             retry_on=["ConnectionError"])
    record = lc_worker.wait(job_id, timeout=10)
    assert (record["status"], record["attempt"], record["result"]) == ("completed", 3,
                                                                      "attempt 3")
    assert "fails on purpose" in record["last_error"]
    # retry_on names what is retried: nothing else is
    other = server.post_job(tagged(kind="flaky"), retries=2, backoff=0, retry_on=["KeyError"])
    record = lc_worker.wait(other, timeout=10)
    assert (record["status"], record["attempt"]) == ("failed", 1)


def test_a_dedup_key_answers_the_live_jobs_id(server: ServerProcess) -> None:
    key = f"resize:{uuid.uuid4().hex}"
    first = post_json(server, {"msg": 1, "queue": "lc-held", "key": key, "key_ttl": 0})
    assert first["duplicate"] is False
    again = post_json(server, {"msg": 2, "queue": "lc-held", "key": key})
    assert again == {"job_id": first["job_id"], "duplicate": True}
    assert server.post_job(3, queue="lc-held", key=key) == first["job_id"]  # text: the bare id
    assert server.get(f"/jobs/{first['job_id']}").json()["msg"] == 1
    assert server.delete(f"/jobs/{first['job_id']}").status_code == 200
    # its job ended (key_ttl 0): the key makes a new job again
    assert post_json(server, {"msg": 4, "queue": "lc-held", "key": key})["duplicate"] is False


def test_a_job_not_started_by_its_deadline_expires_and_never_runs(
        server: ServerProcess, lc_worker: MLQ) -> None:
    set_paused(server, "lc-expire", True)
    msg = tagged()
    try:
        job_id = server.post_job(msg, queue="lc-expire", expires=0.3)
        deadline = server.get(f"/jobs/{job_id}").json()["expires_at"]
        wait_until(lambda: time.time() > deadline, 5, "the deadline")
    finally:
        set_paused(server, "lc-expire", False)
    record = lc_worker.wait(job_id, timeout=10)
    assert (record["status"], record["error_kind"]) == ("expired", "expired")
    assert server.get(f"/jobs/{job_id}/progress").text == "[expired]"
    assert msg not in RUNS


# -- cancel ------------------------------------------------------------------------
def test_delete_cancels_a_queued_and_a_scheduled_job_and_neither_runs(
        server: ServerProcess, lc_worker: MLQ) -> None:
    set_paused(server, "lc-cancel", True)
    queued_msg, scheduled_msg = tagged(), tagged()
    queued = server.post_job(queued_msg, queue="lc-cancel")
    scheduled = server.post_job(scheduled_msg, delay=0.5)
    for job_id in (queued, scheduled):
        response = server.delete(f"/jobs/{job_id}")
        assert response.status_code == 200
        assert response.json() == {"job_id": job_id, "cancelled": True, "status": "cancelled"}
    set_paused(server, "lc-cancel", False)
    # jobs posted after them, to the same queue and later due, ran: theirs were passed
    after = [server.post_job(tagged(), queue="lc-cancel"), server.post_job(tagged(), delay=0.6)]
    for job_id in after:
        assert lc_worker.wait(job_id, timeout=10)["status"] == "completed"
    assert (status(server, queued), status(server, scheduled)) == ("cancelled", "cancelled")
    assert queued_msg not in RUNS and scheduled_msg not in RUNS
    again = server.delete(f"/jobs/{queued}")
    assert again.status_code == 409 and "already ended" in again.json()["error"]
    for unknown in ("999999999", "abc"):
        assert server.delete(f"/jobs/{unknown}").status_code == 404


def test_delete_asks_a_running_job_to_stop(server: ServerProcess, lc_worker: MLQ) -> None:
    PATIENT_STARTED.clear()
    job_id = server.post_job(tagged(kind="patient"))
    assert PATIENT_STARTED.wait(10)
    response = server.delete(f"/jobs/{job_id}")
    assert response.json() == {"job_id": job_id, "cancelled": True, "status": "started"}
    assert lc_worker.wait(job_id, timeout=10)["status"] == "cancelled"


def test_cancel_many_by_queue_and_by_ids(server: ServerProcess) -> None:
    queue = f"lc-bulk-{uuid.uuid4().hex[:8]}"
    ids = [server.post_job(tagged(), queue=queue) for _ in range(3)]
    other = server.post_job(tagged(), queue="lc-held")
    response = server.post("/jobs/cancel", json={"queue": queue})
    assert response.status_code == 200
    assert sorted(response.json()["cancelled"]) == sorted(ids)
    assert {status(server, job_id) for job_id in ids} == {"cancelled"}
    assert status(server, other) == "queued"
    response = server.post("/jobs/cancel", json={"ids": [other, ids[0], "999999999"]})
    assert response.json() == {"cancelled": [other]}  # ended and unknown ones left out


@pytest.mark.parametrize("body", ['{}', '{"ids": ["1"], "queue": "q"}', '{"ids": "1"}',
                                  '{"ids": [{"id": 1}]}', '{"queue": "no spaces"}',
                                  '{"queue": null}', '{"ids": [], "extra": 1}', '[]', 'nope'])
def test_cancel_many_refuses_bad_bodies(server: ServerProcess, body: str) -> None:
    response = server.post("/jobs/cancel", data=body)
    assert response.status_code == 400
    assert response.json()["error"]


@pytest.mark.parametrize(("path", "body"), [("/jobs/cancel", {"queue": "lc-scope"}),
                                            ("/queues/lc-scope/pause", None),
                                            ("/queues/lc-scope/resume", None)])
def test_bulk_cancel_and_pause_need_the_admin_scope(scoped_server: ServerProcess, path: str,
                                                    body: Any) -> None:
    job_id = scoped_server.post_job(tagged(), queue="lc-scope")

    def call(token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return scoped_server.post(path, json=body, auth=False, headers=headers).status_code

    assert call(TOKEN) == 403
    assert call(None) == 401
    # refused: nothing changed
    assert status(scoped_server, job_id) == "queued"
    assert "lc-scope" not in [q["name"] for q in scoped_server.get("/queues").json()["queues"]
                              if q["paused"]]
    assert call(ADMIN) == 200
    set_paused(scoped_server, "lc-scope", False)
    scoped_server.post("/jobs/cancel", json={"queue": "lc-scope"})


def test_the_other_routes_need_a_token_and_the_user_token_opens_them(
        scoped_server: ServerProcess) -> None:
    job_id = scoped_server.post_job(tagged(), queue="lc-held")
    name = f"lc-user-{uuid.uuid4().hex[:8]}"
    calls = [("DELETE", f"/jobs/{job_id}", None, 200), ("GET", "/schedules", None, 200),
             ("PUT", f"/schedules/{name}", {"cron": "0 2 * * *", "msg": 1}, 200),
             ("DELETE", f"/schedules/{name}", None, 200), ("GET", "/queues", None, 200)]
    for method, path, body, _ in calls:
        assert scoped_server.request(method, path, auth=False, json=body).status_code == 401
    user = {"Authorization": f"Bearer {TOKEN}"}
    for method, path, body, expected in calls:
        response = scoped_server.request(method, path, auth=False, json=body, headers=user)
        assert response.status_code == expected, (method, path, response.text)
    assert status(scoped_server, job_id) == "cancelled"


# -- periodic jobs -----------------------------------------------------------------
def schedule_names(server: ServerProcess) -> list[str]:
    response = server.get("/schedules")
    assert response.status_code == 200
    return [entry["name"] for entry in response.json()["schedules"]]


def test_schedules_are_put_listed_replaced_and_deleted(server: ServerProcess) -> None:
    name = f"lc-nightly-{uuid.uuid4().hex[:8]}"
    body = {"cron": "0 2 * * *", "msg": {"report": "daily"}, "queue": "lc-held",
            "timezone": "Europe/Berlin", "functions": "work", "priority": 3, "timeout": 60}
    response = server.request("PUT", f"/schedules/{name}", json=body)
    assert response.status_code == 200, response.text
    stored = response.json()
    assert {k: stored[k] for k in body} == {**body, "functions": ["work"]}
    assert stored["name"] == name and stored["next_run"] > time.time()
    assert stored["last_run"] is None and stored["last_job"] is None
    listed = [e for e in server.get("/schedules").json()["schedules"] if e["name"] == name]
    assert listed == [stored]
    replaced = server.request("PUT", f"/schedules/{name}", json={"cron": "*/5 * * * *",
                                                                 "msg": 2, "timezone": None})
    assert (replaced.json()["cron"], replaced.json()["timezone"]) == ("*/5 * * * *", "UTC")
    response = server.delete(f"/schedules/{name}")
    assert (response.status_code, response.json()) == (200, {"removed": True})
    assert name not in schedule_names(server)
    assert server.delete(f"/schedules/{name}").status_code == 404


@pytest.mark.parametrize(("name", "body"), [
    ("lc-bad", {"cron": "61 * * * *", "msg": 1}),
    ("lc-bad", {"cron": "0 2 * * * * *", "msg": 1}),
    ("lc-bad", {"cron": 5, "msg": 1}),
    ("lc-bad", {"cron": "0 2 * * *", "msg": 1, "timezone": "Mars/Olympus_Mons"}),
    ("lc-bad", {"cron": "0 2 * * *", "msg": 1, "cronn": "x"}),
    ("lc-bad", {"cron": "0 2 * * *"}),
    ("lc-bad", {"cron": "0 2 * * *", "msg": 1, "queue": "no spaces"}),
    ("lc-bad", {"cron": "0 2 * * *", "msg": 1, "functions": {"work": 1}}),
    ("lc-bad", {"cron": "0 2 * * *", "msg": 1, "priority": 10}),
    ("no spaces", {"cron": "0 2 * * *", "msg": 1}),
])
def test_a_bad_schedule_is_400_and_stores_nothing(server: ServerProcess, name: str,
                                                   body: dict[str, Any]) -> None:
    response = server.request("PUT", f"/schedules/{name}", json=body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert name not in schedule_names(server)


def test_a_schedule_fires_on_the_workers(server: ServerProcess, lc_worker: MLQ) -> None:
    name = f"lc-every-second-{uuid.uuid4().hex[:8]}"
    msg = tagged()
    response = server.request("PUT", f"/schedules/{name}", json={"cron": "* * * * * *",
                                                                 "msg": msg})
    assert response.status_code == 200
    try:
        fired = wait_until(lambda: [e["last_job"] for e in server.get("/schedules").json()[
            "schedules"] if e["name"] == name and e["last_job"]], 10, "the first firing")
    finally:
        server.delete(f"/schedules/{name}")
    assert lc_worker.wait(fired[0], timeout=10)["result"] == msg


# -- paused queues -----------------------------------------------------------------
def test_a_paused_queue_keeps_its_jobs_until_resumed(server: ServerProcess,
                                                     lc_worker: MLQ) -> None:
    set_paused(server, "lc-pause", True)
    try:
        held = server.post_job(tagged(), queue="lc-pause")
        # the worker runs: a job of another of its queues completes meanwhile
        assert lc_worker.wait(server.post_job(tagged()), timeout=10)["status"] == "completed"
        assert status(server, held) == "queued"
        queues = {q["name"]: q for q in server.get("/queues").json()["queues"]}
        assert queues["lc-pause"] == {"name": "lc-pause", "waiting": 1, "paused": True}
        assert queues["default"]["paused"] is False
    finally:
        set_paused(server, "lc-pause", False)
    assert lc_worker.wait(held, timeout=10)["status"] == "completed"
    queues = {q["name"]: q for q in server.get("/queues").json()["queues"]}
    assert queues["lc-pause"]["paused"] is False


@pytest.mark.parametrize("verb", ["pause", "resume"])
def test_pause_refuses_a_bad_queue_name(server: ServerProcess, verb: str) -> None:
    response = server.post(f"/queues/no%20spaces/{verb}")
    assert response.status_code == 400 and response.json()["error"]
    assert server.post(f"/queues/{'x' * 129}/{verb}").status_code == 400


# -- dependencies ------------------------------------------------------------------
def test_a_dependent_job_is_deferred_until_its_dependency_completes(
        server: ServerProcess, lc_worker: MLQ) -> None:
    set_paused(server, "lc-dep", True)
    try:
        first = server.post_job(tagged(), queue="lc-dep")
        then = server.post_job(tagged(), depends_on=[first])
        assert status(server, then) == "deferred"
        assert server.get(f"/jobs/{then}/progress").text == "[deferred]"
    finally:
        set_paused(server, "lc-dep", False)
    done = lc_worker.wait(then, timeout=10)
    assert done["status"] == "completed"
    assert done["processing_started"] >= lc_worker.get_job(first)["processing_finished"]


# -- bad input ---------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {"delay": -1}, {"delay": "soon"}, {"at": "next tuesday"}, {"at": -5},
    {"delay": 1, "at": 0}, {"expires": 0}, {"retries": 101}, {"retries": -1},
    {"retries": 1.5}, {"backoff": -1}, {"retry_on": {"KeyError": 1}}, {"retry_on": [""]},
    {"key": "k" * 257}, {"key": "é" * 129}, {"key": ""}, {"key_ttl": 5},
    {"depends_on": [str(n) for n in range(1, 10_002)]}, {"depends_on": ["999999999"]},
    {"depends_on": {"1": 1}}, {"depends_on": ["abc"]},
])
def test_bad_post_options_are_400_and_write_nothing(server: ServerProcess,
                                                    options: dict[str, Any]) -> None:
    before = (posted_total(server), server.get("/jobs/count?queue=lc-held").text)
    response = server.post("/jobs", json={"msg": 1, "queue": "lc-held", **options})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    # the value is what is refused, not the option
    assert next(iter(options)) in error and "unknown field" not in error
    assert (posted_total(server), server.get("/jobs/count?queue=lc-held").text) == before
