"""The /jobs routes against a real gevent server, jobs run by an in-process worker."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest
import requests

from mlq import MLQ
from mlq.serialization import pack

from .conftest import ServerProcess, sse_events, tiny_png

#: Gates a listener waits on, so a test decides when a job may go on.
GATES: dict[str, threading.Event] = {}
PNG = tiny_png()
BLOB = bytes(range(256)) * 4
BIG = bytes(range(256)) * 2048  # 512 KiB: large enough for the server to keep it in memory


def work(msg: Any, *args: Any) -> Any:
    """One listener for the module; `msg['kind']` says what to return."""
    kind = msg.get("kind") if isinstance(msg, dict) else None
    if kind == "png":
        return PNG
    if kind == "blob":
        return BLOB
    if kind == "big":
        return BIG
    if kind == "text":
        return "héllo wörld"
    if kind == "html":
        return "<script>alert(1)</script>"
    if kind == "json":
        return ("summary", {"scores": [1, 2.5], "label": "cat"})
    if kind == "fail":
        raise ValueError("bad input on purpose")
    if kind == "gate":
        GATES[msg["gate"]].wait(10)
        return "released"
    if kind == "progress":
        args[0]["update_progress"](50)
        return "done"
    return msg


LISTENERS = [work]


def run(server: ServerProcess, worker: MLQ, msg: Any, **options: Any) -> str:
    job_id = server.post_job(msg, **options)
    worker.wait(job_id, timeout=10)
    return job_id


# -- POST /jobs -------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/json"},
                                     {"Content-Type": "application/x-www-form-urlencoded"},
                                     {"Content-Type": "text/plain"}])
def test_post_parses_json_whatever_the_content_type(server: ServerProcess, headers: dict[str, str]) -> None:
    response = server.post("/jobs", data=json.dumps({"msg": {"n": 1}, "queue": "held"}),
                           headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text.isdigit()
    assert server.get(f"/jobs/{response.text}").json()["msg"] == {"n": 1}


def test_post_answers_json_when_accept_prefers_it(server: ServerProcess) -> None:
    response = server.post("/jobs", json={"msg": 1, "queue": "held"},
                           headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.json() == {"job_id": response.json()["job_id"], "duplicate": False}
    assert response.json()["job_id"].isdigit()
    plain = server.post("/jobs", json={"msg": 1, "queue": "held"}, headers={"Accept": "*/*"})
    assert plain.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("body", ["", "[1, 2]", '"msg"', "{", '{"message": 1}', "null",
                                  '{"msg": 1, "callbak": "http://x"}', '{"msg": 1, "timeout": -1}',
                                  '{"msg": 1, "timeout": "soon"}', '{"msg": 1, "functions": 7}',
                                  '{"msg": 1, "functions": [1]}', '{"msg": 1, "callback": "ftp://x"}',
                                  '{"msg": 123456789012345678901234567890}', "[" * 5000, "\xff\xfe"])
def test_post_refuses_bad_bodies_with_400(server: ServerProcess, body: str) -> None:
    before = server.get("/jobs/count?queue=held").text
    response = server.post("/jobs", data=body.encode("latin-1"))
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)
    assert server.get("/jobs/count?queue=held").text == before


def test_post_passes_options(server: ServerProcess) -> None:
    job_id = server.post_job("m", callback="http://127.0.0.1:9/cb", functions=["a", "b"],
                             timeout=30, queue="held")
    job = server.get(f"/jobs/{job_id}").json()
    assert (job["callback"], job["functions"], job["timeout"]) == ("http://127.0.0.1:9/cb", ["a", "b"], 30)


def test_post_keeps_jsonpickle_markers_as_plain_data(server: ServerProcess, tmp_path: Any) -> None:
    trap = tmp_path / "pwned"
    msg = {"py/reduce": [{"py/function": "builtins.open"}, {"py/tuple": [str(trap), "w"]}]}
    job_id = server.post_job(msg, queue="held")
    assert server.get(f"/jobs/{job_id}").json()["msg"] == msg
    assert not trap.exists()


# -- reading -----------------------------------------------------------------------
def test_count_is_the_waiting_jobs(server: ServerProcess) -> None:
    queue = "count-test"
    assert server.get(f"/jobs/count?queue={queue}").text == "0"
    for _ in range(3):
        server.post_job("x", queue=queue)
    response = server.get(f"/jobs/count?queue={queue}")
    assert (response.status_code, response.text) == (200, "3")
    assert server.get("/jobs/count").text.isdigit()


def test_record_shows_bytes_as_base64(server: ServerProcess, worker: MLQ) -> None:
    job_id = worker.post(b"\x00\x01binary", queue="held")
    assert server.get(f"/jobs/{job_id}").json()["msg"] == {"base64": "AAFiaW5hcnk="}
    done = run(server, worker, {"kind": "png"})
    record = server.get(f"/jobs/{done}").json()
    assert record["status"] == "completed" and record["progress"] == 100
    assert base64.b64decode(record["result"]["base64"]) == PNG
    assert set(record) >= {"id", "timestamp", "worker", "processing_started", "processing_finished",
                           "progress", "short_result", "result", "callback", "retries",
                           "functions", "msg", "status", "error"}


def test_progress_short_result_and_result_before_and_after(server: ServerProcess, worker: MLQ) -> None:
    held = server.post_job({"kind": "json"}, queue="held")
    assert server.get(f"/jobs/{held}/progress").text == "[queued; not started]"
    response = server.get(f"/jobs/{held}/short_result")
    assert (response.status_code, response.text) == (202, "[no result]")
    assert server.get(f"/jobs/{held}/result").status_code == 202
    assert server.get(f"/jobs/{held}/result.png").status_code == 202

    done = run(server, worker, {"kind": "json"})
    assert server.get(f"/jobs/{done}/progress").text == "[completed]"
    response = server.get(f"/jobs/{done}/short_result")
    assert (response.status_code, response.text) == (200, "summary")
    response = server.get(f"/jobs/{done}/result")
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"scores": [1, 2.5], "label": "cat"}


def test_failed_job_gives_422_with_the_error(server: ServerProcess, worker: MLQ) -> None:
    job_id = run(server, worker, {"kind": "fail"})
    assert server.get(f"/jobs/{job_id}/progress").text == "[failed]"
    for path in ("short_result", "result", "result.png"):
        response = server.get(f"/jobs/{job_id}/{path}")
        assert response.status_code == 422
        assert "bad input on purpose" in response.json()["error"]


@pytest.mark.parametrize("path", ["", "/progress", "/short_result", "/result", "/result.png",
                                  "/events", "/link"])
@pytest.mark.parametrize("job_id", ["999999", "abc", "-1", "1.5", "%C3%A9"])
def test_unknown_job_is_404_on_every_job_route(server: ServerProcess, path: str, job_id: str) -> None:
    response = server.get(f"/jobs/{job_id}{path}")
    assert response.status_code == 404
    assert response.json()["error"]


# -- results -----------------------------------------------------------------------
@pytest.mark.parametrize(("suffix", "content_type"), [
    ("", "application/octet-stream"), (".png", "image/png"), (".jpg", "image/jpeg"),
    (".mp3", "audio/mpeg"), (".wav", "audio/wav"), (".webp", "image/webp"),
    (".flac", "audio/flac"), (".bin", "application/octet-stream"),
])
def test_binary_result_is_served_raw_with_the_extension_type(
        server: ServerProcess, worker: MLQ, suffix: str, content_type: str) -> None:
    job_id = run(server, worker, {"kind": "png"})
    response = server.get(f"/jobs/{job_id}/result{suffix}")
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Disposition" not in response.headers


def test_text_and_json_results_by_default_type(server: ServerProcess, worker: MLQ) -> None:
    text_id = run(server, worker, {"kind": "text"})
    response = server.get(f"/jobs/{text_id}/result")
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content == "héllo wörld".encode()
    assert server.get(f"/jobs/{text_id}/result.txt").headers["Content-Type"] == "text/plain; charset=utf-8"
    number_id = run(server, worker, 21)
    assert server.get(f"/jobs/{number_id}/result").json() == 21


@pytest.mark.parametrize("suffix", [".html", ".svg", ".xml", ".js", ".xhtml", ".mjs", ".wasm",
                                    ".xsl", ".css"])
def test_active_types_are_opaque_attachments(server: ServerProcess, worker: MLQ,
                                             suffix: str) -> None:
    job_id = run(server, worker, {"kind": "html"})
    response = server.get(f"/jobs/{job_id}/result{suffix}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == f'attachment; filename="result-{job_id}{suffix}"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    plain = server.get(f"/jobs/{job_id}/result")  # text/plain + nosniff: never rendered
    assert plain.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_every_result_answer_is_sandboxed_and_not_embeddable(server: ServerProcess,
                                                             worker: MLQ) -> None:
    done = run(server, worker, {"kind": "text"})
    waiting = server.post_job("held", queue="nobody-serves-this")
    for path in (f"/jobs/{done}/result", f"/jobs/{done}/result.png", f"/jobs/{waiting}/result"):
        response = server.get(path)
        assert response.status_code in (200, 202)
        assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
        assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin"


def test_range_requests(server: ServerProcess, worker: MLQ) -> None:
    job_id = run(server, worker, {"kind": "blob"})
    full = server.get(f"/jobs/{job_id}/result.mp3")
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Content-Length"] == str(len(BLOB))
    part = server.get(f"/jobs/{job_id}/result.mp3", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == BLOB[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(BLOB)}"
    tail = server.get(f"/jobs/{job_id}/result", headers={"Range": "bytes=-5"})
    assert (tail.status_code, tail.content) == (206, BLOB[-5:])
    bad = server.get(f"/jobs/{job_id}/result.mp3", headers={"Range": "bytes=5000-6000"})
    assert bad.status_code == 416
    assert bad.headers["Content-Range"] == f"bytes */{len(BLOB)}"
    assert bad.json()["error"]


def test_a_large_result_served_again_is_the_current_attempts(
        server: ServerProcess, worker: MLQ) -> None:
    job_id = run(server, worker, {"kind": "big"})
    assert server.get(f"/jobs/{job_id}/result").content == BIG
    part = server.get(f"/jobs/{job_id}/result", headers={"Range": "bytes=1000-1999"})
    assert (part.status_code, part.content) == (206, BIG[1000:2000])
    # the job ran again (a new attempt with another result): never the old bytes
    record = worker.get_job(job_id)
    newer = BIG[::-1]
    worker.client.hset(worker.keys.job(job_id), mapping={
        "attempt": pack(record["attempt"] + 1),
        "processing_finished": pack(record["processing_finished"] + 1),
        "result": pack(newer)})
    assert server.get(f"/jobs/{job_id}/result").content == newer
    worker.client.hset(worker.keys.job(job_id), "status", pack("started"))
    assert server.get(f"/jobs/{job_id}/result").status_code == 202


def test_conditional_requests(server: ServerProcess, worker: MLQ) -> None:
    job_id = run(server, worker, {"kind": "png"})
    first = server.get(f"/jobs/{job_id}/result.png")
    etag = first.headers["ETag"]
    again = server.get(f"/jobs/{job_id}/result.png", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other_type = server.get(f"/jobs/{job_id}/result.jpg", headers={"If-None-Match": etag})
    assert other_type.status_code == 200
    stale = server.get(f"/jobs/{job_id}/result.png", headers={"If-None-Match": '"nope"'})
    assert stale.status_code == 200 and stale.content == PNG
    since = server.get(f"/jobs/{job_id}/result.png",
                       headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert since.status_code == 304


def test_head_of_a_result(server: ServerProcess, worker: MLQ) -> None:
    job_id = run(server, worker, {"kind": "png"})
    response = server.request("HEAD", f"/jobs/{job_id}/result.png")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(PNG))
    assert response.content == b""


# -- events and links ------------------------------------------------------------------
def test_events_arrive_in_order_and_the_stream_closes(server: ServerProcess, worker: MLQ) -> None:
    GATES["events"] = gate = threading.Event()
    blocker = server.post_job({"kind": "gate", "gate": "events"})  # holds the only worker slot
    job_id = server.post_job({"kind": "progress"})
    with server.get(f"/jobs/{job_id}/events", stream=True) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = []
        for event in sse_events(response):
            if "comment" in event:
                # the stream is live and idle (the queued state was sent first):
                # only now may the job run
                gate.set()
                continue
            events.append((event["event"], event["data"]))
    assert [event for event in events if event[0] != "position"] == [
        ("queued", {"id": job_id, "status": "queued", "progress": None}),
        ("started", {"id": job_id, "status": "started", "progress": 0}),
        ("started", {"id": job_id, "status": "started", "progress": 50}),
        ("completed", {"id": job_id, "status": "completed", "progress": 100}),
    ]
    # while it waited behind the blocker, it was told it runs next
    assert events[1][0] == "position" and events[1][1]["position"] == 0
    assert [event[0] for event in events].count("position") == 1
    assert worker.wait(blocker, timeout=10)["result"] == "released"


def test_events_of_a_finished_job_is_one_event(server: ServerProcess, worker: MLQ) -> None:
    job_id = run(server, worker, "x")
    with server.get(f"/jobs/{job_id}/events", stream=True) as response:
        events = [e for e in sse_events(response) if "comment" not in e]
    assert [e["event"] for e in events] == ["completed"]


def test_events_send_keep_alive_comments(server: ServerProcess) -> None:
    job_id = server.post_job("x", queue="held")  # never taken: the stream stays open
    with server.get(f"/jobs/{job_id}/events", stream=True) as response:
        stream = sse_events(response)
        assert next(stream)["event"] == "queued"
        assert next(stream)["event"] == "position"  # its place in line, once: it never moves
        assert next(stream) == {"comment": "keep-alive"}  # the server's keepalive is 0.5 s


def test_link_is_signed_and_opens_the_result(server: ServerProcess, worker: MLQ) -> None:
    job_id = run(server, worker, {"kind": "png"})
    response = server.get(f"/jobs/{job_id}/link?ttl=60")
    assert response.status_code == 200
    url = response.json()["url"]
    assert url.startswith(f"/jobs/{job_id}/result?expires=") and "&sig=" in url
    assert requests.get(server.url + url, timeout=10).content == PNG
    for ttl in ("0", "-5", "abc", "99999999999"):
        assert server.get(f"/jobs/{job_id}/link?ttl={ttl}").status_code == 400
