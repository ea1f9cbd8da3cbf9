"""The Flask app factory of the MLQ HTTP server (SPEC §7) and its one error handler.

The app holds no globals: everything a view needs lives in a `ServerState` under
``app.extensions["mlq"]``, so two apps (say, one with a token, one without) can
run side by side in one process and in tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask, Response, current_app, json, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mlq.errors import ConnectionFailed, JobNotFound, MLQError, NotReplicated, SignatureError
from mlq.queue import MLQ

from .result_cache import DEFAULT_CAPACITY, ResultCache

log = logging.getLogger("mlq.http")

#: Seconds between SSE keep-alive comments (issue 3 asks for at least every 15 s).
SSE_KEEPALIVE = 15.0

#: Errors that mean "Redis is not there right now", not "your request is wrong".
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, ConnectionFailed)


@dataclass
class ServerState:
    """What the views of one app share: the queue, the credentials, the metrics."""

    mlq: MLQ
    token: str | None
    link_key: bytes
    admin_token: str | None = None  # needed for code uploads and dead-letter changes
    max_depth: int = 64  # deepest nesting POST /jobs accepts
    behind_tls: bool = False  # a proxy in front ends TLS: cookies get Secure
    throttle: Any = None  # auth.FailureThrottle: failed credentials per client address
    max_streams: int = 500  # event streams open at once (each holds a Redis connection)
    open_streams: int = 0

    def stream_closed(self) -> None:
        self.open_streams -= 1
    allowed_hosts: frozenset[str] | None = None  # Host names answered; None: any
    sse_keepalive: float = SSE_KEEPALIVE
    extras: dict[str, Any] = field(default_factory=dict)  # lazily built clients, registries
    results: ResultCache = field(default_factory=ResultCache)


def create_app(mlq: MLQ, *, token: str | None = None, secret: str | None = None,
               max_body: int = 64 * 1024 ** 2, link_key: bytes | None = None,
               admin_token: str | None = None, allowed_hosts: Iterable[str] = (),
               bind_address: str | None = None, max_depth: int = 64,
               behind_tls: bool = False, max_auth_failures: int = 10,
               max_streams: int = 500, result_cache: int = DEFAULT_CAPACITY) -> Flask:
    """Build the HTTP app serving `mlq`'s namespace.

    `token`: required as ``Authorization: Bearer`` on every route but /healthz.
    `admin_token`: when set, required instead for uploading or removing code and
    for changing the dead letters (with only `token`, it covers both scopes).
    `allowed_hosts`: Host names answered besides loopback and `bind_address`
    (``*``: any); other names get 403, which defeats DNS rebinding.
    `max_depth`: POST /jobs refuses bodies nested deeper than this with 400.
    `behind_tls`: a proxy in front ends TLS, so cookies are marked Secure.
    `max_auth_failures`: bad credentials a client address may send a minute
    before it gets 429 until the minute is over.
    `max_streams`: event streams open at once; beyond, 503 with Retry-After.
    `result_cache`: bytes of recently served results kept in memory (0: none).
    Tokens shorter than 16 characters are refused (ValueError).
    `link_key` (else `secret`, else `token`) keys the signed result links; with
    none of them a random key is drawn, so links then only work on this process.
    `max_body`: request bodies above this many bytes get 413, chunked ones too.
    """
    # No app-wide static route: the dashboard blueprint serves its own files
    # under /ui/static, and the OpenAPI test checks that every route is documented.
    app = Flask("controller", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = max_body
    # keep the record's documented field order (SPEC §4)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # Imported here: the blueprints import current_state from this module.
    from . import auth, dashboard, deadletter, functions, jobs, ops, origin

    auth.check_token_strength(token or None, "--token")
    auth.check_token_strength(admin_token or None, "--admin_token")
    app.extensions["mlq"] = ServerState(
        mlq=mlq, token=token or None, admin_token=admin_token or None,
        link_key=_link_key(link_key, secret, token), max_depth=max_depth,
        allowed_hosts=origin.allowed_hosts(bind_address, allowed_hosts),
        behind_tls=behind_tls, throttle=auth.FailureThrottle(limit=max_auth_failures),
        max_streams=max_streams, results=ResultCache(result_cache))
    origin.install(app)  # first: a request from a foreign page is refused before anything
    auth.install(app)
    for blueprint in (jobs.bp, functions.bp, deadletter.bp, ops.bp, dashboard.bp):
        app.register_blueprint(blueprint)
    app.register_error_handler(Exception, handle_error)
    return app


def _link_key(link_key: bytes | None, secret: str | None, token: str | None) -> bytes:
    material: str | bytes | None = link_key or secret or token
    if not material:
        return secrets.token_bytes(32)
    if isinstance(material, str):
        material = material.encode()
    # A derived key: the token or secret itself is never used as an HMAC key
    # for anything but what it was made for.
    return hmac.new(material, b"mlq result link v1", hashlib.sha256).digest()


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
