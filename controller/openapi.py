"""The OpenAPI 3.1 document of the HTTP server (GET /openapi.json).

Kept as data next to the routes (those of a job's life besides posting it in
lifecycle_routes.py, built with the helpers here); tests/http checks that every
rule and method of the app's url_map appears and that the document validates.
"""

from __future__ import annotations

import copy
from typing import Any

from mlq import __version__
from mlq.job import STATUSES
from mlq.keys import NAME_RULE

from .auth import MAX_LINK_TTL

#: Queue and owner names (mlq.keys.NAME_RULE).
_NAME_PATTERN = f"^{NAME_RULE}$"

_ERROR = {"$ref": "#/components/schemas/Error"}
_JOB_ID = {"name": "job_id", "in": "path", "required": True,
           "description": "The decimal job id returned by POST /jobs.",
           "schema": {"type": "string", "pattern": "^[0-9]+$"}}
_STATUS = {"enum": list(STATUSES)}
#: Result routes open with the token or with a signed link (GET /jobs/{id}/link).
_RESULT_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"signedLink": []}, {}]


def _text(description: str, example: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if example is not None:
        schema["examples"] = [example]
    return {"description": description, "content": {"text/plain": {"schema": schema}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, _ERROR)


def _count(key: str) -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"type": "integer"}}, "required": [key]}


def _op(summary: str, responses: dict[str, Any], *, params: list[Any] | None = None,
        body: dict[str, Any] | None = None, security: list[Any] | None = None,
        job: bool = False) -> dict[str, Any]:
    """One operation; every one may also answer 401 (token) and 503 (Redis down)."""
    operation: dict[str, Any] = {"summary": summary}
    parameters = ([_JOB_ID] if job else []) + (params or [])
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    all_responses = dict(responses)
    if job:
        all_responses.setdefault("404", _error("No such job."))
    if security != []:
        all_responses.setdefault("401", _error("Missing or wrong bearer token."))
        all_responses.setdefault("429", {
            **_error("Too many bad credentials from this address in the last minute."),
            "headers": {"Retry-After": {"schema": {"type": "integer"},
                                        "description": "Seconds until it may try again."}}})
    all_responses.setdefault("403", _error(
        "The Host header names no host this server answers to (--allowed_hosts), or a "
        "browser sent this state-changing request from a page of another site."))
    all_responses.setdefault("503", _error("Redis is unreachable."))
    operation["responses"] = all_responses
    if security is not None:
        operation["security"] = security
    return operation


_POST_BODY = {
    "required": True,
    "description": "JSON, whatever the Content-Type (none, form-encoded and JSON all work).",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobPost"}}},
}
_ENVELOPE = {
    "required": True,
    "description": "jsonpickle.encode(cloudpickle.dumps(f)), optionally with the function's "
                   "name and the uploader's signature; Content-Type must be application/json. "
                   "Read with the json module only; the server never unpickles it.",
    "content": {"application/json": {"schema": {
        "type": "object", "properties": {
            "py/b64": {"type": "string", "description": "Base64 of the pickle."},
            "name": {"type": "string", "description": "The name to register it under; "
                     "else read from the pickle's opcodes (400 when that fails)."},
            "signature": {"type": "string", "description": "sha256=<hex HMAC-SHA256 of the "
                          "pickle with the shared secret>, as in X-MLQ-Signature."}},
        "required": ["py/b64"], "additionalProperties": False}}},
}
_NAME_QUERY = {"name": "name", "in": "query", "schema": {"type": "string"},
               "description": "The function's name (wins over the body's)."}
_SIGNATURE_HEADER = {"name": "X-MLQ-Signature", "in": "header", "schema": {"type": "string"},
                     "description": "sha256=<hex HMAC-SHA256 of the pickle bytes with the "
                                    "shared secret>; required when the server has a secret."}
#: Code and dead letters: the admin token where one is set, else the one token.
_ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminBearer": []}, {}]
_ADMIN_403 = "Only the user token was given (the admin token is needed), a cross-site " \
             "request, or an unknown Host."
_BOOL_TEXT = _text("True or False.", "True")
_RESULT_HEADERS = {
    "Content-Security-Policy": {"schema": {"const": "default-src 'none'; sandbox"},
                                "description": "A result opened as a page runs nothing."},
    "Cross-Origin-Resource-Policy": {"schema": {"const": "same-origin"},
                                     "description": "No other site may embed a result."},
}
_RESULT_RESPONSES = {
    "200": {"description": "The raw result: bytes as stored, str as UTF-8, others as JSON. "
                           "Types a browser would run (html, svg, xml, js, wasm, css ...) are "
                           "served as application/octet-stream attachments.",
            "headers": _RESULT_HEADERS,
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
    "202": _text("Not finished yet.", "[no result]"),
    "206": {"description": "The requested byte range.",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
    "304": {"description": "Not modified (If-None-Match / If-Modified-Since)."},
    "401": _error("No valid token, or an invalid or expired signed link."),
    "416": _error("Range not satisfiable."),
    "422": _error("The job failed; the error says why."),
}


def _paths() -> dict[str, Any]:
    result_op = _op("The job's result", _RESULT_RESPONSES, job=True, security=_RESULT_SECURITY)
    result_ext_op = _op("The job's result, typed by the extension (result.png, result.mp3 ...)",
                        _RESULT_RESPONSES, job=True, security=_RESULT_SECURITY,
                        params=[{"name": "ext", "in": "path", "required": True,
                                 "schema": {"type": "string"}}])
    return {
        "/healthz": {"get": _op("Liveness and Redis reachability", {
            "200": _text("Redis answers.", "ok"), "503": _error("Redis is unreachable.")},
            security=[])},
        "/jobs": {"post": _op("Enqueue a job", {
            "200": {"description": "The job id (text), or JSON when Accept prefers it; "
                                   "duplicate: its key found a live job, whose id this is.",
                    "content": {"text/plain": {"schema": {"type": "string"}},
                                "application/json": {"schema": {
                                    "type": "object", "required": ["job_id", "duplicate"],
                                    "properties": {"job_id": {"type": "string"},
                                                   "duplicate": {"type": "boolean"}}}}}},
            "400": _error("Not a JSON object, no msg, unknown field, invalid option, an "
                          "unknown depends_on id, or nested deeper than --max_depth (64)."),
            "413": _error("Body over the size limit."),
            "503": {**_error("Redis is unreachable, or (--min_replicas) the job was stored but "
                             "not confirmed by that many replicas in time: post again."),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}}}},
            body=_POST_BODY)},
        "/jobs/count": {"get": _op("Jobs waiting", {
            "200": _text("The number.", "3"), "400": _error("Not a valid queue name.")}, params=[
            {"name": "queue", "in": "query", "schema": {"type": "string", "default": "default",
                                                         "pattern": _NAME_PATTERN}}])},
        "/jobs/{job_id}": {"get": _op("The job's record", {
            "200": _json("The record (bytes as {\"base64\": ...}); position: jobs taken "
                         "before it, eta_s: seconds until it starts (null unless queued).",
                         {"$ref": "#/components/schemas/Job"})}, job=True)},
        "/jobs/{job_id}/progress": {"get": _op("The job's progress text", {
            "200": _text("[queued; not started], [scheduled], [deferred], [started], a value, "
                         "[completed], [failed], [cancelled] or [expired].", "50")}, job=True)},
        "/jobs/{job_id}/short_result": {"get": _op("The job's short result", {
            "200": _text("The short result (empty when None)."),
            "202": _text("Not finished yet.", "[no result]"),
            "422": _error("The job failed.")}, job=True)},
        "/jobs/{job_id}/result": {"get": result_op},
        "/jobs/{job_id}/result.{ext}": {"get": result_ext_op},
        "/jobs/{job_id}/link": {"get": _op("A signed result link", {
            "200": _json("The link.", {"type": "object", "properties": {
                "url": {"type": "string"}, "expires": {"type": "integer"}},
                "required": ["url", "expires"]}),
            "400": _error("Bad ttl.")}, job=True, params=[
            {"name": "ttl", "in": "query", "description": "Lifetime in seconds.",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LINK_TTL,
                        "default": 3600}}])},
        "/consumer": {
            "get": _op("Registered listener names", {
                "200": _json("Names in registration order.",
                             {"type": "array", "items": {"type": "string"}})}),
            "post": _op("Register a listener function for every worker (admin scope)", {
                "200": _BOOL_TEXT,
                "400": _error("Not the expected envelope, or no name given or readable."),
                "403": _error(_ADMIN_403 + " With a secret: an unsigned or mis-signed upload."),
                "413": _error("Body over the size limit."),
                "415": _error("Content-Type is not application/json.")},
                body=_ENVELOPE, params=[_NAME_QUERY, _SIGNATURE_HEADER],
                security=_ADMIN_SECURITY),
            "delete": _op("Unregister a listener function (admin scope)", {
                "200": _BOOL_TEXT, "400": _error("Not the expected envelope."),
                "403": _error(_ADMIN_403),
                "415": _error("A body that is not application/json.")},
                body={**_ENVELOPE, "required": False}, params=[
                {**_NAME_QUERY, "description": "Unregister by name instead of by body."}],
                security=_ADMIN_SECURITY),
        },
        "/deadletter": {
            "get": _op("Dead letters, oldest first", {"200": _json("Records.", {
                "type": "array", "items": {"$ref": "#/components/schemas/Job"}})}),
            "delete": _op("Purge every dead letter (admin scope)", {
                "200": _json("How many.", _count("purged")), "403": _error(_ADMIN_403)},
                security=_ADMIN_SECURITY),
        },
        "/deadletter/requeue": {"post": _op("Requeue every dead letter (admin scope)", {
            "200": _json("How many.", _count("requeued")), "403": _error(_ADMIN_403)},
            security=_ADMIN_SECURITY)},
        "/deadletter/{job_id}/requeue": {"post": _op("Requeue one dead letter (admin scope)", {
            "200": _json("How many.", _count("requeued")), "403": _error(_ADMIN_403)},
            job=True, security=_ADMIN_SECURITY)},
        "/deadletter/{job_id}": {"delete": _op("Purge one dead letter (admin scope)", {
            "200": _json("How many.", _count("purged")), "403": _error(_ADMIN_403)},
            job=True, security=_ADMIN_SECURITY)},
        "/metrics": {"get": _op("Prometheus metrics", {
            "200": {"description": "Text exposition format; while Redis is unreachable, "
                                   "only mlq_redis_up 0 (still 200).",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}})},
        "/openapi.json": {"get": _op("This document", {
            "200": _json("OpenAPI 3.1.", {"type": "object"})})},
    }


def _dashboard_paths() -> dict[str, Any]:
    """The dashboard's pages and form actions (controller/dashboard.py): HTML, errors too."""
    session: list[dict[str, list[str]]] = [{"dashboardSession": []}, {}]

    def html(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {"text/html": {"schema": {"type": "string"}}}}

    def op(summary: str, responses: dict[str, Any], *, security: list[Any] = session,
           body: bool = False, params: list[Any] | None = None) -> dict[str, Any]:
        # not _op: a browser gets its errors (503 too) as pages, not as JSON
        operation: dict[str, Any] = {"summary": summary, "security": security, "responses": {
            **responses, "503": html("Redis is unreachable.")}}
        if params:
            operation["parameters"] = params
        if body:
            operation["requestBody"] = _FORM
            operation["responses"].update({
                "403": html("Cross-site request, missing or stale CSRF token, or a dead-letter "
                            "change or a pause without an admin session."),
                "413": html("Form over the size limit.")})
        return operation

    login = {"302": {"description": "To /ui/login when the server has a token."}}
    page_ok = {"200": html("The page."), **login}
    done = {"303": {"description": "Back to the dead-letter page, saying what was done."},
            "401": html("Not logged in.")}

    def page(summary: str, extra: dict[str, Any] | None = None,
             params: list[Any] | None = None) -> dict[str, Any]:
        return {"get": op(summary, {**page_ok, **(extra or {})}, params=params)}

    def action(summary: str, job: bool = False, back: str = "the dead-letter page",
               name: str | None = None, errors: dict[str, str] | None = None) -> dict[str, Any]:
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]
        answers = {**done, "303": {"description": f"Back to {back}, saying what was done."},
                   **{status: html(text) for status, text in (errors or {}).items()}}
        return {"post": op(summary, answers, body=True,
                           params=[_JOB_ID] if job else params if name else None)}

    query = [{"name": n, "in": "query", "schema": {"type": "string"}}
             for n in ("status", "queue", "owner", "function", "id")]  # id: a redirect
    return {
        "/": page("Dashboard: overview per queue, live"),
        "/ui": {"get": op("Redirect to the overview", {"302": {"description": "To /."}})},
        "/ui/jobs": page("Dashboard: jobs, newest first",
                         {"400": html("Unknown status, or a bad page number.")}, query + [
                             {"name": "page", "in": "query", "schema": {"type": "string"}}]),
        "/ui/jobs/{job_id}": page("Dashboard: one job, its progress and result",
                                  {"404": html("No such job.")}, [_JOB_ID]),
        "/ui/workers": page("Dashboard: workers and their heartbeats"),
        "/ui/deadletters": page("Dashboard: dead letters"),
        "/ui/functions": page("Dashboard: registered functions"),
        "/ui/deadletter/requeue": action("Dashboard form: requeue every dead letter"),
        "/ui/deadletter/{job_id}/requeue": action("Dashboard form: requeue one", job=True),
        "/ui/deadletter/purge": action("Dashboard form: purge every dead letter"),
        "/ui/deadletter/{job_id}/purge": action("Dashboard form: purge one", job=True),
        "/ui/jobs/{job_id}/cancel": action("Dashboard form: cancel a job", job=True,
                                           back="the job's page", errors={"404": "No such job."}),
        **{f"/ui/queues/{{queue}}/{verb}": action(
            f"Dashboard form: {verb} a queue", back="the overview", name="queue",
            errors={"400": "Not a queue name."}) for verb in ("pause", "resume")},
        "/ui/schedules": {**page("Dashboard: periodic jobs, and a form to add one"), **action(
            "Dashboard form: add or replace a periodic job", back="the periodic jobs", errors={
                "400": "A bad name, cron, timezone or message: the form again, saying why."})},
        "/ui/schedules/{name}/remove": action("Dashboard form: remove a periodic job",
                                              back="the periodic jobs", name="name"),
        "/ui/login": {
            "get": op("Dashboard: the login form", {
                "200": html("The form."), "302": {"description": "Already logged in."}},
                security=[]),
            "post": op("Dashboard: log in with the API token", {
                "303": {"description": "Logged in: the session cookie is set."},
                "401": html("Wrong token: the form again."),
                "429": html("Too many wrong tokens from this address in the last minute.")},
                security=[], body=True)},
        "/ui/logout": {"post": op("Dashboard: log out", done, body=True)},
        "/ui/static/{filename}": {"get": op("Dashboard: stylesheet, script, icon", {
            "200": {"description": "The file.", "content": {"*/*": {"schema": {
                "type": "string", "format": "binary"}}}},
            "304": {"description": "Not modified."}, "404": html("No such file.")},
            security=[], params=[{"name": "filename", "in": "path", "required": True,
                                  "schema": {"type": "string"}}])},
    }


_FORM = {"required": True, "description": "An HTML form; `csrf` echoes the page's CSRF cookie.",
         "content": {"application/x-www-form-urlencoded": {"schema": {
             "type": "object", "properties": {"csrf": {"type": "string"},
                                              "token": {"type": "string"},
                                              "next": {"type": "string"}},
             "required": ["csrf"]}}}}
_ANY = {"description": "Any msgpack-able value: object, array, string, number, bool, null."}
_JOB_FIELDS = {
    "id": {"type": "string"}, "timestamp": {"type": "number"},
    "worker": {"type": ["string", "null"]},
    "processing_started": {"type": ["number", "null"]},
    "processing_finished": {"type": ["number", "null"]},
    "progress": _ANY, "short_result": {"type": ["string", "null"]}, "result": _ANY,
    "callback": {"type": ["string", "null"]}, "retries": {"type": "integer"},
    "functions": {"type": ["array", "null"], "items": {"type": "string"}},
    "msg": _ANY, "status": _STATUS, "error": {"type": ["string", "null"]},
    "attempt": {"type": ["integer", "null"]}, "next_attempt_at": {"type": ["number", "null"]},
    "expires_at": {"type": ["number", "null"]}, "error_kind": {"type": ["string", "null"]},
    "call_name": {"type": ["string", "null"], "description": "A submitted call's function."},
    "call_args": {"type": ["string", "null"], "maxLength": 200,
                  "description": "A submitted call's arguments, as short text."},
}
_PLACE = {"position": {"type": ["integer", "null"], "minimum": 0}, "eta_s": {"type": ["number", "null"], "minimum": 0}}
_COMPONENTS = {
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "Required on every route but /healthz when the server has a token."},
        "adminBearer": {"type": "http", "scheme": "bearer",
                        "description": "The admin token (--admin_token): needed to upload or "
                                       "remove code and to change dead letters. Without one, "
                                       "the one --token opens these routes too."},
        "signedLink": {"type": "apiKey", "in": "query", "name": "sig",
                       "description": "With `expires`, from GET /jobs/{job_id}/link."},
        "dashboardSession": {"type": "apiKey", "in": "cookie", "name": "mlq_session",
                             "description": "Set by POST /ui/login when the server has a token."},
    },
    "schemas": {
        "Error": {"type": "object", "properties": {"error": {"type": "string"}},
                  "required": ["error"]},
        "Job": {"type": "object", "properties": {**_JOB_FIELDS, **_PLACE}, "required": list(_JOB_FIELDS)},
        "JobPost": {"type": "object", "required": ["msg"], "additionalProperties": False,
                    "description": "Options given as null count as not given.",
                    "properties": {
                        "msg": _ANY,
                        "callback": {"type": ["string", "null"], "format": "uri",
                                     "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@:]+",
                                     "description": "GET with success, job_id, short_result."},
                        "functions": {"type": ["array", "string", "null"], "minLength": 1,
                                      "items": {"type": "string", "minLength": 1},
                                      "description": "Names, or one name as a string."},
                        "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0},
                        "queue": {"type": ["string", "null"], "default": "default",
                                  "pattern": _NAME_PATTERN},
                        "priority": {"type": ["integer", "null"], "minimum": 0, "maximum": 9,
                                     "default": 0,
                                     "description": "Higher runs first; FIFO within a level."},
                        "owner": {"type": ["string", "null"], "pattern": _NAME_PATTERN,
                                  "description": "Who the job is for; fair workers share "
                                                 "round-robin between owners."}}},
    },
}


def document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI 3.1 document (callers may change it)."""
    # here, not at the top: those modules build their parts with this one's helpers
    from . import lifecycle_routes as lifecycle, stream_routes, workers_routes
    doc = copy.deepcopy({
        "openapi": "3.1.0",
        "info": {"title": "MLQ", "version": __version__,
                 "description": "Job queue for slow machine-learning work: post jobs, "
                                "follow, cancel, delay, schedule them, pause queues, fetch "
                                "results, manage listeners."},
        "paths": {**_paths(), **_dashboard_paths()},
        "components": _COMPONENTS,
        "security": [{"bearer": []}, {}],
    })
    parts = {**lifecycle.OPENAPI_PATHS, **stream_routes.OPENAPI_PATHS,
             **workers_routes.OPENAPI_PATHS}
    for path, operations in copy.deepcopy(parts).items():
        doc["paths"].setdefault(path, {}).update(operations)  # DELETE /jobs/{job_id} joins GET
    schemas = doc["components"]["schemas"]
    schemas.update(copy.deepcopy(lifecycle.OPENAPI_SCHEMAS))
    schemas["JobPost"]["properties"].update(copy.deepcopy(lifecycle.POST_OPTION_SCHEMAS))
    return doc
