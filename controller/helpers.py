"""What the HTTP views share: the app's state, reading request bodies, building
answers, and the one error handler. The app factory (app.py) and every blueprint
import from here, so no module imports the factory.
"""

from __future__ import annotations

import base64
import json as stdlib_json
import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Response, abort, current_app, json, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mlq.errors import (
    REDIS_DOWN, ConnectionFailed, JobNotFound, MLQError, NotReplicated, SignatureError,
)
from mlq.queue import MLQ

from .result_cache import ResultCache

log = logging.getLogger("mlq.http")

#: Seconds between SSE keep-alive comments: proxies close streams idle for longer.
SSE_KEEPALIVE = 15.0

@dataclass
class ServerState:
    """What the views of one app share: the queue, the credentials, the metrics."""

    mlq: MLQ
    token: str | None
    link_key: bytes
    admin_token: str | None = None  # code uploads, dead letters, bulk cancel, pauses
    max_depth: int = 64  # deepest nesting POST /jobs accepts
    behind_tls: bool = False  # a proxy in front ends TLS: cookies get Secure
    throttle: Any = None  # auth.FailureThrottle: failed credentials per client address
    max_streams: int = 500  # event streams open at once (each is a greenlet and a socket)
    open_streams: int = 0

    def stream_closed(self) -> None:
        self.open_streams -= 1
    allowed_hosts: frozenset[str] | None = None  # Host names answered; None: any
    sse_keepalive: float = SSE_KEEPALIVE
    extras: dict[str, Any] = field(default_factory=dict)  # lazily built clients, registries
    results: ResultCache = field(default_factory=ResultCache)


def current_state() -> ServerState:
    """The ServerState of the app handling the current request."""
    return current_app.extensions["mlq"]  # type: ignore[no-any-return]


def read_body() -> bytes:
    """The whole request body; 413 past MAX_CONTENT_LENGTH, chunked bodies included."""
    data = request.get_data(cache=False)
    limit = request.max_content_length
    # werkzeug's limited stream stops quietly at the limit when the body is
    # chunked (no Content-Length): one byte more means the body was too large
    if (limit is not None and request.content_length is None and len(data) >= limit
            and request.environ["wsgi.input"].read(1)):
        raise RequestEntityTooLarge()
    return data


def read_json_body() -> Any:
    """The request body parsed as JSON whatever its Content-Type; 400 when it is not JSON."""
    raw = read_body()
    if not raw.strip():
        abort(400, description="empty body: expected a JSON object")
    try:
        return stdlib_json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        abort(400, description=f"body is not valid JSON: {exc}")


# -- responses ----------------------------------------------------------------
def text_response(text: str, status: int = 200) -> Response:
    """A text/plain; charset=utf-8 answer (job ids, progress, True/False)."""
    return Response(text, status=status, mimetype="text/plain")


def json_response(value: Any, status: int = 200) -> Response:
    """A JSON answer of any stored value (bytes become ``{"base64": ...}``)."""
    return current_app.response_class(
        json.dumps(jsonable(value)) + "\n", status=status, mimetype="application/json")


#: Deepest nesting a JSON answer shows; deeper parts become a placeholder, so that no
#: stored value (a library user may post any depth msgpack holds) can make a route fail.
MAX_SHOWN_DEPTH = 100


def jsonable(value: Any, depth: int = 0) -> Any:
    """`value` with bytes (at any depth) as ``{"base64": ...}`` and keys as strings."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_SHOWN_DEPTH:
        return f"[nested deeper than {MAX_SHOWN_DEPTH} levels]"
    if isinstance(value, dict):
        return {_key_text(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # msgpack extension types and the like: readable beats a 500


def nesting_depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iterative: any depth)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _key_text(key: Any) -> str:
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8", "replace")
    return key if isinstance(key, str) else str(key)


def error_response(message: str, status: int, headers: Any = None) -> Response:
    """The JSON error body every failure gets: ``{"error": "..."}``."""
    response = current_app.response_class(
        json.dumps({"error": message}) + "\n", status=status, mimetype="application/json")
    if headers is not None:
        for name, value in headers.items():
            # keep what the error means (Allow, Content-Range, WWW-Authenticate),
            # not what its default HTML body was
            if name.lower() not in ("content-type", "content-length"):
                response.headers.add(name, value)
    return response


# -- the one error handler ------------------------------------------------------
def handle_error(exc: Exception) -> Response:
    """Map any exception to JSON: library errors to 4xx, Redis down to 503."""
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return error_response(exc.description or exc.name, status, exc.get_response().headers)
    if isinstance(exc, JobNotFound):
        return error_response(str(exc), 404)
    if isinstance(exc, SignatureError):
        # code not signed with the shared secret: the request is understood, and refused
        return error_response(str(exc), 403)
    if isinstance(exc, NotReplicated):
        # stored, but a failover now could lose it: the client should post again
        log.warning("post not confirmed by replicas: %s", exc)
        response = error_response(f"not confirmed by enough replicas: {exc}", 503)
        response.headers["Retry-After"] = "1"
        return response
    if isinstance(exc, MLQError) and not isinstance(exc, ConnectionFailed):
        # InvalidMessage, ListenerError, SignatureError: the input was refused
        return error_response(str(exc), 400)
    if isinstance(exc, REDIS_DOWN):
        log.warning("Redis unavailable: %s", exc)
        return error_response(f"Redis unavailable: {exc}", 503)
    # A bug of ours (or a Redis error we did not foresee): log it, stay JSON.
    log.exception("unhandled error")
    return error_response(f"internal error: {type(exc).__name__}", 500)
