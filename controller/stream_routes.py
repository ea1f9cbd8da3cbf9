"""The event streams of a job, as server-sent events: GET /jobs/<id>/events (its
state and each change) and GET /jobs/<id>/stream (its streamed chunks,
mlq/streams.py, resumable with Last-Event-ID). Both end with the job's final
status. Each is one greenlet under gevent, listening through the process's one
shared subscription (mlq/dispatch.py), so open streams hold no connection each.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, abort, request, stream_with_context

from mlq import streams
from mlq.errors import REDIS_DOWN, JobNotFound
from mlq.job import QUEUED, STATUSES, TERMINAL
from mlq.queue import MLQ

from .helpers import current_state, error_response, jsonable
from .openapi import _JOB_ID, _error, _op

log = logging.getLogger("mlq.http")

bp = Blueprint("streams", __name__)

#: Seconds between two looks at a queued job's place in line (a `position` event
#: is sent when it changed).
POSITION_EVERY = 1.0
#: One look at a place in line at a time per process, the others try again on their
#: next tick: a thousand streams of queued jobs cost one Redis connection's worth of
#: reads, not a thousand connections' bursts.
_LOOKING = threading.Lock()
#: A Redis Stream entry id, as the `id:` of each chunk event carries it.
ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")


@bp.get("/jobs/<job_id>/events")
def events(job_id: str) -> Response:
    """The state now, each change, closed after the terminal state; while the job
    waits in line, its place when it changes (at most every POSITION_EVERY s)."""
    def open_events() -> Iterator[str]:
        # ticks as often as positions are looked at; 404 before streaming
        watch = state.mlq.watch(job_id, keepalive=state.sse_keepalive, tick=POSITION_EVERY)
        return _sse(_with_positions(state.mlq, job_id, watch, state.sse_keepalive), job_id,
                    _state_event)

    state = current_state()
    return _event_stream(open_events)


@bp.get("/jobs/<job_id>/stream")
def stream(job_id: str) -> Response:
    """Each chunk as an event, then the final status; a reader that reconnects with
    Last-Event-ID (or ?after=) resumes after that chunk."""
    def open_chunks() -> Iterator[str]:
        after = _resume_point()
        job = state.mlq.get_job(job_id, fields=["status"])  # 404 before streaming
        entries = streams.entries(state.mlq, job["id"], after, keepalive=state.sse_keepalive)
        return _sse(entries, job["id"], _chunk_event)

    state = current_state()
    return _event_stream(open_chunks)


def _event_stream(open_events: Callable[[], Iterator[str]]) -> Response:
    state = current_state()
    if state.open_streams >= state.max_streams:
        busy = error_response("too many open event streams: try again soon", 503)
        busy.headers["Retry-After"] = "5"
        return busy
    events = open_events()
    state.open_streams += 1
    response = Response(stream_with_context(events), mimetype="text/event-stream")
    response.call_on_close(state.stream_closed)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx must not hold events back
    return response


def _resume_point() -> str:
    after = request.headers.get("Last-Event-ID") or request.args.get("after") or "0-0"
    if not ENTRY_ID.fullmatch(after):
        abort(400, description="Last-Event-ID (or after) must be a chunk event's id, "
                               "such as 1733580000000-0")
    return after


def _sse(source: Iterator[Any], job_id: str, event: Callable[[Any, str], str]) -> Iterator[str]:
    """`source` as SSE text: None as a keep-alive comment, the rest through `event`."""
    try:
        for item in source:
            yield ": keep-alive\n\n" if item is None else event(item, job_id)
    except REDIS_DOWN as exc:
        # headers are gone already: the error can only be an event
        log.warning("event stream of job %s ended: %s", job_id, exc)
        yield f"event: error\ndata: {_data({'error': f'Redis unavailable: {exc}'})}\n\n"
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()  # stops listening at once when the client went away


def _with_positions(mlq: MLQ, job_id: str, watch: Iterator[dict[str, Any] | None],
                    keepalive: float) -> Iterator[dict[str, Any] | None]:
    """The watch's states, with a {"position", "eta_s"} item whenever the place of a
    queued job changed (looked at on the watch's ticks), and None (a keep-alive)
    only after `keepalive` seconds without output."""
    status, place, looked, sent = None, None, float("-inf"), time.monotonic()
    try:
        for state in watch:
            now = time.monotonic()
            if state is not None:
                status = state["status"]
                sent = now
                yield state
            if status == QUEUED and now - looked >= POSITION_EVERY and _LOOKING.acquire(False):
                looked = now
                try:
                    found = mlq.get_job(job_id, fields=["status", "position", "eta_s"])
                except JobNotFound:  # purged meanwhile: the watch says so in its own time
                    found = {"status": None}
                finally:
                    _LOOKING.release()
                if found["status"] == QUEUED and found["position"] != place:
                    place, sent = found["position"], now
                    yield {"id": found["id"], "position": place, "eta_s": found["eta_s"]}
            if state is None and now - sent >= keepalive:
                sent = now
                yield None
    finally:
        watch.close()  # type: ignore[attr-defined]


def _state_event(state: dict[str, Any], job_id: str) -> str:
    if "position" in state:
        return f"event: position\ndata: {_data(state)}\n\n"
    data = {"id": state["id"], "status": state["status"], "progress": state["progress"]}
    return f"event: {_one_line(state['status'])}\ndata: {_data(data)}\n\n"


def _chunk_event(entry: streams.Chunk | streams.End, job_id: str) -> str:
    if isinstance(entry, streams.Chunk):
        return f"event: chunk\nid: {entry.id}\ndata: {_data(entry.value)}\n\n"
    status = entry.status if entry.status in TERMINAL else "completed"
    return f"event: {status}\ndata: {_data({'id': job_id, 'status': status})}\n\n"


def _data(value: Any) -> str:
    # one line: JSON escapes every newline inside strings
    return json.dumps(jsonable(value))


def _one_line(text: Any) -> str:
    return str(text).replace("\r", " ").replace("\n", " ")


_STATE_EVENT = {
    "type": "object", "required": ["data"],
    "properties": {"event": {"enum": [*STATUSES, "position", "error"]},
                   "data": {"type": "string", "contentMediaType": "application/json"}}}
_BUSY = {**_error("Redis is unreachable, or too many event streams are open "
                  "(--max_streams; see Retry-After)."),
         "headers": {"Retry-After": {"schema": {"type": "integer"}}}}

_CHUNK_EVENT = {
    "type": "object", "required": ["data"],
    "properties": {
        "event": {"enum": ["chunk", *sorted(TERMINAL), "error"]},
        "id": {"type": "string", "pattern": ENTRY_ID.pattern,
               "description": "On chunk events: send it back as Last-Event-ID to resume."},
        "data": {"type": "string", "contentMediaType": "application/json"}}}

_RESUME = [
    {"name": "Last-Event-ID", "in": "header", "required": False,
     "description": "Resume after this chunk (EventSource sends it on reconnect).",
     "schema": {"type": "string", "pattern": ENTRY_ID.pattern}},
    {"name": "after", "in": "query", "required": False,
     "description": "The same as Last-Event-ID, for clients that cannot set headers.",
     "schema": {"type": "string", "pattern": ENTRY_ID.pattern}}]
_CHUNKS = {"description": (
    "event: chunk, id: <entry id>, data: the chunk as JSON (bytes as {\"base64\": ...}), "
    "one per chunk in order; then event: completed, failed, cancelled or expired with "
    "data {id, status}, and the stream closes. A job that streams nothing sends only the "
    "final event. Comments (': keep-alive') while no chunk comes."),
    "content": {"text/event-stream": {"schema": _CHUNK_EVENT}}}


def _page(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


OPENAPI_PATHS = {
    "/jobs/{job_id}/events": {"get": _op("Server-sent events of the job's state", {
        "200": {"description": "event: <status>, data: {id, status, progress}, on each "
                               "change; while the job is queued, event: position, data: "
                               "{id, position, eta_s} when its place in line changed "
                               "(looked at once a second); closed after completed, failed, "
                               "cancelled or expired.",
                "content": {"text/event-stream": {"schema": _STATE_EVENT}}},
        "503": _BUSY}, job=True)},
    "/jobs/{job_id}/stream": {"get": _op("Server-sent events of the job's streamed chunks", {
        "200": _CHUNKS, "400": _error("Last-Event-ID (or after) is not an entry id."),
        "503": _BUSY}, job=True, params=_RESUME)},
    "/ui/jobs/{job_id}/stream": {"get": {
        "summary": "Dashboard: the job's streamed chunks, as GET /jobs/{job_id}/stream",
        "security": [{"dashboardSession": []}, {}], "parameters": [_JOB_ID, *_RESUME],
        "responses": {"200": _CHUNKS,
                      "302": {"description": "To /ui/login when the server has a token."},
                      "400": _page("Last-Event-ID (or after) is not an entry id."),
                      "404": _page("No such job."),
                      "503": {**_BUSY, "content": {**_BUSY["content"], **_page("")["content"]},
                              "description": "Too many event streams are open (JSON, see "
                                             "Retry-After), or Redis is unreachable (a page)."}}}},
}
