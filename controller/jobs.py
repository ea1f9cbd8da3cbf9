"""Routes under /jobs: post, inspect, fetch results, sign links (SPEC §7); the event
streams are in stream_routes.py."""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import re
import time
from typing import Any

from flask import Blueprint, Response, abort, request, url_for

from mlq import defaults
from mlq.job import COMPLETED, FAILED
from mlq.errors import JobNotFound
from mlq.record import STORED_RESULT

from .helpers import (
    ServerState,
    current_state,
    error_response,
    json_response,
    jsonable,
    nesting_depth,
    read_json_body,
    text_response,
)
from .auth import MAX_LINK_TTL, canonical_id, sign_link
from .result_cache import ChunkedResult

log = logging.getLogger("mlq.http")

bp = Blueprint("jobs", __name__)

#: Keys a POST /jobs body may carry; anything else is refused (400) so that a
#: typo such as "callbak" is reported instead of silently dropped.
POST_FIELDS = ("msg", "callback", "functions", "timeout", "queue", "priority", "owner",
               "delay", "at", "expires", "retries", "backoff", "backoff_max", "retry_on",
               "key", "key_ttl", "depends_on")
#: The keys given to MLQ.enqueue as keywords; null counts as not given.
POST_OPTIONS = POST_FIELDS[3:]
NO_RESULT = "[no result]"

#: Our own table, not the process-wide one: the system's mime.types must not
#: change what a URL serves, and audio/image types browsers need are added.
MIME = mimetypes.MimeTypes()
for _type, _ext in (("audio/mpeg", ".mp3"), ("audio/wav", ".wav"), ("audio/flac", ".flac"),
                    ("image/webp", ".webp"), ("audio/ogg", ".ogg"), ("audio/mp4", ".m4a"),
                    ("image/avif", ".avif"), ("video/webm", ".webm"), ("audio/opus", ".opus"),
                    ("application/xhtml+xml", ".xhtml"), ("text/javascript", ".mjs")):
    MIME.add_type(_type, _ext)

#: Types a browser would run, or render as a page that runs: served as opaque
#: downloads, so a listener's output can never script this origin (not even as a
#: `<script src>` of one of our own pages, which the page's CSP would allow).
_ACTIVE_TYPE = re.compile(r"html|xml|javascript|ecmascript|wasm|^text/xsl$|^text/css$")
#: On every result: a result opened as a page runs nothing and reaches nothing, and
#: no other site may embed it.
RESULT_HEADERS = {"Content-Security-Policy": "default-src 'none'; sandbox",
                  "Cross-Origin-Resource-Policy": "same-origin",
                  "X-Content-Type-Options": "nosniff"}
_SAFE_EXT = re.compile(r"[^A-Za-z0-9._-]")


# -- posting ----------------------------------------------------------------------
@bp.post("/jobs")
def post_job() -> Response:
    """Enqueue ``{"msg": ..., options}``; answers the id as text, or as JSON with
    whether a dedup key found a live job instead."""
    body = read_object(POST_FIELDS, '{"msg": ...}', required=("msg",))
    options = {k: body[k] for k in POST_OPTIONS if body.get(k) is not None}
    if not isinstance(options.get("depends_on", []), list):
        # the library takes any iterable: an object would pass as the list of its keys
        abort(400, description="depends_on must be a list of job ids")
    # the library checks every value before it writes anything: InvalidMessage -> 400
    posted = current_state().mlq.enqueue(body["msg"], body.get("callback"),
                                         read_functions(body), **options)
    if _prefers_json():
        return json_response({"job_id": posted.id, "duplicate": posted.duplicate})
    return text_response(posted.id)


def read_object(allowed: tuple[str, ...], shape: str,
                required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The body as a JSON object of `allowed` keys with every `required` one, no
    deeper than --max_depth; 400 saying what is wrong otherwise."""
    body = read_json_body()
    if not isinstance(body, dict):
        abort(400, description=f"body must be a JSON object like {shape}")
    missing = [k for k in required if k not in body]
    if missing:
        abort(400, description="missing " + ", ".join(f'"{k}"' for k in missing))
    limit = current_state().max_depth
    if nesting_depth(body) > limit + 1:  # +1: the body object itself
        abort(400, description=f"the body nests deeper than {limit} levels (--max_depth)")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        abort(400, description=f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return body


def read_functions(body: dict[str, Any]) -> list[str] | None:
    """The body's "functions": a list of names, one name, or none."""
    functions = body.get("functions")
    if isinstance(functions, str):
        return [functions]
    if functions is not None and not isinstance(functions, list):
        # an object would pass as the list of its keys
        abort(400, description="functions must be a list of function names")
    return functions


def _prefers_json() -> bool:
    accept = request.headers.get("Accept")
    if not accept or accept == "*/*":
        return False  # what curl and most clients send: spares parsing it on every post
    best = request.accept_mimetypes.best_match(["text/plain", "application/json"])
    return best == "application/json"


# -- reading --------------------------------------------------------------------
@bp.get("/jobs/count")
def count() -> Response:
    """Jobs waiting in a queue (``?queue=``, default the default queue), as text."""
    queue = request.args.get("queue") or "default"
    return text_response(str(current_state().mlq.job_count(queue)))


@bp.get("/jobs/<job_id>")
def record(job_id: str) -> Response:
    """The job's record; bytes anywhere in it appear as ``{"base64": ...}``."""
    return json_response(current_state().mlq.get_job(job_id))


@bp.get("/jobs/<job_id>/progress")
def progress(job_id: str) -> Response:
    """The progress text of SPEC §2 ('[started]', '50', '[completed]' ...)."""
    return text_response(current_state().mlq.get_progress(job_id))


@bp.get("/jobs/<job_id>/short_result")
def short_result(job_id: str) -> Response:
    """200 the short result once completed; 202 before; 422 when failed."""
    job = current_state().mlq.get_job(job_id)
    if job["status"] == COMPLETED:
        return text_response(job["short_result"] or "")
    if job["status"] == FAILED:
        return _failed(job)
    return text_response(NO_RESULT, 202)


def _failed(job: dict[str, Any]) -> Response:
    return error_response(str(job.get("error") or job.get("result") or "job failed"), 422)


# -- results --------------------------------------------------------------------
@bp.get("/jobs/<job_id>/result")
def result(job_id: str) -> Response:
    """The raw result: bytes as they are, str as UTF-8, other values as JSON."""
    return _serve_result(job_id, None)


@bp.get("/jobs/<job_id>/result.<ext>")
def result_ext(job_id: str, ext: str) -> Response:
    """The raw result with the Content-Type of the extension (result.png, result.mp3 ...)."""
    return _serve_result(job_id, ext)


#: What serving a result needs to know before reading the result itself.
_RESULT_META = ("status", "attempt", "processing_finished", "error")


def _serve_result(job_id: str, ext: str | None) -> Response:
    response = _result_response(job_id, ext)
    response.headers.update(RESULT_HEADERS)
    return response


def _result_response(job_id: str, ext: str | None) -> Response:
    state = current_state()
    job = state.mlq.get_job(job_id, fields=(*_RESULT_META, STORED_RESULT))
    marker = job.pop(STORED_RESULT, None)
    if job["status"] == COMPLETED and not marker:
        job = _whole_result(state, job_id, job)
    if job["status"] == FAILED:
        return _failed(job)
    if job["status"] != COMPLETED:
        response = text_response(NO_RESULT, 202)
        response.headers["Retry-After"] = "1"
        return response
    if marker:
        # kept in a key of its own: sent a chunk at a time, never held whole
        length = int(marker["size"])
        key = state.mlq.keys.result(job["id"])
        if not state.mlq.client.exists(key):
            # expired or purged since the record was read: 404, not a response that
            # could only be cut short
            raise JobNotFound(f"no job {job['id']!r}")
        body: Any = ChunkedResult(state.mlq.client, key, length, state.results,
                                  _result_key(job))
        content_type = result_type("str" if marker.get("type") == "str" else "bytes", ext)
    else:
        body, content_type = result_body(job["result"], ext)
        length = len(body)
    response = Response(body, content_type=content_type)
    response.content_length = length
    response.headers["Cache-Control"] = "private, no-cache"  # a requeued job gets a new result
    if ext and _is_active(ext):
        name = _SAFE_EXT.sub("_", f"result-{job['id']}.{ext}")
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.set_etag(_etag(job, content_type))
    if isinstance(job.get("processing_finished"), (int, float)):
        response.last_modified = job["processing_finished"]
    # Range (206/416) and If-None-Match / If-Modified-Since (304), by werkzeug
    response.make_conditional(request, accept_ranges=True, complete_length=length)
    return response


def _whole_result(state: ServerState, job_id: str, job: dict[str, Any]) -> dict[str, Any]:
    """`job` with its result, from the cache or else read along with the attempt it
    belongs to (the job may have run again meanwhile)."""
    cached = state.results.get(_result_key(job))
    if cached is not None:
        job["result"] = cached
        return job
    job = state.mlq.get_job(job_id, fields=("result", *_RESULT_META))
    if job["status"] == COMPLETED and isinstance(job["result"], (bytes, str)):
        state.results.put(_result_key(job), job["result"], len(job["result"]))
    return job


def _result_key(job: dict[str, Any]) -> tuple[Any, ...]:
    return (job["id"], job.get("attempt"), job.get("processing_finished"))


#: Content-Type of each kind of result when the URL names no extension.
_DEFAULT_TYPES = {"bytes": "application/octet-stream", "str": "text/plain; charset=utf-8",
                  "json": "application/json"}


def result_body(value: Any, ext: str | None) -> tuple[bytes, str]:
    """The bytes of a result and their Content-Type (the extension's type wins)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), result_type("bytes", ext)
    if isinstance(value, str):
        return value.encode("utf-8", "replace"), result_type("str", ext)
    return json.dumps(jsonable(value)).encode(), result_type("json", ext)


def result_type(kind: str, ext: str | None) -> str:
    """The Content-Type of a result of `kind` ("bytes", "str" or "json") served as
    result.<ext>."""
    mime, encoding = MIME.guess_type(f"result.{ext}") if ext else (None, None)
    if encoding is not None:
        # result.tar.gz: the bytes are the archive; a Content-Encoding would make
        # the browser unpack it on the fly
        mime = "application/octet-stream"
    if mime is None:
        return _DEFAULT_TYPES[kind]
    if _is_active(ext):
        return "application/octet-stream"
    if mime.startswith("text/") and kind == "str":
        mime += "; charset=utf-8"
    return mime


def _is_active(ext: str | None) -> bool:
    mime = MIME.guess_type(f"result.{ext}")[0] if ext else None
    return mime is not None and bool(_ACTIVE_TYPE.search(mime))


def _etag(job: dict[str, Any], content_type: str) -> str:
    # One result per attempt: id, attempt and finish time name it without hashing
    # tens of megabytes; the type is in because each extension is its own representation.
    key = f"{job['id']}|{job.get('attempt')}|{job.get('processing_finished')!r}|{content_type}"
    return hashlib.blake2s(key.encode(), digest_size=12).hexdigest()


# -- links ----------------------------------------------------------------------
@bp.get("/jobs/<job_id>/link")
def link(job_id: str) -> Response:
    """A signed result URL that works without the token until it expires (``?ttl=`` s)."""
    state = current_state()
    state.mlq.get_progress(job_id)  # 404 for an unknown job, reading one field only
    ttl = _ttl(request.args.get("ttl"))
    expires = int(time.time()) + ttl
    canonical = canonical_id(job_id) or job_id
    url = url_for("jobs.result", job_id=canonical, expires=expires,
                  sig=sign_link(state, canonical, expires))
    return json_response({"url": url, "expires": expires})


def _ttl(text: str | None) -> int:
    if text is None or text == "":
        return int(defaults.LINK_TTL)
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_LINK_TTL:
        abort(400, description=f"ttl must be a whole number of seconds from 1 to {MAX_LINK_TTL}")
    return int(text)
