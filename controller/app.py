"""The Flask app factory of the MLQ HTTP server (SPEC §7).

The app holds no globals: everything a view needs lives in a `ServerState` under
``app.extensions["mlq"]``, so two apps (say, one with a token, one without) can
run side by side in one process and in tests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from flask import Flask

from mlq.queue import MLQ

from . import (auth, consumer, dashboard, deadletter, jobs, lifecycle_routes, ops, origin,
               stream_routes, workers_routes)
from .helpers import ServerState, handle_error
from .result_cache import DEFAULT_CAPACITY, ResultCache


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
    for blueprint in (jobs.bp, lifecycle_routes.bp, stream_routes.bp, consumer.bp,
                      deadletter.bp, ops.bp, workers_routes.bp, dashboard.bp):
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
