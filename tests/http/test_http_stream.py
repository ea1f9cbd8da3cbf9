"""GET /jobs/<id>/stream: a job's chunks as server-sent events, resumed exactly with
Last-Event-ID, ended by the job's final status."""

from __future__ import annotations

import resource
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from mlq import MLQ
from tests.faults.conftest import clients_from, tcp_ports

from .conftest import ServerProcess, sse_events

#: Gates a listener waits on, so a test decides when a job may go on.
GATES: dict[str, threading.Event] = {}


def generate(msg: Any, *args: Any) -> Any:
    """The module's listener: `msg['kind']` says what to stream."""
    kind = msg["kind"]
    if kind == "count":
        return (f"token {n}" for n in range(msg["n"]))
    if kind == "mixed":
        return (chunk for chunk in ["text", b"\x00\xffbytes", {"json": [1, 2.5, None]}, 7])
    if kind == "gated":
        return _gated(msg["gate"])
    if kind == "fails":
        return _fails()
    return "nothing streamed"


def _gated(gate: str) -> Iterator[str]:
    yield "before the gate"
    GATES[gate].wait(10)
    yield "after the gate"


def _fails() -> Iterator[str]:
    yield "partial"
    raise ValueError("broke mid-stream")


LISTENERS = [generate]


def chunk_events(response: requests.Response, limit: int | None = None) -> list[dict[str, Any]]:
    """The events (not comments) as they come, stopping after `limit` chunks."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events: list[dict[str, Any]] = []
    for event in sse_events(response):
        if "comment" in event:
            continue
        events.append(event)
        if limit is not None and sum(e["event"] == "chunk" for e in events) == limit:
            break
    return events


def test_a_reader_that_resumes_after_300_of_1000_chunks_gets_the_other_700_in_order(
        server: ServerProcess, worker: MLQ) -> None:
    job_id = server.post_job({"kind": "count", "n": 1000})
    with server.get(f"/jobs/{job_id}/stream", stream=True) as response:
        first = chunk_events(response, limit=300)
    assert [e["data"] for e in first] == [f"token {n}" for n in range(300)]
    with server.get(f"/jobs/{job_id}/stream", stream=True,
                    headers={"Last-Event-ID": first[-1]["id"]}) as response:
        rest = chunk_events(response)
    assert [e["data"] for e in rest[:-1]] == [f"token {n}" for n in range(300, 1000)]
    assert len({e["id"] for e in first + rest[:-1]}) == 1000  # ids unique, so no duplicates
    assert (rest[-1]["event"], rest[-1]["data"]) == ("completed", {"id": job_id,
                                                                   "status": "completed"})
    assert worker.get_job(job_id)["result"] == [f"token {n}" for n in range(1000)]


def test_chunks_arrive_while_the_job_runs(server: ServerProcess, worker: MLQ) -> None:
    GATES["live"] = gate = threading.Event()
    job_id = server.post_job({"kind": "gated", "gate": "live"})
    with server.get(f"/jobs/{job_id}/stream", stream=True) as response:
        events = sse_events(response)
        first = next(e for e in events if "comment" not in e)
        # the job is still held at the gate: this chunk came live, not after the end
        assert (first["event"], first["data"]) == ("chunk", "before the gate")
        assert worker.get_job(job_id, fields=["status"])["status"] == "started"
        gate.set()
        rest = [e for e in events if "comment" not in e]
    assert [(e["event"], e["data"]) for e in rest] == [
        ("chunk", "after the gate"), ("completed", {"id": job_id, "status": "completed"})]


def test_a_reader_after_the_end_gets_every_chunk_as_json(server: ServerProcess,
                                                         worker: MLQ) -> None:
    job_id = server.post_job({"kind": "mixed"})
    worker.wait(job_id, timeout=10)
    with server.get(f"/jobs/{job_id}/stream", stream=True) as response:
        events = chunk_events(response)
    assert [e["data"] for e in events[:-1]] == [
        "text", {"base64": "AP9ieXRlcw=="}, {"json": [1, 2.5, None]}, 7]
    assert events[-1]["event"] == "completed"
    # ?after= does what Last-Event-ID does
    with server.get(f"/jobs/{job_id}/stream?after={events[1]['id']}", stream=True) as response:
        assert [e["data"] for e in chunk_events(response)[:-1]] == [{"json": [1, 2.5, None]}, 7]


def test_a_failure_mid_stream_ends_with_a_failed_event(server: ServerProcess,
                                                       worker: MLQ) -> None:
    job_id = server.post_job({"kind": "fails"})
    with server.get(f"/jobs/{job_id}/stream", stream=True) as response:
        events = chunk_events(response)
    assert [(e["event"], e["data"]) for e in events] == [
        ("chunk", "partial"), ("failed", {"id": job_id, "status": "failed"})]


def test_a_job_that_streams_nothing_sends_only_its_final_event(server: ServerProcess,
                                                               worker: MLQ) -> None:
    job_id = server.post_job({"kind": "plain"})
    with server.get(f"/jobs/{job_id}/stream", stream=True) as response:
        events = chunk_events(response)
    assert [e["event"] for e in events] == ["completed"]
    assert worker.get_job(job_id)["result"] == "nothing streamed"


@pytest.mark.parametrize("resume", ["nope", "1-", "-1", "1-2-3", "9" * 21 + "-0"])
def test_a_bad_resume_point_is_a_400(server: ServerProcess, resume: str) -> None:
    job_id = server.post_job({"kind": "plain"}, queue="held")
    response = server.get(f"/jobs/{job_id}/stream", headers={"Last-Event-ID": resume})
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["error"]


def test_an_unknown_job_is_a_404(server: ServerProcess) -> None:
    response = server.get("/jobs/999999999/stream")
    assert (response.status_code, "error" in response.json()) == (404, True)


@pytest.mark.slow
def test_a_thousand_open_event_streams_hold_at_most_two_redis_connections(
        tmp_path: Path, redis_url: str, worker: MLQ) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    server = ServerProcess(namespace=worker.namespace, redis_url=redis_url,
                           max_streams=1100, max_connections=1100, keepalive=30,
                           log_path=tmp_path / "server.log").start()
    # due in an hour: the streams only listen (a queued job's stream would also look
    # up its place in line each second, one look at a time per server process)
    ids = worker.post_many([{"kind": "plain"}] * 1000, queue="nobody-serves-this", delay=3600)
    streams: list[socket.socket] = []
    try:
        for n, job_id in enumerate(ids):
            path = f"/jobs/{job_id}/stream" if n % 2 else f"/jobs/{job_id}/events"
            streams.append(_open_stream(server.port, path))
        held = clients_from(worker.client, tcp_ports([server.process.pid]))
        assert 1 <= len(held) <= 2, [c for c in worker.client.client_list() if c["addr"] in held]
        # every stream is live: each job's end reaches its reader, then the stream closes
        assert len(worker.cancel_many(queue="nobody-serves-this")) == 1000
        for stream in streams:
            assert b"cancelled" in _read_to_close(stream)
    finally:
        for stream in streams:
            stream.close()
        server.stop()


def _open_stream(port: int, path: str) -> socket.socket:
    """A raw connection reading an event stream: its headers and first bytes read."""
    stream = socket.create_connection(("127.0.0.1", port), timeout=10)
    stream.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert stream.recv(4096).startswith(b"HTTP/1.1 200")
    return stream


def _read_to_close(stream: socket.socket) -> bytes:
    received = b""
    while chunk := stream.recv(65536):
        received += chunk
    return received


def test_the_event_stream_tells_a_queued_job_its_place_when_it_changes(
        server: ServerProcess, worker: MLQ) -> None:
    ahead = [server.post_job({"kind": "plain"}, queue="in-line") for _ in range(2)]
    job_id = server.post_job({"kind": "plain"}, queue="in-line")
    with server.get(f"/jobs/{job_id}/events", stream=True) as response:
        events = (e for e in sse_events(response) if "comment" not in e)
        assert next(events)["event"] == "queued"
        first = next(events)
        assert (first["event"], first["data"]["position"]) == ("position", 2)
        worker.cancel(ahead[0])
        moved = next(events)  # the next look, within a second, finds it one place up
        assert (moved["event"], moved["data"]["position"]) == ("position", 1)
        worker.cancel(job_id)
        assert [e["event"] for e in events] == ["cancelled"]
    worker.cancel(ahead[1])
