"""Routes of a job's life besides posting it (docs/lifecycle.md): cancel jobs,
periodic jobs, paused queues. Every value is checked by the library, whose
InvalidMessage the error handler answers with 400."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort

from mlq.control import MAX_CANCEL
from mlq.lifecycle import MAX_DEPENDENCIES, MAX_KEY_BYTES, MAX_RETRIES

from .helpers import current_state, error_response, json_response
from .jobs import read_functions, read_object
from .openapi import _ADMIN_403, _ADMIN_SECURITY, _ANY, _NAME_PATTERN, _STATUS, _error, _json, _op

bp = Blueprint("lifecycle", __name__)

#: Keys a PUT /schedules/<name> body may carry: MLQ.schedule's arguments.
SCHEDULE_FIELDS = ("cron", "msg", "queue", "functions", "timezone", "priority", "timeout")
#: The ones given as keywords; null counts as not given.
SCHEDULE_OPTIONS = SCHEDULE_FIELDS[2:]


# -- cancel -----------------------------------------------------------------------
@bp.delete("/jobs/<job_id>")
def cancel(job_id: str) -> Response:
    """Cancel a job: a waiting one never runs, a running one is asked to stop;
    409 once it has ended."""
    mlq = current_state().mlq
    cancelled = mlq.cancel(job_id)  # JobNotFound: 404
    job = mlq.get_job(job_id, fields=("status",))
    if not cancelled:
        return error_response(f"job {job['id']} has already ended ({job['status']})", 409)
    # a running job stays "started" until its listener returns or its worker is stopped
    return json_response({"job_id": job["id"], "cancelled": True, "status": job["status"]})


@bp.post("/jobs/cancel")
def cancel_many() -> Response:
    """Cancel the jobs ``{"ids": [...]}`` names, or every waiting and running job
    of ``{"queue": ...}``; the ids cancelled (unknown and ended ones left out)."""
    body = read_object(("ids", "queue"), '{"ids": [...]} or {"queue": "..."}')
    if len(body) != 1:
        abort(400, description='give exactly one of "ids" and "queue"')
    ids = body.get("ids")
    if "ids" in body and not (isinstance(ids, list) and all(_id_like(i) for i in ids)):
        abort(400, description="ids must be a list of job ids")
    return json_response({"cancelled": current_state().mlq.cancel_many(
        ids=ids, queue=body.get("queue"))})


def _id_like(value: Any) -> bool:
    # the shape only: an id that is no job's is left out of the answer, as unknown
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


# -- periodic jobs ------------------------------------------------------------------
@bp.get("/schedules")
def schedules() -> Response:
    """Every periodic job by name, with its next and last run."""
    return json_response({"schedules": current_state().mlq.schedules()})


@bp.put("/schedules/<name>")
def put_schedule(name: str) -> Response:
    """Define (or replace) the periodic job `name`; the schedule as stored."""
    body = read_object(SCHEDULE_FIELDS, '{"cron": "0 2 * * *", "msg": ...}',
                       required=("cron", "msg"))
    options = {k: body[k] for k in SCHEDULE_OPTIONS if body.get(k) is not None}
    if "functions" in options:
        options["functions"] = read_functions(body)
    return json_response(current_state().mlq.schedule(name, body["cron"], body["msg"],
                                                      **options))


@bp.delete("/schedules/<name>")
def delete_schedule(name: str) -> Response:
    """Stop the periodic job `name`; 404 when there is none."""
    if not current_state().mlq.unschedule(name):
        return error_response(f"no schedule {name!r}", 404)
    return json_response({"removed": True})


# -- queues -----------------------------------------------------------------------
@bp.get("/queues")
def queues() -> Response:
    """Every known queue (and any paused one): jobs waiting, and whether paused."""
    mlq = current_state().mlq
    paused = set(mlq.paused())
    names = sorted(set(mlq.queue_names()) | paused)
    return json_response({"queues": [
        {"name": name, "waiting": mlq.job_count(name), "paused": name in paused}
        for name in names]})


@bp.post("/queues/<name>/pause")
def pause(name: str) -> Response:
    """Workers take nothing more from the queue; posts to it are still accepted."""
    current_state().mlq.pause(name)
    return json_response({"queue": name, "paused": True})


@bp.post("/queues/<name>/resume")
def resume(name: str) -> Response:
    """Workers take from the queue again, woken at once."""
    current_state().mlq.resume(name)
    return json_response({"queue": name, "paused": False})


# -- what GET /openapi.json says of them (openapi.document() adds it) -------------------
def _object(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "description": "JSON, whatever the Content-Type.",
            "content": {"application/json": {"schema": _ref(schema)}}}


def _name(kind: str) -> dict[str, Any]:
    # at least one character that is not a dot: a client would read "." and ".." in
    # a path as "here" and "up", so such a name cannot be reached through a URL
    return {"name": "name", "in": "path", "required": True, "description": f"The {kind}'s name.",
            "schema": {"type": "string", "maxLength": 128,
                       "pattern": "^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$"}}


_SECONDS = {"type": ["number", "null"], "minimum": 0}
#: The JobPost keys of docs/lifecycle.md.
POST_OPTION_SCHEMAS = {
    "delay": {**_SECONDS, "description": "Seconds to wait before it may start; not with at."},
    "at": {"type": ["number", "string", "null"], "examples": ["2026-12-24T08:00:00Z"],
           "description": "When it may start: epoch seconds, or ISO 8601 (naive is UTC); "
                          "not with delay."},
    "expires": {"type": ["number", "null"], "exclusiveMinimum": 0,
                "description": "Seconds from now: not started by then, it ends expired."},
    "retries": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_RETRIES, "default": 0,
                "description": "Extra attempts after an exception."},
    "backoff": {**_SECONDS, "default": 1, "description": "Base delay of a retry (full jitter)."},
    "backoff_max": {**_SECONDS, "default": 600, "description": "Longest delay of a retry."},
    "retry_on": {"type": ["array", "string", "null"], "minLength": 1, "maxLength": 200,
                 "items": {"type": "string", "minLength": 1, "maxLength": 200},
                 "description": "Exception class names retried (default: any)."},
    "key": {"type": ["string", "null"], "minLength": 1,
            "description": f"A dedup key of 1 to {MAX_KEY_BYTES} bytes: while its job lives, "
                           "posting it again returns that job's id."},
    "key_ttl": {**_SECONDS, "description": "Seconds the key still answers after its job "
                                           "ended; needs key."},
    "depends_on": {"type": ["array", "null"], "maxItems": MAX_DEPENDENCIES,
                   "items": {"type": ["string", "integer"]},
                   "description": "Ids that must all complete before it is queued."},
}
_SCHEDULE = {
    "name": {"type": "string"}, "cron": {"type": "string"}, "msg": _ANY,
    "queue": {"type": "string"}, "functions": {"type": ["array", "null"], "items": {
        "type": "string"}}, "timezone": {"type": "string"}, "priority": {"type": "integer"},
    "timeout": {"type": ["number", "null"]}, "created": {"type": "number"},
    "next_run": {"type": ["integer", "null"], "description": "Epoch seconds."},
    "last_run": {"type": ["integer", "null"], "description": "The slot that fired last."},
    "last_job": {"type": ["string", "null"], "description": "The job it posted."},
}
OPENAPI_SCHEMAS = {
    "Schedule": _object(**_SCHEDULE),
    "SchedulePut": {
        "type": "object", "required": ["cron", "msg"], "additionalProperties": False,
        "description": "Options given as null count as not given.", "properties": {
            "cron": {"type": "string", "examples": ["0 2 * * *"],
                     "description": "Five fields, or six with seconds first."},
            "msg": _ANY,
            "queue": {"type": ["string", "null"], "default": "default", "pattern": _NAME_PATTERN},
            "functions": {"type": ["array", "string", "null"], "minLength": 1,
                          "items": {"type": "string", "minLength": 1}},
            "timezone": {"type": ["string", "null"], "default": "UTC",
                         "description": "An IANA name such as Europe/Berlin."},
            "priority": {"type": ["integer", "null"], "minimum": 0, "maximum": 9, "default": 0},
            "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0}}},
    "CancelMany": {"oneOf": [
        {**_object(ids={"type": "array", "maxItems": MAX_CANCEL,
                        "items": {"type": ["string", "integer"]}}), "additionalProperties": False},
        {**_object(queue={"type": "string", "pattern": _NAME_PATTERN}),
         "additionalProperties": False}]},
}
_QUEUE_STATE = {
    "200": _json("The queue, and whether it is paused now.",
                 _object(queue={"type": "string"}, paused={"type": "boolean"})),
    "400": _error("Not a valid queue name."), "403": _error(_ADMIN_403)}
OPENAPI_PATHS = {
    "/jobs/{job_id}": {"delete": _op("Cancel a job: a waiting one never runs, a running one "
                                     "is asked to stop", {
        "200": _json("Cancelled; the status now (a running job stays started until it "
                     "stops, then ends cancelled).",
                     _object(job_id={"type": "string"}, cancelled={"const": True},
                             status=_STATUS)),
        "409": _error("The job had already ended.")}, job=True)},
    "/jobs/cancel": {"post": _op("Cancel jobs by id, or every waiting and running job of a "
                                 "queue (admin scope)", {
        "200": _json("The ids cancelled or asked to stop; unknown and ended ones are left out.",
                     _object(cancelled={"type": "array", "items": {"type": "string"}})),
        "400": _error("Not exactly one of ids and queue, more than 10000 ids, or a bad "
                      "queue name."),
        "403": _error(_ADMIN_403)}, body=_body("CancelMany"), security=_ADMIN_SECURITY)},
    "/schedules": {"get": _op("Periodic jobs, by name", {"200": _json(
        "Every schedule.", _object(schedules={"type": "array", "items": _ref("Schedule")}))})},
    "/schedules/{name}": {
        "put": _op("Define or replace a periodic job", {
            "200": _json("The schedule as stored.", _ref("Schedule")),
            "400": _error("Not a JSON object, no cron or msg, an unknown field, or a bad name, "
                          "cron expression, timezone or option.")},
            params=[_name("schedule")], body=_body("SchedulePut")),
        "delete": _op("Stop a periodic job", {
            "200": _json("Removed.", _object(removed={"const": True})),
            "404": _error("No schedule of that name.")}, params=[_name("schedule")])},
    "/queues": {"get": _op("Queues: jobs waiting, and whether paused", {"200": _json(
        "Every known queue and every paused one, by name.", _object(queues={
            "type": "array", "items": _object(name={"type": "string"},
                                              waiting={"type": "integer"},
                                              paused={"type": "boolean"})}))})},
    "/queues/{name}/pause": {"post": _op(
        "Pause a queue: workers take nothing from it, posts to it wait (admin scope)",
        _QUEUE_STATE, params=[_name("queue")], security=_ADMIN_SECURITY)},
    "/queues/{name}/resume": {"post": _op(
        "Resume a paused queue: its workers are woken (admin scope)", _QUEUE_STATE,
        params=[_name("queue")], security=_ADMIN_SECURITY)},
}
